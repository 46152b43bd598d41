"""Long names: every line of the generated module that can be split, split as ruff does."""
