"""The Genesys simulator as the benchmark sees it: what arrived, and the latency and rate limit it adds.

Arrivals are read incrementally from ``GET /__sim/arrivals`` (filtered to the run's wamid prefix,
so other runs and other traffic are left out). The knobs go through the simulator's existing admin
API — ``PATCH /__sim/config`` for the rate limit, ``PUT /__sim/faults/integration/{id}`` for latency —
and are put back as they were when the run ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp

from wabridge.bench.accounting import Arrival
from wabridge.bench.tenants import BenchSetupError


class ArrivalWatch:
    """Every arrival at Genesys whose ``channel.messageId`` starts with ``prefix``, in acceptance order."""

    def __init__(self, session: aiohttp.ClientSession, genesys_url: str, prefix: str) -> None:
        self._session = session
        self._url = f"{genesys_url}/__sim/arrivals"
        self._prefix = prefix
        # From the start of the simulator's record: arrivals of this run before it began count too.
        self._next = 0
        self.arrivals: list[Arrival] = []
        self.seen: set[str] = set()

    async def poll(self) -> int:
        """Read what arrived since the last poll; returns how many new arrivals there were."""
        params = {"since": str(self._next), "prefix": self._prefix}
        async with self._session.get(self._url, params=params) as response:
            if response.status != 200:
                raise BenchSetupError(f"GET {self._url} answered {response.status}: {await response.text()}")
            body = await response.json()
        for item in body["arrivals"]:
            arrival = Arrival(
                message_id=str(item["message_id"]),
                from_id=str(item["from_id"]),
                arrived_at=float(item["received_at_epoch"]),
            )
            self.arrivals.append(arrival)
            self.seen.add(arrival.message_id)
        self._next = int(body["next"])
        return len(body["arrivals"])


class GenesysKnobs:
    """Added latency per integration and the per-client rate limit, restored by :meth:`restore`."""

    def __init__(self, session: aiohttp.ClientSession, genesys_url: str) -> None:
        self._session = session
        self._url = genesys_url
        self._previous_limit: int | None = None
        self._previous_plans: dict[str, dict[str, Any] | None] = {}

    async def apply(
        self, *, latency_ms: float | None, rate_limit_per_minute: int | None, integration_ids: Sequence[str]
    ) -> None:
        config = await self._get_config()
        if rate_limit_per_minute is not None:
            self._previous_limit = int(config["rate_limit_per_minute"])
            await self._send("PATCH", "/__sim/config", {"rate_limit_per_minute": rate_limit_per_minute})
        if latency_ms is not None:
            plans: dict[str, dict[str, Any]] = config.get("faults_by_integration", {})
            for integration_id in dict.fromkeys(integration_ids):
                previous = plans.get(integration_id)
                self._previous_plans[integration_id] = previous
                plan = {**(previous or {}), "latency": {"kind": "fixed", "ms": latency_ms}}
                await self._send("PUT", f"/__sim/faults/integration/{integration_id}", plan)

    async def restore(self) -> None:
        for integration_id, plan in self._previous_plans.items():
            path = f"/__sim/faults/integration/{integration_id}"
            await (self._send("PUT", path, plan) if plan is not None else self._send("DELETE", path, None))
        self._previous_plans.clear()
        if self._previous_limit is not None:
            await self._send("PATCH", "/__sim/config", {"rate_limit_per_minute": self._previous_limit})
            self._previous_limit = None

    async def _get_config(self) -> dict[str, Any]:
        async with self._session.get(f"{self._url}/__sim/config") as response:
            if response.status != 200:
                raise BenchSetupError(f"the Genesys simulator's config is unreadable ({response.status})")
            config: dict[str, Any] = await response.json()
            return config

    async def _send(self, method: str, path: str, body: dict[str, Any] | None) -> None:
        async with self._session.request(method, f"{self._url}{path}", json=body) as response:
            if response.status >= 300:
                raise BenchSetupError(f"{method} {path} on the Genesys simulator: {response.status}")
