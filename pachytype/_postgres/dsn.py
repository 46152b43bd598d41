"""DSNs as people may see them: with the password replaced, in every message,
log line and repr. The real DSN is only ever handed to asyncpg.

Design note
-----------
Passwords are written by people, so they hold `#`, `/`, `?`, `@`, `:`,
spaces and quotes. In a URL those must be percent-encoded; when they are
not, `urllib.parse` cuts the URL in the wrong place (`u:a#b@h` has the
"host" `u:a` and the fragment `b@h`), and asyncpg then quotes the pieces in
its errors (`bad query field: 'b@h'`). So nothing here trusts a URL parser
with the credentials:

* `redact(dsn)` treats everything between `scheme://` and the **last** `@`
  as the user and password, whatever it contains, and every `password=`
  value (URL query or `key=value` DSN) as secret. Over-redacting (an `@`
  in the query) hides too much, never too little.
* `dsn_problem(dsn)` says, without quoting it, when a DSN cannot be read as
  meant (a `#`, `/`, `?` or second `@` in the password): the message to
  show instead of asyncpg's, which would quote a piece of the password.
* `scrub(text, dsn)` is for any other text (an exception, a log line, a
  traceback): the DSN's secrets are replaced wherever they appear, raw or
  percent-decoded, and any other DSN-looking string is redacted.
* `SecretFilter` applies `scrub` to every record a logging handler formats.
"""

from __future__ import annotations

import logging
import re
from typing import Final
from urllib.parse import unquote

MASK: Final = "***"

ENV_VAR: Final = "PACHYTYPE_DSN"
"""The environment variable the CLI reads the DSN from (keeps it off `ps`)."""

_URL: Final = re.compile(r"(postgres(?:ql)?://)", re.IGNORECASE)
# `password=` (also `sslpassword=`) in a URL query: the value ends at & or #.
_QUERY_PASSWORD: Final = re.compile(r"((?:^|[?&])[a-z]*password=)([^&#]*)", re.IGNORECASE)
# `password=` in a key=value DSN or any text: a quoted value (with \-escapes) or a word.
_KEYWORD_PASSWORD: Final = re.compile(
    r"([a-z]*password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S+)", re.IGNORECASE
)
_URL_IN_TEXT: Final = re.compile(r"postgres(?:ql)?://[^\s'\"]*", re.IGNORECASE)
_SHORTEST_SECRET: Final = 3
"""Shorter secrets are not searched for in free text: replacing every "ab"
would garble messages, and such a password protects nothing anyway."""


def _split_url(url: str) -> tuple[str, str | None, str]:
    """`(scheme://, userinfo or None, rest)` of a URL-form DSN, the userinfo
    running to the last `@` whatever it holds."""
    match = _URL.match(url)
    if match is None:
        return "", None, url
    body = url[match.end() :]
    user_end = body.rfind("@")
    if user_end < 0:
        return match.group(1), None, body
    return match.group(1), body[:user_end], body[user_end:]


def redact(dsn: str) -> str:
    """`dsn` with every password (URL userinfo, URL query, `password=` keyword)
    replaced by `***`; the user, hosts, database and options stay readable."""
    scheme, userinfo, rest = _split_url(dsn)
    if not scheme:
        return _KEYWORD_PASSWORD.sub(rf"\1{MASK}", dsn)
    if userinfo is not None:
        user, colon, _password = userinfo.partition(":")
        userinfo = f"{user}:{MASK}" if colon else user
    rest = _QUERY_PASSWORD.sub(rf"\1{MASK}", rest)
    return scheme + (userinfo or "") + rest


def secrets(dsn: str) -> list[str]:
    """The DSN's passwords as written and percent-decoded (and the pieces a
    URL parser would cut them into), longest first."""
    found: set[str] = set()
    scheme, userinfo, rest = _split_url(dsn)
    if scheme:
        if userinfo is not None and ":" in userinfo:
            found.add(userinfo.partition(":")[2])
        found.update(m.group(2) for m in _QUERY_PASSWORD.finditer(rest))
    else:
        for m in _KEYWORD_PASSWORD.finditer(dsn):
            value = m.group(2)
            found.add(value)
            if len(value) >= 2 and value[0] == value[-1] == "'":
                found.add(re.sub(r"\\(.)", r"\1", value[1:-1]))
    found |= {unquote(s) for s in found}
    # The pieces a URL parser cuts an unencoded password into (asyncpg quotes them).
    found |= {piece for s in found for piece in re.split(r"[#/?@:&]", s)}
    return sorted((s for s in found if len(s) >= _SHORTEST_SECRET), key=len, reverse=True)


def scrub(text: str, dsn: str | None = None) -> str:
    """`text` without `dsn`'s secrets (wherever they appear) and with any DSN in
    it redacted: for exception messages, log lines and tracebacks."""
    if dsn is not None:
        text = text.replace(dsn, redact(dsn))
        for secret in secrets(dsn):
            text = text.replace(secret, MASK)
    text = _URL_IN_TEXT.sub(lambda m: redact(m.group(0)), text)
    return _KEYWORD_PASSWORD.sub(_mask_keyword, text)


def _mask_keyword(match: re.Match[str]) -> str:
    return match.group(0) if match.group(2) == MASK else f"{match.group(1)}{MASK}"


def dsn_problem(dsn: str) -> str | None:
    """Why `dsn` cannot be read as its writer meant, without quoting a secret
    (None: it is fine as far as can be told before connecting)."""
    scheme, userinfo, rest = _split_url(dsn)
    if not scheme:
        if "=" in dsn:
            return (
                f"the DSN {redact(dsn)!r} is in key=value form; pachytype needs a URL: "
                f"postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
            )
        return (
            f"the DSN {redact(dsn)!r} is not a PostgreSQL URL; write "
            f"postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        )
    if userinfo is None:
        return None
    # What a URL parser takes for the host part: up to the first / ? or #.
    authority = re.split(r"[/?#]", userinfo + rest, maxsplit=1)[0]
    cut_password = "@" not in authority and not re.fullmatch(r"[^:]*(:\d*)?", authority)
    if authority.count("@") > 1 or cut_password:
        return (
            f"the password (or user name) in the DSN {redact(dsn)!r} holds a '#', '/', "
            f"'?' or '@', which a URL needs percent-encoded ('#' %23, '/' %2F, '?' %3F, "
            f"'@' %40): write it as urllib.parse.quote(password, safe='')"
        )
    return None


def connect_error(dsn: str, error: BaseException) -> str:
    """What to say when connecting with `dsn` failed with `error`: never a secret."""
    problem = dsn_problem(dsn)
    if problem is not None:
        return f"cannot connect to PostgreSQL: {problem}"
    detail = scrub(str(error) or type(error).__name__, dsn)
    return (
        f"cannot connect to PostgreSQL at {redact(dsn)}: {detail}; check the DSN and "
        f"that the server is running"
    )


class SecretFilter(logging.Filter):
    """Scrubs `dsn`'s secrets from every record (message and traceback) that
    passes the handler it is attached to."""

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self._dsn = dsn

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage(), self._dsn)
        record.args = None
        # `exc_info` may be False or None (asyncio's handler passes
        # `exc_info=False` when it has no exception): only a tuple has a traceback.
        if isinstance(record.exc_info, tuple) and record.exc_info[0] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = scrub(text, self._dsn)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info, self._dsn)
        return True
