"""What the stage agents of one worker share: connections, the group-commit sink, the error route.

Connections open lazily on first use, so an agent can take events as soon as the worker has its
partitions, and a dependency that is down shows up as a ``TransientError`` in the lane that needs
it (retried there) rather than as a worker that cannot start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import faust
import orjson
from prometheus_client import Counter

from wabridge.agents import holds
from wabridge.agents.holds import TenantHolds
from wabridge.connectors import postgres, redis_client
from wabridge.connectors.genesys import backoff_delays
from wabridge.connectors.tenant_directory import TenantDirectory
from wabridge.errors import PermanentError, TenantHeld, TransientError, metric_reason
from wabridge.failures import classify, describe
from wabridge.masking import mask_key
from wabridge.schemas.status import MessageStatus
from wabridge.settings import Settings
from wabridge.streams.app import create_table, stage_topic
from wabridge.streams.lanes import Handler
from wabridge.streams.topics import ERROR_EVENTS
from wabridge.streams.types import StageEvent
from wabridge.tables.conversations import MappingCache
from wabridge.tables.mirror import ActivityCoalescer, GroupCommitSink, WriteKind
from wabridge.tables.tracking import TRACK, Tracked
from wabridge.tenants import SecretBox, Tenant, TenantStore

log = logging.getLogger(__name__)

T = TypeVar("T")
Item = TypeVar("Item")
Result = TypeVar("Result")

ROUTED_TO_ERRORS = Counter(
    "wabridge_stage_errors_total", "Events a stage routed to the error topic, by stage and reason", ["stage", "reason"]
)
RETRIES = Counter("wabridge_stage_retries_total", "Transient failures a stage retried, by stage", ["stage"])
# Whatever the outcome (done, or routed to error-events: wabridge_stage_errors_total says which).
RECORDS = Counter("wabridge_stage_records_total", "Records a stage finished with", ["stage"])

# Backoff of transient failures: doubling from 0.2 s with jitter, capped, retried until the dependency is back
# (giving up would mean dropping or stopping; the lane holds its key's later events meanwhile).
_BACKOFF_START_S = 0.2
_BACKOFF_MAX_S = 10.0


@dataclass(frozen=True, slots=True)
class RecordIdentity:
    """Who a stage record is about, read leniently from its bytes: for error lines and tracking."""

    tenant_id: str | None = None
    message_id: str | None = None
    customer_id: str | None = None
    # A customer's message (not a status or a business error): tracked ``failed`` when it fails.
    inbound_message: bool = False


def identify_record(raw: bytes) -> RecordIdentity:
    """Tenant, message and customer of any stage record (``WebhookEvent``, ``InboundMessage``,
    ``ReadyMessage``, …), or as much of them as the bytes hold; never raises."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return RecordIdentity()
    if not isinstance(value, dict):
        return RecordIdentity()
    inner = value.get("message")
    if isinstance(inner, dict) and "wamid" in inner:  # ReadyMessage, MediaPending
        value = inner
    tenant = _text(value.get("tenant_id"))
    customer = _text(value.get("customer_id"))
    if "wamid" in value:  # InboundMessage or StatusUpdate
        return RecordIdentity(tenant, _text(value.get("wamid")), customer, inbound_message="status" not in value)
    event = value.get("event")  # WebhookEvent: Meta's own object
    message_id = _text(event.get("id")) if isinstance(event, dict) else None
    return RecordIdentity(tenant, message_id, customer, inbound_message=value.get("kind") == "message")


def _text(value: Any) -> str | None:
    return value[:200] if isinstance(value, str) and value else None


RESENDS = Counter(
    "wabridge_resends_total",
    "Requests sent again after an attempt the peer may have taken (a timeout or 5xx after sending)",
    ["stage", "tenant"],
)


class ResendWatch:
    """One effect's attempts (a POST to Genesys, a send to Meta): an attempt after one the peer may
    have taken (``TransientError.maybe_taken``) is a resend, counted and logged, since the customer
    or the agent may then see the message twice. Wrap the action given to ``StageContext.retrying``."""

    def __init__(self, stage: str, tenant_id: str, message_id: str) -> None:
        self._stage = stage
        self._tenant_id = tenant_id
        self._message_id = message_id
        self._maybe_taken = False

    def __call__(self, action: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
        async def attempt() -> T:
            if self._maybe_taken:
                self._maybe_taken = False
                RESENDS.labels(self._stage, self._tenant_id).inc()
                log.warning(
                    "%s: tenant %s message %s sent again after an attempt the peer may have taken: it may arrive twice",
                    self._stage, self._tenant_id, self._message_id,
                    extra={"tenant": self._tenant_id, "stage": self._stage, "message_id": self._message_id},
                )  # fmt: skip
            try:
                return await action()
            except TransientError as exc:
                self._maybe_taken = exc.maybe_taken
                raise

        return attempt


class StageContext:
    """One per worker process; the agents' handlers use it for every side effect."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.error_topic = stage_topic(app, settings, ERROR_EVENTS)
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._sink: GroupCommitSink | None = None
        self.redis = redis_client.client(settings)
        self.cache = MappingCache(self.redis, settings)
        self.activity = ActivityCoalescer(self.pool)
        self.box = SecretBox.from_settings(settings)
        self._directory: TenantDirectory | None = None
        self.holds = TenantHolds()

    async def directory(self) -> TenantDirectory:
        """Tenants by id (with their decrypted credentials), cached in-process for a few seconds."""
        if self._directory is None:
            pool = await self.pool()
            if self._directory is None:  # again after the await: one directory (one cache) per worker
                self._directory = TenantDirectory(TenantStore(pool, self.box), self.redis, self.box, self.settings)
        return self._directory

    async def tenant(self, tenant_id: str) -> Tenant:
        """The active tenant ``tenant_id``; ``PermanentError`` when unknown. A disabled tenant is held
        (its messages wait here) until it is enabled again."""

        async def lookup() -> Tenant | None:
            try:
                return await (await self.directory()).by_id(tenant_id)
            except (OSError, asyncpg.PostgresError) as exc:
                raise TransientError(f"tenant lookup failed: {exc}", retry_after=1.0) from exc

        async def active() -> Tenant | None:
            tenant = await lookup()
            if tenant is not None and not tenant.active:
                raise TenantHeld(
                    f"tenant {tenant_id!r} is disabled (wabridge tenants enable)",
                    tenant_id=tenant_id,
                    reason="tenant_disabled",
                )
            return tenant

        # Not gated on the tenant's hold: a lookup that succeeds says nothing of Genesys credentials.
        # The deliver stage's next POST for the tenant takes it off hold.
        tenant = await self.retrying("tenant_lookup", active)
        if tenant is None:
            raise PermanentError(f"no tenant {tenant_id!r}", reason="unknown_tenant")
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
            pool = await self.pool()
            # Checked again after the await: lanes starting together must share one sink (a second
            # one would be dropped with its task pending, and its batches would not be shared).
            if self._sink is None:
                self._sink = GroupCommitSink(pool)
        return self._sink

    async def close(self) -> None:
        await self.activity.flush()
        if self._sink is not None:
            await self._sink.close()
        if self._pool is not None:
            await self._pool.close()
        await self.redis.aclose()

    async def write(self, stage: str, kind: WriteKind[Item, Result], item: Item) -> Result:
        """A PostgreSQL write through the group-commit sink, retried while it is transient."""

        async def attempt() -> Result:
            return await (await self.sink()).write(kind, item)

        return await self.retrying(stage, attempt)

    async def retrying(
        self,
        stage: str,
        action: Callable[[], Awaitable[T]],
        *,
        tenant_id: str | None = None,
        scope: str = holds.GENESYS,
    ) -> T:
        """Run ``action`` until it does not raise ``TransientError`` (PermanentError passes through).

        ``TenantHeld`` puts its tenant on hold in its scope (``agents.holds``) and waits its turn
        instead of backing off alone; with ``tenant_id``, the action also waits while that tenant is
        held in ``scope`` (the peer the action needs) and its success takes that hold off.
        """
        delays = backoff_delays(_BACKOFF_START_S, _BACKOFF_MAX_S)
        while True:
            if tenant_id is not None:
                await self.holds.wait_turn(tenant_id, scope)
            try:
                result = await action()
            except TenantHeld as exc:
                RETRIES.labels(stage).inc()
                self.holds.hold(exc)
                if tenant_id is None:
                    await self.holds.wait_turn(exc.tenant_id, exc.scope)
                continue
            except TransientError as exc:
                RETRIES.labels(stage).inc()
                wait = max(next(delays), exc.retry_after or 0.0)
                log.warning("%s: transient failure, retrying in %.1f s: %s", stage, wait, exc)
                await asyncio.sleep(wait)
                continue
            if tenant_id is not None:
                self.holds.release(tenant_id, scope)
            return result

    def guarded(self, stage: str, handler: Handler) -> Handler:
        """``handler`` such that nothing it raises stops the stream (ARCHITECTURE.md, invariant 6).

        Whatever escapes the stage's own handling is classified once (``failures.classify``): a
        transient failure runs the handler again after a backoff (handlers are idempotent, and the
        key's later events wait in its lane); anything else routes the record to ``error-events``
        with the stage, reason, position and original bytes, tracks a customer's message as
        ``failed``, and the key's next event goes on. Only cancellation passes through.
        """

        finished = RECORDS.labels(stage)  # the series exists from the start, at 0
        retries = RETRIES.labels(stage)

        async def guarded_handler(event: StageEvent) -> None:
            delays = backoff_delays(_BACKOFF_START_S, _BACKOFF_MAX_S)
            while True:
                try:
                    await handler(event)
                    finished.inc()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    decided = classify(exc)
                    if isinstance(decided, TransientError):
                        retries.inc()
                        wait = max(next(delays), decided.retry_after or 0.0)
                        message = event.message
                        log.warning(
                            "%s: %s[%d]@%d transient failure, running it again in %.1f s: %s",
                            stage, message.topic, message.partition, message.offset, wait, decided,
                        )  # fmt: skip
                        await asyncio.sleep(wait)
                        continue
                    if decided is not exc:
                        log.debug("%s: unprocessable record", stage, exc_info=exc)
                    await self.fail_record(stage, event, decided)
                    finished.inc()
                    return

        return guarded_handler

    async def decoded(self, stage: str, event: StageEvent, decode: Callable[[bytes], T], what: str) -> T | None:
        """The stage's prologue: ``event``'s record, or ``None`` when its bytes are not one (``what``).
        Then the record went to ``error-events`` (``fail_record``) and the stage has nothing to do."""
        raw = event.value if isinstance(event.value, bytes) else b""
        try:
            return decode(raw)
        except PermanentError as exc:
            await self.fail_record(stage, event, exc)
        except ValueError as exc:  # orjson's and pydantic's errors are ValueErrors
            error = PermanentError(f"not {what}: {exc}".splitlines()[0][:1000], reason="invalid_record")
            await self.fail_record(stage, event, error)
        return None

    async def fail_record(self, stage: str, event: StageEvent, error: PermanentError) -> None:
        """The permanent outcome of a record: ``error-events``, and ``failed`` if it is a customer's message."""
        raw = event.value if isinstance(event.value, bytes) else b""
        who = identify_record(raw)
        if who.inbound_message and who.tenant_id and who.message_id:
            reason = orjson.dumps({"reason": error.reason, "stage": stage, "message": str(error)[:1000]}).decode()
            tracked = Tracked(
                tenant_id=who.tenant_id,
                direction="inbound",
                message_id=who.message_id,
                status=MessageStatus.FAILED,
                customer_id=who.customer_id,
                meta_message_id=who.message_id,
                error=reason,
            )

            try:
                await self.write(stage, TRACK, tracked)
            except PermanentError as exc:  # the row itself is refused: the error record still says why
                log.error("%s: could not track %s as failed: %s", stage, who.message_id, exc)
        await self.route_error(stage, event, error, tenant_id=who.tenant_id, message_id=who.message_id)

    async def route_error(
        self,
        stage: str,
        event: StageEvent,
        error: PermanentError,
        *,
        tenant_id: str | None = None,
        message_id: str | None = None,
    ) -> None:
        """Put ``event`` on ERROR_EVENTS with the reason and where it came from; wait for the ack.

        Tenant and message id not given are read from the record itself where it holds them; both
        are bounded, since they may be whatever a hostile payload put there.
        """
        message = event.message
        key = event.key if isinstance(event.key, str) else None
        value = event.value if isinstance(event.value, bytes) else b""
        if tenant_id is None or message_id is None:
            who = identify_record(value)
            tenant_id = tenant_id or who.tenant_id
            message_id = message_id or who.message_id
        tenant_id, message_id = _text(tenant_id), _text(message_id)
        record = {
            "stage": stage,
            "reason": error.reason,
            "error": str(error)[:2000],
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "tenant_id": tenant_id,
            "message_id": message_id,
            "key": key,
            # The original bytes, so the record can be fixed and replayed; decoded when it is JSON.
            "value": _embeddable(value),
        }
        ROUTED_TO_ERRORS.labels(stage, metric_reason(error.reason)).inc()
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
            extra={
                "tenant": tenant_id,
                "stage": stage,
                "message_id": message_id,
                "reason": error.reason,
                "customer": mask_key(key) if key else None,
            },
        )
        try:
            encoded = orjson.dumps(record)
        except TypeError:  # nested beyond what orjson writes: keep the original bytes as text
            encoded = orjson.dumps({**record, "value": value.decode("utf-8", errors="replace")})
        await self.retrying(stage, lambda: self._send_error(key, encoded))

    async def _send_error(self, key: str | None, value: bytes) -> None:
        try:
            await (await self.error_topic.send(key=key or "_unkeyed", value=value))
        except Exception as exc:
            raise TransientError(f"could not produce to {ERROR_EVENTS}: {describe(exc)}") from exc


def _embeddable(value: bytes) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value.decode("utf-8", errors="replace")


async def send_and_wait(topic: faust.TopicT, key: str, value: bytes) -> None:
    """Produce and wait for the broker's ack (acks=all): the event's effect is only done then.

    Raises ``TransientError`` while the cluster cannot take the record, ``PermanentError`` when
    the record itself is refused (over the broker's size limit): resending it cannot succeed.
    """
    try:
        await (await topic.send(key=key, value=value))
    except Exception as exc:
        raise classify(exc) from exc


class SeenIds:
    """The ids of the events each customer key has had done, in a changelog-backed table: a stage's
    dedupe (invariant 4). The table is keyed like the stage topics, so a key's lane is the only
    writer of its entry and the read-then-write in one lane is atomic. Remember an id only once
    the event's effect is done: a crash in between does it again (idempotently) rather than lose it.
    ``keep`` bounds the ids per customer (duplicates arrive within minutes)."""

    def __init__(self, app: faust.App, name: str, *, help: str, keep: int) -> None:
        self.table = create_table(app, name, default=list, help=help)
        self.keep = keep

    def seen(self, key: str, record_id: str) -> bool:
        already: list[str] = self.table.get(key) or []
        return record_id in already

    def remember(self, key: str, record_id: str) -> None:
        already: list[str] = self.table.get(key) or []
        self.table[key] = [*already[-(self.keep - 1) :], record_id]
