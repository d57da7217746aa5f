"""What the stage agents of one worker share: connections, the group-commit sink, the error route.

Connections open lazily on first use, so an agent can take events as soon as the worker has its
partitions, and a dependency that is down shows up as a ``TransientError`` in the lane that needs
it (retried there) rather than as a worker that cannot start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import faust
import orjson
import redis.asyncio as aioredis
from faust.types import EventT
from prometheus_client import Counter

from wabridge.connectors import postgres
from wabridge.connectors.genesys import backoff_delays
from wabridge.connectors.tenant_directory import TenantDirectory
from wabridge.errors import PermanentError, TransientError
from wabridge.masking import mask_key
from wabridge.settings import Settings
from wabridge.streams.app import stage_topic
from wabridge.streams.topics import ERROR_EVENTS
from wabridge.tables.conversations import MappingCache
from wabridge.tables.mirror import ActivityCoalescer, GroupCommitSink
from wabridge.tenants import SecretBox, Tenant, TenantStore

log = logging.getLogger(__name__)

T = TypeVar("T")

ROUTED_TO_ERRORS = Counter(
    "wabridge_stage_errors_total", "Events a stage routed to the error topic, by stage and reason", ["stage", "reason"]
)
RETRIES = Counter("wabridge_stage_retries_total", "Transient failures a stage retried, by stage", ["stage"])

# Backoff of transient failures: doubling from 0.2 s with jitter, capped, retried until the dependency is back
# (giving up would mean dropping or stopping; the lane holds its key's later events meanwhile).
_BACKOFF_START_S = 0.2
_BACKOFF_MAX_S = 10.0


class StageContext:
    """One per worker process; the agents' handlers use it for every side effect."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.error_topic = stage_topic(app, settings, ERROR_EVENTS)
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._sink: GroupCommitSink | None = None
        self.redis = aioredis.from_url(settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self.cache = MappingCache(self.redis, settings)
        self.activity = ActivityCoalescer(self.pool)
        self.box = SecretBox.from_settings(settings)
        self._directory: TenantDirectory | None = None

    async def directory(self) -> TenantDirectory:
        """Tenants by id (with their decrypted credentials), cached in-process for a few seconds."""
        if self._directory is None:
            self._directory = TenantDirectory(
                TenantStore(await self.pool(), self.box), self.redis, self.box, self.settings
            )
        return self._directory

    async def tenant(self, tenant_id: str) -> Tenant:
        """The active tenant ``tenant_id``; ``PermanentError`` when unknown or disabled."""

        async def lookup() -> Tenant | None:
            try:
                return await (await self.directory()).by_id(tenant_id)
            except (OSError, asyncpg.PostgresError) as exc:
                raise TransientError(f"tenant lookup failed: {exc}", retry_after=1.0) from exc

        tenant = await self.retrying("tenant_lookup", lookup)
        if tenant is None:
            raise PermanentError(f"no tenant {tenant_id!r}", reason="unknown_tenant")
        if not tenant.active:
            raise PermanentError(f"tenant {tenant_id!r} is disabled", reason="tenant_disabled")
        return tenant

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    try:
                        self._pool = await postgres.connect(self.settings, min_size=1, max_size=8)
                    except (OSError, asyncpg.PostgresError) as exc:
                        raise TransientError(f"postgres unreachable: {exc}", retry_after=1.0) from exc
        return self._pool

    async def sink(self) -> GroupCommitSink:
        if self._sink is None:
            self._sink = GroupCommitSink(await self.pool())
        return self._sink

    async def close(self) -> None:
        await self.activity.flush()
        if self._sink is not None:
            await self._sink.close()
        if self._pool is not None:
            await self._pool.close()
        await self.redis.aclose()

    async def retrying(self, stage: str, action: Callable[[], Awaitable[T]]) -> T:
        """Run ``action`` until it does not raise ``TransientError`` (PermanentError passes through)."""
        delays = backoff_delays(_BACKOFF_START_S, _BACKOFF_MAX_S)
        while True:
            try:
                return await action()
            except TransientError as exc:
                RETRIES.labels(stage).inc()
                wait = max(next(delays), exc.retry_after or 0.0)
                log.warning("%s: transient failure, retrying in %.1f s: %s", stage, wait, exc)
                await asyncio.sleep(wait)

    async def route_error(
        self,
        stage: str,
        event: EventT,
        error: PermanentError,
        *,
        tenant_id: str | None = None,
        message_id: str | None = None,
    ) -> None:
        """Put ``event`` on ERROR_EVENTS with the reason and where it came from; wait for the ack."""
        message = event.message
        key = event.key if isinstance(event.key, str) else None
        value = event.value if isinstance(event.value, bytes) else b""
        record = {
            "stage": stage,
            "reason": error.reason,
            "error": str(error),
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "tenant_id": tenant_id,
            "message_id": message_id,
            "key": key,
            # The original bytes, so the record can be fixed and replayed; decoded when it is JSON.
            "value": _embeddable(value),
        }
        ROUTED_TO_ERRORS.labels(stage, error.reason).inc()
        log.error(
            "%s: %s[%d]@%d tenant=%s message=%s key=%s routed to %s: %s (%s)",
            stage,
            message.topic,
            message.partition,
            message.offset,
            tenant_id,
            message_id,
            mask_key(key) if key else None,
            ERROR_EVENTS,
            error.reason,
            error,
        )
        await self.retrying(stage, lambda: self._send_error(key, orjson.dumps(record)))

    async def _send_error(self, key: str | None, value: bytes) -> None:
        try:
            await (await self.error_topic.send(key=key or "_unkeyed", value=value))
        except Exception as exc:
            raise TransientError(f"could not produce to {ERROR_EVENTS}: {exc}") from exc


def _embeddable(value: bytes) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value.decode("utf-8", errors="replace")


async def send_and_wait(topic: faust.TopicT, key: str, value: bytes) -> None:
    """Produce and wait for the broker's ack (acks=all): the event's effect is only done then."""
    try:
        await (await topic.send(key=key, value=value))
    except Exception as exc:
        raise TransientError(f"could not produce to {topic.get_topic_name()}: {exc}") from exc
