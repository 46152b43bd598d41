"""`python -m pachytype`: the same as the `pachytype` command."""

from pachytype.cli import main

main()
