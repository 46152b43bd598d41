"""The typing suite: mypy and basedpyright over tests/typing/cases/."""
