"""The refs generator: scan (libcst) -> model (attrs) -> render (jinja2) -> write.

Shipped inside the wheel as `pachytype._codegen` (this directory is
`codegen/` in a checkout), so modules here import each other only
relatively; other code reaches them with
`pachytype._generator.codegen_module("generate")`.

Modules, in pipeline order:

- `package`: the package's import name and its `.py` files (no imports of user code);
- `scan`: per module, with libcst: imports, classes, assignments, lines;
- `resolve`: what names and annotations refer to (`TypeExpr`s, in `typeexpr`);
- `fields`: what attrs makes of a class (init parameters, defaults);
- `build`: the `model` of every entity, or `problems` (`path:LINE: message`);
- `fingerprint`: sha256 of the canonical description of the model;
- `render`: the model as `refs.py` text, through `templates/refs.py.jinja`;
- `generate`: the entry points: `generate(dir) -> Generated`, `scan_package(dir)
  -> PackageModel`, `is_fresh`, `write`.
"""
