"""Type expressions as the generator understands them, and their three spellings.

A `TypeExpr` is a resolved annotation: every name in it is a `Sym` that knows
where it is defined (a class, alias or NewType of the package, a builtin, or
a name imported from outside the package). It is spelled three ways:

- annotation: names as the generated module imports them under
  TYPE_CHECKING (aliases and NewTypes kept, so signatures read like the
  user's code);
- runtime: evaluated when the registry loads, through the module aliases
  (`_m_account.AccountState`), aliases and NewTypes expanded so nothing
  defined only under TYPE_CHECKING is needed at run time;
- canonical: fully-qualified and expanded, the input of the fingerprint.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator

from attrs import field, frozen


class Kind(enum.Enum):
    """What a name refers to."""

    BUILTIN = "builtin"
    CLASS = "class"
    ALIAS = "alias"
    NEWTYPE = "newtype"
    EXTERNAL = "external"


@frozen
class Sym:
    """A resolved name: `module.name` (builtins have module "builtins").

    For an alias or a NewType, `target` is what it stands for.
    """

    kind: Kind
    module: str
    name: str
    target: TypeExpr | None = field(default=None, eq=False, repr=False)

    @property
    def qualname(self) -> str:
        """`module.name`, or just `name` for builtins."""
        return self.name if self.kind is Kind.BUILTIN else f"{self.module}.{self.name}"


@frozen
class Generic:
    """`base[args]`."""

    base: TypeExpr
    args: tuple[TypeExpr, ...]


@frozen
class Union:
    """`a | b | ...`."""

    items: tuple[TypeExpr, ...]


@frozen
class Lit:
    """Code spelled the same in every mode: `None`, `...`, `"a"` in `Literal["a"]`."""

    code: str


@frozen
class Bracket:
    """`[a, b]`, the parameter list of `Callable[[a, b], r]`."""

    items: tuple[TypeExpr, ...]


TypeExpr = Sym | Generic | Union | Lit | Bracket

NONE = Lit("None")


def symbols(expr: TypeExpr) -> Iterator[Sym]:
    """Every name the expression spells (aliases and NewTypes not expanded)."""
    match expr:
        case Sym():
            yield expr
        case Generic(base=base, args=args):
            yield from symbols(base)
            for arg in args:
                yield from symbols(arg)
        case Union(items=items) | Bracket(items=items):
            for item in items:
                yield from symbols(item)
        case Lit():
            pass


def expand(expr: TypeExpr) -> TypeExpr:
    """`expr` with the package's aliases and NewTypes replaced by what they stand for."""
    match expr:
        case Sym(kind=Kind.ALIAS | Kind.NEWTYPE, target=target) if target is not None:
            return expand(target)
        case Sym() | Lit():
            return expr
        case Generic(base=base, args=args):
            return Generic(expand(base), tuple(expand(a) for a in args))
        case Union(items=items):
            flat: list[TypeExpr] = []
            for item in items:
                done = expand(item)
                flat.extend(done.items if isinstance(done, Union) else [done])
            return Union(tuple(flat))
        case Bracket(items=items):
            return Bracket(tuple(expand(i) for i in items))


def spell(expr: TypeExpr, name: Callable[[Sym], str]) -> str:
    """Write `expr` as Python, naming each symbol with `name`."""
    match expr:
        case Sym():
            return name(expr)
        case Generic(base=base, args=args):
            return f"{spell(base, name)}[{', '.join(spell(a, name) for a in args)}]"
        case Union(items=items):
            return " | ".join(spell(i, name) for i in items)
        case Lit(code=code):
            return code
        case Bracket(items=items):
            return f"[{', '.join(spell(i, name) for i in items)}]"


_CANONICAL_MODULES = {"typing_extensions": "typing"}


def canonical(expr: TypeExpr) -> str:
    """The fully-qualified, expanded spelling (stable across renames of aliases)."""
    return spell(expand(expr), _canonical_name)


def _canonical_name(sym: Sym) -> str:
    if sym.kind is Kind.BUILTIN:
        return sym.name
    module = _CANONICAL_MODULES.get(sym.module, sym.module)
    if module.startswith("pachytype.") or module == "pachytype":
        # pachytype's public names are re-exported from private modules.
        return f"pachytype.{sym.name}"
    return f"{module}.{sym.name}"


def qualified(expr: TypeExpr) -> str:
    """Fully qualified, as written (aliases kept): how problems name a type."""
    return spell(expr, lambda sym: sym.qualname)
