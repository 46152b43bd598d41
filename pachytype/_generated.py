"""Support for generated `refs.py` modules; not for hand-written code.

`pachytype check` flags imports of this module outside generated files.
"""

from pachytype._address import make_ref

__all__ = ["make_ref"]
