"""Tenants on hold: what an operator must fix holds that tenant's work, not the worker's.

A ``TenantHeld`` (Genesys refusing the tenant's OAuth client, a disabled tenant, a missing
integration) says nothing about the message: failing it would lose it for a reason the agent never
caused. Instead the tenant is put on hold: its lanes wait (each customer's order is kept, other
tenants' lanes go on), one of them tries again every ``probe_every_s``, the
``wabridge_tenant_held`` gauge is 1 and one log line says what to fix. The first success clears
the hold and every waiting lane goes on at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from prometheus_client import Gauge

from wabridge.errors import TenantHeld, metric_reason

log = logging.getLogger(__name__)

HELD = Gauge("wabridge_tenant_held", "1 while a tenant's messages wait for an operator to fix it", ["tenant", "reason"])
# The count, for alerts and dashboards: a series from the start (0), which the per-tenant one is not.
HELD_COUNT = Gauge("wabridge_tenants_held", "Holds in force on this worker (tenant and peer)")

# How often a held tenant's work is tried again: a fix is picked up within this, and Genesys sees
# one refused login per tenant per period, however many customers wait.
PROBE_EVERY_S = 5.0


@dataclass
class _Hold:
    reason: str
    since: float
    cleared: asyncio.Event = field(default_factory=asyncio.Event)
    probe: asyncio.Lock = field(default_factory=asyncio.Lock)


# Scopes of a hold (``TenantHeld.scope``): the peer whose refusal holds the tenant's work towards
# it. A ``tenant`` hold (disabled) holds every scope of that tenant.
GENESYS = "genesys"
WHATSAPP = "whatsapp"
WHOLE_TENANT = "tenant"


class TenantHolds:
    """The held tenants of one worker, by tenant and scope: a refused WhatsApp token holds the
    tenant's media downloads, not its text messages to Genesys."""

    def __init__(self, probe_every_s: float = PROBE_EVERY_S) -> None:
        self._probe_every_s = probe_every_s
        self._held: dict[tuple[str, str], _Hold] = {}

    def held(self) -> dict[str, list[str]]:
        """Tenant -> the reasons it is held for, for readiness and inspection."""
        reasons: dict[str, list[str]] = {}
        for (tenant, _), hold in sorted(self._held.items()):
            reasons.setdefault(tenant, []).append(hold.reason)
        return reasons

    def hold(self, error: TenantHeld) -> None:
        key = (error.tenant_id, error.scope)
        current = self._held.get(key)
        if current is not None and current.reason == error.reason:
            return
        if current is not None:
            HELD.labels(error.tenant_id, metric_reason(current.reason)).set(0)
            current.reason = error.reason
        else:
            self._held[key] = _Hold(error.reason, time.monotonic())
            HELD_COUNT.set(len(self._held))
        HELD.labels(error.tenant_id, metric_reason(error.reason)).set(1)
        log.error(
            "tenant %s is on hold (%s): its messages wait, retried every %.0f s, until this is fixed: %s",
            error.tenant_id, error.reason, self._probe_every_s, error,
        )  # fmt: skip

    def release(self, tenant_id: str, scope: str) -> None:
        """Work of ``scope`` succeeded for the tenant: that hold, and a whole-tenant one, are over."""
        for key in ((tenant_id, scope), (tenant_id, WHOLE_TENANT)):
            hold = self._held.pop(key, None)
            if hold is None:
                continue
            HELD.labels(tenant_id, metric_reason(hold.reason)).set(0)
            HELD_COUNT.set(len(self._held))
            hold.cleared.set()
            log.warning(
                "tenant %s is off hold (%s) after %.0f s: its messages flow again",
                tenant_id, hold.reason, time.monotonic() - hold.since,
            )  # fmt: skip

    async def wait_turn(self, tenant_id: str, scope: str) -> None:
        """Return at once for work whose tenant is not held in ``scope`` (nor as a whole); else when
        the hold clears or it is this caller's turn to try again (one caller per period)."""
        hold = self._held.get((tenant_id, WHOLE_TENANT)) or self._held.get((tenant_id, scope))
        if hold is None:
            return
        async with hold.probe:
            if hold.cleared.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hold.cleared.wait(), self._probe_every_s)
