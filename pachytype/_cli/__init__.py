"""The subcommands of the `pachytype` command, one module each (`check`,
`generate`, `inspect`, `lock`, `migrate`, `node`, `simulate`), and what they
share (`support`: loading a registry, opening a database, DSN handling).

`pachytype/cli.py` is the command group (the entry point declared in
pyproject.toml); it imports a subcommand's module only when that subcommand
runs. Nothing is imported here, so that stays true."""
