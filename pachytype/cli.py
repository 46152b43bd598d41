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
    "check": "pachytype._cli.check:check",
    "generate": "pachytype._cli.generate:generate",
    "inspect": "pachytype._cli.inspect:inspect",
    "lock": "pachytype._cli.lock:lock",
    "migrate": "pachytype._cli.migrate:migrate",
    "node": "pachytype._cli.node:node",
    "simulate": "pachytype._cli.simulate:simulate",
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
