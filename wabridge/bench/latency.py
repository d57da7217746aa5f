"""Latency percentiles with HdrHistogram: exact to 3 significant digits from 1 µs to an hour."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

_LOWEST_US = 1
_HIGHEST_US = 3_600_000_000
_SIGNIFICANT_DIGITS = 3


@dataclass(frozen=True, slots=True)
class LatencySummary:
    count: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float


class LatencyHistogram:
    """Values in milliseconds in, percentiles in milliseconds out (recorded in microseconds)."""

    def __init__(self, values_ms: Iterable[float] = ()) -> None:
        self._histogram = HdrHistogram(_LOWEST_US, _HIGHEST_US, _SIGNIFICANT_DIGITS)
        for value in values_ms:
            self.record_ms(value)

    def record_ms(self, value_ms: float) -> None:
        micros = min(max(round(value_ms * 1000), _LOWEST_US), _HIGHEST_US)
        self._histogram.record_value(micros)

    @property
    def count(self) -> int:
        return int(self._histogram.get_total_count())

    def percentile_ms(self, percentile: float) -> float:
        if self.count == 0:
            return 0.0
        return float(self._histogram.get_value_at_percentile(percentile)) / 1000

    def summary(self) -> LatencySummary:
        if self.count == 0:
            return LatencySummary(0, 0.0, 0.0, 0.0, 0.0)
        return LatencySummary(
            count=self.count,
            p50_ms=self.percentile_ms(50),
            p99_ms=self.percentile_ms(99),
            p999_ms=self.percentile_ms(99.9),
            max_ms=float(self._histogram.get_max_value()) / 1000,
        )
