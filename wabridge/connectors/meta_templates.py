"""Each tenant's WhatsApp message templates, as Meta lists them, cached in Redis for every worker.

``TemplateCatalog.catalog`` answers what an agent's template is at Meta (category, status,
parameters) from ``tenant:{id}:templates:{waba}`` in Redis, read from Meta
(``GET /{waba-id}/message_templates``) when missing or older than ``TTL_S``. Meta's template
refusals at send time (132000, 132001, 132015, 132016) and its template webhooks make the copy be
read again (``forget``), so a template paused or re-categorised at Meta is seen within seconds.

Redis is a cache: when it is down the list is read from Meta for each lookup. When the list cannot be
had at all (Meta refuses the token's permission for it, or a number has no WABA configured), the
lookup answers ``None`` and the send goes unchecked: Meta's own answer then reaches the agent as a
``Failed`` receipt, as before the catalog existed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import orjson
import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.exceptions import RedisError

from wabridge.connectors.meta_graph import MetaGraphClient, WhatsAppTokens
from wabridge.errors import PermanentError
from wabridge.settings import Settings
from wabridge.tenants import Tenant
from wabridge.transforms.templates import KnownTemplate, known_template

log = logging.getLogger(__name__)

# A template's status or category changes at Meta now and then; refusals and webhooks refresh sooner.
TTL_S = 600

READS = Counter("wabridge_template_list_reads_total", "Template lists read from Meta, by outcome", ["outcome"])


def templates_key(settings: Settings, tenant_id: str, waba_id: str) -> str:
    return settings.redis_key(f"tenant:{tenant_id}:templates:{waba_id}")


async def forget_templates(redis: aioredis.Redis, settings: Settings, tenant_id: str, waba_id: str) -> None:
    """Read the WABA's template list from Meta again next time (Meta refused a template, or said
    one changed). Redis down: the copy lives out its ``TTL_S``."""
    try:
        await redis.delete(templates_key(settings, tenant_id, waba_id))
    except RedisError as exc:
        log.warning("redis unavailable, template list of tenant %s not dropped: %s", tenant_id, exc)


def _known(entries: Sequence[object]) -> list[KnownTemplate]:
    """The templates of Meta's list that name one (as read from Meta or from the Redis copy)."""
    return [t for t in (known_template(entry) for entry in entries) if t is not None]


class Catalog:
    """One WABA's templates by (name, language)."""

    def __init__(self, templates: list[KnownTemplate]) -> None:
        self._by_key = {t.key: t for t in templates}

    def get(self, name: str, language: str) -> KnownTemplate | None:
        return self._by_key.get((name, language))

    def languages_of(self, name: str) -> list[str]:
        return sorted(language for known, language in self._by_key if known == name)


class TemplateCatalog:
    """The tenants' templates; one per worker, shared through Redis."""

    def __init__(
        self, redis: aioredis.Redis, settings: Settings, graph: MetaGraphClient, tokens: WhatsAppTokens
    ) -> None:
        self._redis = redis
        self._settings = settings
        self._graph = graph
        self._tokens = tokens

    def key(self, tenant_id: str, waba_id: str) -> str:
        return templates_key(self._settings, tenant_id, waba_id)

    async def catalog(self, tenant: Tenant, waba_id: str | None) -> Catalog | None:
        """The WABA's templates; None when they cannot be known (no WABA, or Meta refuses the list).
        ``TransientError`` (Meta unreachable) and ``TenantHeld`` (token refused) go to the caller."""
        if not waba_id:
            READS.labels("no_waba").inc()
            return None
        cached = await self._cached(tenant.id, waba_id)
        if cached is not None:
            return Catalog(cached)
        try:
            raw = await self._tokens.using(tenant, lambda token: self._graph.message_templates(tenant, waba_id, token))
        except PermanentError as exc:
            READS.labels("refused").inc()
            log.warning(
                "tenant %s: Meta refused the template list of WABA %s (%s); agent templates go unchecked",
                tenant.id, waba_id, exc,
            )  # fmt: skip
            return None
        READS.labels("read").inc()
        await self._store(tenant.id, waba_id, raw)
        return Catalog(_known(raw))

    async def forget(self, tenant_id: str, waba_id: str) -> None:
        await forget_templates(self._redis, self._settings, tenant_id, waba_id)

    async def _cached(self, tenant_id: str, waba_id: str) -> list[KnownTemplate] | None:
        try:
            raw = await self._redis.get(self.key(tenant_id, waba_id))
        except RedisError as exc:
            log.warning("redis unavailable for the templates of tenant %s: %s", tenant_id, exc)
            return None
        if raw is None:
            return None
        try:
            entries = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return _known(entries) if isinstance(entries, list) else None

    async def _store(self, tenant_id: str, waba_id: str, raw: list[dict[str, object]]) -> None:
        try:
            await self._redis.set(self.key(tenant_id, waba_id), orjson.dumps(raw), ex=TTL_S)
        except RedisError as exc:
            log.warning("redis unavailable, template list of tenant %s not cached: %s", tenant_id, exc)
