"""The `pachytype` command line. Each subcommand lives in its own module and
is imported only when run, so `pachytype --help` stays fast and a command's
dependencies (libcst, asyncpg, ...) load only when needed."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Final

import click

# name -> "module:attribute" of a click.Command
COMMANDS: Final = {
    "check": "pachytype._cmd_check:check",
    "generate": "pachytype._cmd_generate:generate",
    "inspect": "pachytype._cmd_inspect:inspect",
    "lock": "pachytype._cmd_lock:lock",
    "migrate": "pachytype._cmd_migrate:migrate",
    "node": "pachytype._cmd_node:node",
    "simulate": "pachytype._cmd_simulate:simulate",
}


def _available() -> list[str]:
    found = []
    for name, target in COMMANDS.items():
        module = target.split(":")[0]
        if importlib.util.find_spec(module) is not None:
            found.append(name)
    return sorted(found)


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return _available()

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None or cmd_name not in _available():
            return None
        module, attribute = target.split(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command


@click.group(cls=_LazyGroup)
@click.version_option(package_name="pachytype")
def main() -> None:
    """pachytype: immortal, typed actors for Python."""
