"""DSNs as people may see them: with the password replaced, in every message,
log line and repr. The real DSN is only ever handed to asyncpg."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact(dsn: str) -> str:
    """`dsn` with its password (URL or `password=` keyword form) replaced by `***`."""
    redacted = _KEYWORD_PASSWORD.sub(r"\1***", dsn)
    try:
        parts = urlsplit(redacted)
    except ValueError:
        return "<unparsable DSN>"
    if parts.password is None:
        return redacted
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port is not None else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
