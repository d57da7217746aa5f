"""One customer, one key: the bridge's directory of every identifier Meta gives a customer.

Meta names a WhatsApp customer by phone number (``wa_id``), by business-scoped user id (BSUID), by
both, and the names change: a customer adopts a username and their phone disappears from webhooks,
changes number (``user_changed_number``), or gets a new BSUID (``user_changed_user_id``, with
``previous_user_id``). The Kafka key decides the partition, and so the order, of everything the
customer does. So identities are resolved here, where records get their key, once:

* each identifier of a tenant points at the customer key it was first seen with
  (``customer_identities``; rows are only inserted, never changed);
* an event's key is the key of its first known identifier, BSUIDs before phone numbers (a phone
  number can pass to someone else, a BSUID cannot), else of the identifiers a ``system`` message
  links, else the key it always had (the wa_id, else the BSUID);
* every identifier the event names or links that is not known yet is recorded with that key.

So a customer known by phone who adopts a username keeps their phone-number key: same partition,
same conversation, same Genesys thread. Two bridges racing on a new customer both insert with
``ON CONFLICT DO NOTHING`` and read back the row that won. A mapping never changes once written,
so each bridge keeps what it has read in memory: only identifiers it has not seen cost a round trip.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence

import asyncpg
from prometheus_client import Counter

from wabridge.connectors import postgres
from wabridge.errors import PermanentError, TransientError
from wabridge.masking import mask_customer_id
from wabridge.schemas.meta import CustomerIdentifiers, customer_identifiers, keyed_as
from wabridge.schemas.records import WebhookEvent
from wabridge.settings import Settings

log = logging.getLogger(__name__)

# Identifiers kept in memory per bridge (an entry is about 200 bytes).
CACHE_SIZE = 200_000

REKEYED = Counter(
    "wabridge_bridge_identity_rekeyed_total",
    "Events keyed by the customer's first key instead of the identifier Meta named them by",
    ["tenant"],
)
REFUSED = Counter("wabridge_bridge_identity_refusals_total", "Webhooks whose customer identities PostgreSQL refused")
RECORDED = Counter("wabridge_bridge_identities_recorded_total", "Customer identifiers recorded", ["tenant"])


class IdentityDirectory:
    """Resolve each event's customer to its one key; one per bridge process."""

    def __init__(self, settings: Settings, cache_size: int = CACHE_SIZE) -> None:
        self._settings = settings
        self._pool: asyncpg.Pool | None = None
        self._known: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._cache_size = cache_size

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def keyed(self, events: Sequence[WebhookEvent]) -> list[WebhookEvent]:
        """``events`` in order, each keyed by its customer's one key. ``TransientError`` while
        PostgreSQL cannot answer (the caller holds and tries again; nothing is keyed wrongly)."""
        identified = [(event, customer_identifiers(event)) for event in events]
        named = [(event, ids) for event, ids in identified if ids is not None]
        missing = list({(event.tenant_id, i) for event, ids in named for i in ids.all} - self._known.keys())
        if missing:
            try:
                await self._learn(named, missing)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                decided = postgres.classify(exc)
                if isinstance(decided, PermanentError):
                    # The identifiers are checked before they get here; should PostgreSQL still
                    # refuse them, the events keep the keys Meta named them by, said and counted.
                    REFUSED.inc()
                    log.error("customer identities of a webhook refused by PostgreSQL (%s); keyed as named", exc)
                    return list(events)
                raise TransientError(f"customer identities unavailable: {exc!r}") from exc
        return [
            event if ids is None else self._rekeyed(event, self._key_of(event.tenant_id, ids))
            for event, ids in identified
        ]

    def _rekeyed(self, event: WebhookEvent, key: str) -> WebhookEvent:
        if key != event.customer_id:
            REKEYED.labels(event.tenant_id).inc()
            log.debug(
                "tenant %s: %s keyed as customer %s",
                event.tenant_id, mask_customer_id(event.customer_id), mask_customer_id(key),
            )  # fmt: skip
        return keyed_as(event, key)

    def _key_of(self, tenant_id: str, ids: CustomerIdentifiers) -> str:
        """The key of the first known identifier (BSUIDs first, then linked ones), else the first key."""
        for identifier in ids.all:
            key = self._known.get((tenant_id, identifier))
            if key is not None:
                return key
        return ids.first_key

    async def _learn(
        self, named: list[tuple[WebhookEvent, CustomerIdentifiers]], missing: list[tuple[str, str]]
    ) -> None:
        """Read the missing identifiers; record the ones nobody has yet, and read back what won.

        In two steps, so that bridges racing on a new customer agree: first each new customer's
        anchor (its first identifier, a BSUID if it has one) with the key it would get; then, once
        the anchor's key is read back (whoever's insert won), every other identifier with that key.
        """
        pool = await self._connected()
        await self._read(pool, missing)
        anchors: dict[tuple[str, str], str] = {}
        for event, ids in named:
            if not any((event.tenant_id, i) in self._known for i in ids.all):
                anchors.setdefault((event.tenant_id, ids.all[0]), ids.first_key)
        await self._record(pool, anchors)
        rest: dict[tuple[str, str], str] = {}
        for event, ids in named:
            key = self._key_of(event.tenant_id, ids)
            for identifier in ids.all:
                if (event.tenant_id, identifier) not in self._known:
                    rest.setdefault((event.tenant_id, identifier), key)
        await self._record(pool, rest)

    async def _record(self, pool: asyncpg.Pool, new: dict[tuple[str, str], str]) -> None:
        """Insert ``new`` (identifier -> key) where nobody has yet, and read back what holds."""
        if not new:
            return
        await pool.execute(
            "INSERT INTO customer_identities (tenant_id, identifier, customer_id)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING",
            [tenant for tenant, _ in new],
            [identifier for _, identifier in new],
            list(new.values()),
        )
        for tenant in {tenant for tenant, _ in new}:
            RECORDED.labels(tenant).inc(sum(1 for t, _ in new if t == tenant))
        await self._read(pool, list(new))

    async def _read(self, pool: asyncpg.Pool, pairs: list[tuple[str, str]]) -> None:
        rows = await pool.fetch(
            "SELECT i.tenant_id, i.identifier, i.customer_id FROM customer_identities i"
            " JOIN unnest($1::text[], $2::text[]) AS w(tenant_id, identifier) USING (tenant_id, identifier)",
            [tenant for tenant, _ in pairs],
            [identifier for _, identifier in pairs],
        )
        for row in rows:
            self._remember((row["tenant_id"], row["identifier"]), row["customer_id"])

    def _remember(self, pair: tuple[str, str], key: str) -> None:
        self._known[pair] = key
        self._known.move_to_end(pair)
        while len(self._known) > self._cache_size:
            self._known.popitem(last=False)

    async def _connected(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await postgres.connect(self._settings, min_size=1, max_size=2)
        return self._pool
