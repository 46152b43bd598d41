"""One benchmark figure beside the baseline measured in the same run."""

from __future__ import annotations

from attrs import frozen


@frozen
class Record:
    """`<ecosystem>.<workload>` measured as `value` `unit`, beside a baseline.

    `ratio` is value / baseline_value, so > 1 means faster than the baseline
    for throughputs; for latencies (unit ending in "ms" or "s") lower is
    better and the ratio reads the other way round.
    """

    name: str
    value: float
    unit: str
    baseline: str | None = None
    baseline_value: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline_value in (None, 0):
            return None
        assert self.baseline_value is not None
        return self.value / self.baseline_value

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline,
            "baseline_value": self.baseline_value,
            "ratio": self.ratio,
            "note": self.note,
        }
