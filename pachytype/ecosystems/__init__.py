"""Ecosystems: where entities run. Import them from `pachytype`."""
