"""Fault injection: the misbehaviour of a real peer, switched on per tenant at runtime.

A ``FaultPlan`` is pure data (settable over the admin API as JSON); ``RateLimiter`` holds the
sliding window that produces Genesys's 429s.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Latency(BaseModel):
    """Added response latency: ``fixed`` ms, ``uniform`` in [low, high] ms, or ``lognormal``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["fixed", "uniform", "lognormal"] = "fixed"
    ms: float = Field(default=0.0, ge=0)
    low_ms: float = Field(default=0.0, ge=0)
    high_ms: float = Field(default=0.0, ge=0)
    # lognormal: the median and the shape; sigma 0.5 gives a p99 about 3.2x the median.
    median_ms: float = Field(default=0.0, ge=0)
    sigma: float = Field(default=0.5, ge=0)

    def sample_seconds(self, rng: random.Random) -> float:
        if self.kind == "uniform":
            return rng.uniform(self.low_ms, max(self.low_ms, self.high_ms)) / 1000
        if self.kind == "lognormal":
            if self.median_ms <= 0:
                return 0.0
            return rng.lognormvariate(math.log(self.median_ms), self.sigma) / 1000
        return self.ms / 1000


class FaultPlan(BaseModel):
    """What goes wrong for one integration or one OAuth client (Genesys) or phone number (Meta)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    latency: Latency | None = None
    # Share of requests answered with ``error_status`` (a 5xx) instead of being processed.
    error_rate: float = Field(default=0.0, ge=0, le=1)
    error_status: int = Field(default=503, ge=500, le=599)
    # Share of requests held for ``timeout_hold_s`` and then answered 504: the client times out first.
    # ``after`` processes the request before hanging (the message exists but the caller never learns it).
    timeout_rate: float = Field(default=0.0, ge=0, le=1)
    timeout_hold_s: float = Field(default=30.0, ge=0)
    timeout_mode: Literal["before", "after"] = "before"
    # Share of requests answered 429 regardless of the rate limit, with this Retry-After.
    throttle_rate: float = Field(default=0.0, ge=0, le=1)
    throttle_retry_after_s: int = Field(default=1, ge=0)

    def roll(self, rate: float, rng: random.Random) -> bool:
        return rate > 0 and rng.random() < rate


class RateLimiter:
    """A sliding 60-second window per key: ``limit`` requests, then 429 with the wait in seconds."""

    def __init__(self, window_s: float = 60.0) -> None:
        self._window_s = window_s
        self._hits: dict[str, deque[float]] = {}

    def acquire(self, key: str, limit: int) -> int | None:
        """Count one request; return None if allowed, else the Retry-After in whole seconds."""
        now = time.monotonic()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self._window_s:
            hits.popleft()
        if len(hits) >= limit:
            return max(1, math.ceil(hits[0] + self._window_s - now))
        hits.append(now)
        return None

    def reset(self, key: str | None = None) -> None:
        if key is None:
            self._hits.clear()
        else:
            self._hits.pop(key, None)
