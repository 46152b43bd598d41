"""Dead letters: messages whose activation raised, kept with what explains it."""

from __future__ import annotations

import traceback
from datetime import UTC, datetime
from typing import Any

from attrs import field, frozen

from pachytype._address import Address


@frozen
class DeadLetter:
    """A message whose activation raised.

    The entity kept its last committed state (`state`) and went on with its
    next message. `recent` holds the messages it received most recently,
    oldest first, ending with this one (OTP's "last message received").
    """

    seq: int
    to: Address[Any]
    message: object
    error_type: str
    error: str
    traceback: str
    state: object
    recent: tuple[object, ...]
    at: datetime
    exception: BaseException | None = field(default=None, eq=False, repr=False)

    @classmethod
    def capture(
        cls,
        seq: int,
        to: Address[Any],
        message: object,
        error: BaseException,
        state: object,
        recent: tuple[object, ...],
    ) -> DeadLetter:
        """Record `error`, raised while `to` handled `message` in `state`."""
        return cls(
            seq=seq,
            to=to,
            message=message,
            error_type=type(error).__qualname__,
            error=str(error),
            traceback="".join(traceback.format_exception(error)),
            state=state,
            recent=recent,
            at=datetime.now(UTC),
            exception=error,
        )

    def __str__(self) -> str:
        return (
            f"dead letter #{self.seq}: {self.to!r} raised {self.error_type}: {self.error} "
            f"on {self.message!r} (recent: {list(self.recent)!r})"
        )
