"""Message classes, declared apart from the entities that receive them."""

from __future__ import annotations

from attrs import frozen


@frozen
class Up:
    """Go up."""


@frozen
class Down:
    """Go down."""


@frozen
class Left:
    """Go left."""


@frozen
class Right:
    """Go right."""


@frozen
class Push:
    """Push `value`."""

    value: int


@frozen
class Pop:
    """Drop the last value."""


@frozen
class Touch:
    """Mark the entity as seen."""
