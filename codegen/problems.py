"""User mistakes the generator reports: `path:LINE: message`, with the fix.

The generator collects every problem it finds before giving up, so one run
shows them all; `GenerateError` carries them, sorted by file and line.
"""

from __future__ import annotations

from collections.abc import Sequence

from attrs import frozen


@frozen(order=True)
class Problem:
    """One mistake in the user's package, at a file and line."""

    path: str
    line: int
    """1-based; 0 when the problem is the file or directory as a whole."""
    message: str
    warning: bool = False
    """A warning is printed but does not fail `pachytype check`."""

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {'warning: ' if self.warning else ''}{self.message}"


class GenerateError(Exception):
    """The package cannot be turned into refs; `problems` says why and where."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(sorted(set(problems)))
        super().__init__("\n".join(str(p) for p in self.problems))
