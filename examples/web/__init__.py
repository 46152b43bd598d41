"""A Starlette app whose handlers ask entities (see app.py)."""
