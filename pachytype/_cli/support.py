"""Helpers the CLI commands share: loading a registry named `MODULE:ATTRIBUTE`;
for the PostgreSQL commands, the DSN (`--dsn` or `PACHYTYPE_DSN`) and errors
said in one line without a secret."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any, Final, TypeVar

import click
from click.core import ParameterSource

from pachytype._errors import PachytypeError
from pachytype._postgres.dsn import ENV_VAR, redact, scrub, secrets
from pachytype._registry import Registry

F = TypeVar("F", bound=Callable[..., Any])


class Mistake(click.ClickException):
    """A usage mistake said in one line (exit 2 like click's usage errors, but
    without the usage text around it, so the line that matters stands out)."""

    exit_code = 2


def load_registry(target: str, param_hint: str = "MODULE:REGISTRY") -> Registry:
    """Import `MODULE:ATTRIBUTE` (from the current directory too); it must be a Registry."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise Mistake(
            f"{param_hint}: {target!r} is not MODULE:REGISTRY; for example "
            f"examples.bank.refs:REGISTRY"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise Mistake(
            f"{param_hint}: cannot import {module_name!r} ({error}); run from the project's "
            f"root directory"
        ) from None
    registry = getattr(module, attribute, None)
    if not isinstance(registry, Registry):
        raise Mistake(
            f"{param_hint}: {target!r} is not a pachytype Registry (got "
            f"{type(registry).__name__}); point at the REGISTRY of a generated refs.py"
        )
    return registry


# -- PostgreSQL commands: the DSN and their errors ---------------------------------

DSN_HELP: Final = (
    "PostgreSQL DSN, postgresql://USER:PASSWORD@HOST:PORT/DATABASE (default: the "
    "PACHYTYPE_DSN environment variable, which keeps the password off `ps`)."
)


def dsn_option(help: str = DSN_HELP) -> Callable[[F], F]:
    """`--dsn`, read from `PACHYTYPE_DSN` when not given."""
    return click.option("--dsn", envvar=ENV_VAR, metavar="DSN", help=help)


STORE_DSN_HELP: Final = (
    "A PostgreSQL ecosystem instead (default: the PACHYTYPE_DSN environment variable, "
    "which keeps the password off `ps`)."
)


def store_options(command: F) -> F:
    """`--db PATH`, `--dsn DSN` and `--schema`: the options of the commands
    that work on a LocalDisk database or a PostgreSQL schema (`inspect`,
    `migrate`); `choose_store` picks one."""
    schema = click.option("--schema", default="pachytype", show_default=True, help="With --dsn.")
    db = click.option("--db", "db", metavar="PATH", help="The LocalDisk database file.")
    # Innermost first, as stacked decorators apply: --help lists --db, --dsn, --schema.
    return db(dsn_option(STORE_DSN_HELP)(schema(command)))


def choose_store(db: str | None, dsn: str | None, command: str) -> str:
    """`"db"` or `"dsn"`: which store `command` works on. `--db` wins over a DSN
    from the environment; both on the command line, or neither, is a usage error."""
    ctx = click.get_current_context()
    if db is not None:
        if dsn is not None and ctx.get_parameter_source("dsn") is ParameterSource.COMMANDLINE:
            raise Mistake(f"give --db PATH or --dsn DSN to `pachytype {command}`, not both")
        return "db"
    if dsn is not None:
        _warn_if_on_command_line(ctx, dsn)
        return "dsn"
    raise Mistake(
        f"give --db PATH and MODULE:REGISTRY (e.g. pachytype {command} --db bank.db "
        f"examples.bank.refs:REGISTRY), or --dsn DSN for a PostgreSQL ecosystem (or set "
        f"{ENV_VAR}, which keeps the password off `ps`)"
    )


def require_dsn(dsn: str | None, command: str) -> str:
    """The DSN, or a one-line error saying where to put it."""
    if not dsn:
        raise Mistake(
            f"no PostgreSQL DSN: set {ENV_VAR}=postgresql://USER:PASSWORD@HOST:PORT/DATABASE "
            f"in the environment (keeps the password off `ps`) or pass --dsn to "
            f"`pachytype {command}`"
        )
    _warn_if_on_command_line(click.get_current_context(), dsn)
    return dsn


def _warn_if_on_command_line(ctx: click.Context, dsn: str) -> None:
    if ctx.get_parameter_source("dsn") is ParameterSource.COMMANDLINE and secrets(dsn):
        click.echo(
            f"note: the --dsn password is visible to every user of this machine (ps); "
            f"set {ENV_VAR} instead",
            err=True,
        )


def check_schema_name(schema: str) -> None:
    """A one-line error for a schema name PostgreSQL tables cannot live in."""
    from pachytype._postgres.schema import quote_schema  # imports asyncpg: only when needed

    try:
        quote_schema(schema)
    except ValueError as error:
        raise Mistake(f"--schema: {error}") from None


@contextlib.contextmanager
def postgres_errors(dsn: str) -> Iterator[None]:
    """Turn what can go wrong talking to PostgreSQL into one line without a
    secret; anything unexpected (a bug) is shown with its traceback, scrubbed."""
    import asyncpg  # type: ignore[import-untyped]  # no stubs published

    try:
        yield
    except (click.ClickException, click.exceptions.Exit, click.Abort):
        raise
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        text = scrub(str(error) or type(error).__name__, dsn)
        if not isinstance(error, ConnectionError | OSError):
            text = f"PostgreSQL at {redact(dsn)}: {type(error).__name__}: {text}"
        raise click.ClickException(f"{text} (DSN from --dsn or {ENV_VAR})") from None
    except (PachytypeError, ValueError) as error:
        raise click.ClickException(scrub(str(error), dsn)) from None
    except Exception as error:
        click.echo(scrub("".join(traceback.format_exception(error)), dsn), err=True, nl=False)
        raise click.ClickException(
            f"unexpected {type(error).__name__} (a bug in pachytype: please report it with "
            f"the traceback above)"
        ) from None
