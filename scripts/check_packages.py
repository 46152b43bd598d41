"""`make check` in one process: `pachytype check --no-mypy` on every example,
then `pachytype generate --check` on every package whose refs are generated.

One interpreter instead of one for each of the twenty-odd packages: starting
Python, pachytype and libcst again for each took most of the step (25 s, now
10 s). Stops at the first failing package, with its status, as the shell
loop did.

    python scripts/check_packages.py --check examples/bank/ ... --generated tests/poison ...
"""

from __future__ import annotations

import sys

from pachytype.cli import main as pachytype


def run(*args: str) -> None:
    """`pachytype *args`; exits the process as it would, unless it succeeded."""
    try:
        pachytype.main(list(args), prog_name="pachytype")
    except SystemExit as exit:
        if exit.code:
            raise


def main(argv: list[str]) -> None:
    if not argv or argv[0] != "--check" or "--generated" not in argv:
        raise SystemExit("usage: check_packages.py --check PKG... --generated PKG...")
    split = argv.index("--generated")
    for package in argv[1:split]:
        run("check", package, "--no-mypy")
    for package in argv[split + 1 :]:
        run("generate", package, "--check")


if __name__ == "__main__":
    main(sys.argv[1:])
