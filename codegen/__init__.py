"""The refs generator: scan (libcst) -> model (attrs) -> render (jinja2) -> write."""
