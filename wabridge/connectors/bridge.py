"""``wabridge bridge``: the RabbitMQ -> Kafka connector.

Consumes the webhook queues in delivery order, splits each webhook into one record per message,
status and error, keys each ``tenant_id:customer_id`` and produces it to the first stage topic.
``customer_id`` is the customer's one key, whichever of their phone number and BSUID Meta named
them by (``connectors.identities``): a customer who adopts a username stays on their partition.
A RabbitMQ message is acked only after Kafka has acknowledged every record made from it
(acks=all), so a crash at any point leaves the webhook in RabbitMQ to be delivered again.
Records may then reach Kafka twice; the prepare stage dedupes them on wamid (and on
wamid + status for statuses), so nothing reaches an agent twice.

Order: the queues are quorum queues with a single active consumer, and this connector produces
records in the order it receives the webhooks; aiokafka keeps one batch in flight per partition,
and here its batches never expire (:func:`_keep_batches_until_taken`), so a customer's records
land on their partition in arrival order even when Kafka comes back in the middle of a backlog.

Acks: each queue is consumed on its own channel, and the messages whose records Kafka has taken
are acked in runs, one ``basic.ack`` (``multiple``) per run rather than one per message.

Nothing stops it (ARCHITECTURE.md, invariants 1, 2 and 6). Every failure is one of three kinds:

* **The message's own fault**: it cannot be parsed, split or serialised (any exception of the pure
  splitter: JSON nested deeper than a serialiser writes, a wrong type anywhere), or Kafka refuses
  one of its records for good (``connectors.kafka.classify``: over the broker's size limit). The
  message goes to its dead-letter queue with an ``x-wabridge-reason`` header and its raw body, a
  log line names queue, tenant and reason, a metric counts it, and consumption goes on.
* **Kafka cannot take records** (down, no leader, timeouts): the bridge *holds*. It stops taking
  new messages once Kafka has not acknowledged a record within the request timeout, keeps what it
  produced until Kafka takes it (or produces again, in the order received, what Kafka failed),
  for as long as the outage lasts, and then flows on. Nothing is returned to RabbitMQ meanwhile, so an
  outage of any length spends none of a message's delivery limit. ``/readyz`` says 503 with the
  reason while holding.
* **PostgreSQL cannot say who a customer is** (a customer's identifiers not seen before): the
  consumer waits, the webhook unacked in RabbitMQ, and goes on once PostgreSQL answers.
* **RabbitMQ goes away** (channel closed, connection lost): every queue's consumer is supervised;
  it reconnects with backoff and resumes. Unacked deliveries come back from RabbitMQ and are
  bridged again, deduped downstream. ``/readyz`` says 503 with the reason while a consumer is not
  consuming.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import RecordMetadata
from prometheus_client import Counter, Gauge

from wabridge.connectors import kafka, rabbitmq
from wabridge.connectors.backlog import Backlog
from wabridge.connectors.genesys import backoff_delays
from wabridge.connectors.identities import IdentityDirectory
from wabridge.errors import ConfigurationError, PermanentError, TransientError
from wabridge.failures import classify, describe
from wabridge.observability import NotReady, health_routes
from wabridge.schemas.meta import WebhookShapeError, parse_webhook, split_webhook
from wabridge.schemas.records import WebhookEvent
from wabridge.settings import Settings
from wabridge.streams.topics import (
    DEAD_LETTER_SUFFIX,
    GENESYS_OUTBOUND,
    GENESYS_OUTBOUND_EVENTS,
    INBOUND_WHATSAPP_MESSAGES,
    WA_INBOUND,
)

log = logging.getLogger(__name__)

WEBHOOKS = Counter(
    "wabridge_bridge_webhooks_total", "Queue messages handled, by queue and outcome", ["queue", "outcome"]
)
RECORDS = Counter("wabridge_bridge_records_total", "Records produced to Kafka, by topic", ["topic"])
IN_FLIGHT = Gauge("wabridge_bridge_in_flight", "Queue messages produced but not yet acknowledged by Kafka")
HOLDING = Gauge("wabridge_bridge_holding", "1 while Kafka cannot take records and the bridge holds (alert)")
IDENTITIES_UNAVAILABLE = Gauge(
    "wabridge_bridge_identities_unavailable", "1 while PostgreSQL cannot say who a webhook's customers are"
)
HOLDS = Counter("wabridge_bridge_produce_retries_total", "Records produced again after Kafka could not take them")
CONSUMING = Gauge("wabridge_bridge_consuming", "1 while the queue's consumer is consuming", ["queue"])
CONSUMER_RESTARTS = Counter(
    "wabridge_bridge_consumer_restarts_total", "Queue consumers restarted after a failure", ["queue"]
)

# How long a stopping bridge waits for Kafka to take what is in flight before it lets RabbitMQ
# deliver those messages again (they are not lost; each return counts toward the delivery limit).
STOP_GRACE_S = 30.0
# A dead-letter reason travels in a header and a log line: bounded.
REASON_LIMIT = 1000

GENESYS_RECORD_VERSION = 1


class UnbridgeableMessage(PermanentError):
    """The queue message cannot become records; it goes to the dead-letter queue with the reason."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="unbridgeable")


def meta_records(message: AbstractIncomingMessage) -> list[WebhookEvent]:
    """The events of one Meta webhook, in the order Meta listed them, keyed as Meta named each
    customer (the bridge then keys them by the customer's one key: ``connectors.identities``)."""
    headers = message.headers or {}
    try:
        tenants: dict[str, str] = orjson.loads(str(headers["tenants"]))
        received_at = float(str(headers["received_at"]))
        webhook_id = str(headers.get("archive_key") or message.message_id or "")
    except (KeyError, ValueError, orjson.JSONDecodeError) as exc:
        raise UnbridgeableMessage(f"missing or bad edge headers: {exc!r}") from exc
    try:
        payload = parse_webhook(message.body)
    except WebhookShapeError as exc:
        raise UnbridgeableMessage(f"not a WhatsApp payload: {exc}") from exc
    records: list[WebhookEvent] = []
    # Usually one tenant; a POST naming numbers of several tenants is split once per tenant.
    for tenant_id in dict.fromkeys(tenants.values()):
        events = split_webhook(payload, tenant_id=tenant_id, webhook_id=webhook_id, received_at=received_at)
        records += [e for e in events if tenants.get(e.phone_number_id) == tenant_id]
    return records


@dataclass(frozen=True, slots=True)
class KeyedRecord:
    """A record's key and bytes, as every splitter's records offer them."""

    key: str
    value: bytes

    def to_bytes(self) -> bytes:
        return self.value


def genesys_records(message: AbstractIncomingMessage) -> list[KeyedRecord]:
    headers = message.headers or {}
    try:
        tenant_id = str(headers["tenant_id"])
        received_at = float(str(headers["received_at"])) if "received_at" in headers else None
        payload = orjson.loads(message.body)
        customer_id = str(payload["channel"]["to"]["id"])
    except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
        raise UnbridgeableMessage(f"not an Open Messaging outbound event with channel.to.id: {exc!r}") from exc
    record = {
        "v": GENESYS_RECORD_VERSION,
        "tenant_id": tenant_id,
        "customer_id": customer_id,
        "received_at": received_at,
        "event": payload,
    }
    return [KeyedRecord(f"{tenant_id}:{customer_id}", orjson.dumps(record))]


Splitter = Callable[[AbstractIncomingMessage], Sequence[WebhookEvent | KeyedRecord]]


@dataclass(frozen=True, slots=True)
class Source:
    """A queue the bridge consumes, the topic its records go to, and how a message becomes records.
    ``by_identity``: its records are Meta's events, keyed by their customer's one key."""

    queue: str
    topic: str
    split: Splitter
    by_identity: bool = False


SOURCES = (
    Source(INBOUND_WHATSAPP_MESSAGES, WA_INBOUND, meta_records, by_identity=True),
    # Genesys names the customer by the id we gave it (channel.to.id): already their one key.
    Source(GENESYS_OUTBOUND_EVENTS, GENESYS_OUTBOUND, genesys_records),
)


@dataclass(frozen=True, slots=True)
class Produced:
    """A queue message whose records are on their way to Kafka."""

    message: AbstractIncomingMessage
    records: list[tuple[str, bytes]]
    futures: list[asyncio.Future[RecordMetadata]]
    queue_name: str
    topic: str


def tenant_of(message: AbstractIncomingMessage) -> str:
    """The tenant(s) the edge named in a queue message's headers, for log lines; never raises."""
    headers = message.headers or {}
    if "tenant_id" in headers:
        return str(headers["tenant_id"])[:100]
    try:
        tenants = orjson.loads(str(headers.get("tenants", "{}")))
        return ",".join(sorted({str(t) for t in tenants.values()}))[:100] if isinstance(tenants, dict) else "?"
    except orjson.JSONDecodeError:
        return "?"


def _keep_batches_until_taken(producer: AIOKafkaProducer) -> None:
    """Make ``producer`` keep every batch until Kafka takes it, however long Kafka is away.

    aiokafka fails a batch older than ``request_timeout_ms`` (no leader, or an error while it
    waited). The batch of a customer's later message, appended after that one, can still be sent
    once Kafka is back, before the bridge has produced the failed record again: the customer's
    messages would land out of order. A batch that never expires goes out in append order, so a
    partition's records land in the order the bridge produced them. Each request still times out
    and is retried; only giving up on a batch is removed (the bridge never gives up on a record
    either: it holds). Stopping gives up on what is left (:meth:`Bridge._stop_producer`).
    """
    accumulator = getattr(producer, "_message_accumulator", None)
    if accumulator is None or not hasattr(accumulator, "_batch_ttl"):
        raise ConfigurationError("this aiokafka version has no batch TTL to lift; the bridge cannot keep order")
    accumulator._batch_ttl = math.inf


class Bridge:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer = AIOKafkaProducer(
            **kafka.connection(settings),
            acks="all",
            enable_idempotence=settings.kafka_idempotent,
            # Faust's producer partitions with this same murmur2 partitioner, so a key lands on
            # the same partition whichever process produced it.
            partitioner=DefaultPartitioner(),
            linger_ms=2,
            max_batch_size=256 * 1024,
            request_timeout_ms=settings.kafka_request_timeout_ms,
        )
        _keep_batches_until_taken(self._producer)
        self._request_timeout_s = settings.kafka_request_timeout_ms / 1000
        self._stopping = asyncio.Event()
        # Set while records may be produced; cleared while Kafka cannot take them (holding).
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._holding_since: float | None = None
        self._hold_reason = ""
        # Queue -> why its consumer is not consuming; absent while it consumes.
        self._not_consuming: dict[str, str] = {s.queue: "starting" for s in SOURCES}
        self._topology_declared = False
        self._identities = IdentityDirectory(settings)

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Bridge until ``stop()``; then finish in-flight work and return it acked or to RabbitMQ."""
        if not await self._start_producer():
            return
        try:
            supervised = [asyncio.create_task(self._supervise(source)) for source in SOURCES]
            await self._stopping.wait()
            await asyncio.gather(*supervised, return_exceptions=True)
        finally:
            await self._stop_producer()
            await self._identities.close()

    async def _stop_producer(self) -> None:
        """Flush what Kafka will take within the grace period; give up the rest (its queue messages
        were not acked and go back to RabbitMQ), since batches do not expire by themselves here."""
        accumulator = self._producer._message_accumulator
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(accumulator.flush(), STOP_GRACE_S)
        accumulator.fail_all(KafkaTimeoutError("the bridge stopped before Kafka took the record"))
        await self._producer.stop()

    def stop(self) -> None:
        self._stopping.set()
        self._flowing.set()  # a holding bridge stops holding: what Kafka has not taken goes back to RabbitMQ

    async def readiness(self) -> bool:
        """Ready while every queue is consumed and Kafka takes records; else ``NotReady`` with why."""
        problems = [f"{queue}: {why}" for queue, why in self._not_consuming.items()]
        if self._holding_since is not None:
            held = time.monotonic() - self._holding_since
            problems.append(f"kafka: holding for {held:.0f} s, {self._hold_reason}")
        if problems:
            raise NotReady("; ".join(problems))
        return True

    async def _start_producer(self) -> bool:
        delays = backoff_delays(0.5, 15.0)
        while not self._stopping.is_set():
            try:
                await self._producer.start()
                return True
            except Exception as exc:  # noqa: BLE001 - classified: the cluster may come back
                decided = classify(exc)
                self._enter_hold(decided)
                log.warning("bridge: kafka not reachable at start (%s); retrying", describe(exc))
                await self._sleep_unless_stopping(next(delays))
        return False

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # --- supervision --------------------------------------------------------------------------

    async def _supervise(self, source: Source) -> None:
        """Keep ``source`` consumed until stopped: any failure of its consumer reconnects and resumes."""
        delays = backoff_delays(0.5, 15.0)

        def consuming() -> None:  # up again: the next failure's backoff starts from the beginning
            nonlocal delays
            delays = backoff_delays(0.5, 15.0)

        while not self._stopping.is_set():
            try:
                await self._bridge_queue(source, on_consuming=consuming)
                return
            except Exception as exc:
                self._not_consuming[source.queue] = f"not consuming: {describe(exc, 300)}"
                CONSUMING.labels(source.queue).set(0)
                CONSUMER_RESTARTS.labels(source.queue).inc()
                wait = next(delays)
                log.error(
                    "bridge: consumer of %s stopped (%s); reconnecting in %.1f s",
                    source.queue, describe(exc), wait, exc_info=not isinstance(classify(exc), TransientError),
                )  # fmt: skip
                await self._sleep_unless_stopping(wait)

    async def _bridge_queue(self, source: Source, on_consuming: Callable[[], None]) -> None:
        """Consume one queue on its own connection and channel until stopped; raises on any failure.

        A plain (not robust) connection: after a reconnect the old delivery tags are void, so the
        supervisor starts over with a fresh channel and RabbitMQ redelivers what was unacked.
        """
        connection = await aio_pika.connect(
            self._settings.rabbitmq_url.get_secret_value(),
            timeout=10,
            client_properties={"connection_name": f"wabridge-bridge {self._settings.queue(source.queue)}"},
        )
        tasks: list[asyncio.Task[Any]] = []
        try:
            if not self._topology_declared:
                setup = await connection.channel()
                await rabbitmq.declare_topology(setup, self._settings)
                await setup.close()
                self._topology_declared = True
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self._settings.rabbitmq_prefetch)
            dead_letters = await connection.channel(publisher_confirms=True)
            queue = await channel.get_queue(self._settings.queue(source.queue))
            pending: asyncio.Queue[Produced] = asyncio.Queue(maxsize=self._settings.rabbitmq_prefetch)
            acker = asyncio.create_task(self._ack_in_order(pending, dead_letters))
            consumer = asyncio.create_task(self._consume(queue, source, pending, dead_letters))
            stopping = asyncio.create_task(self._stopping.wait())
            tasks = [acker, consumer, stopping]
            self._not_consuming.pop(source.queue, None)
            CONSUMING.labels(source.queue).set(1)
            on_consuming()
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if not self._stopping.is_set():
                for task in (consumer, acker):
                    if task.done():
                        task.result()  # raises what ended it
                raise ConnectionError(f"the consumer of {queue.name} ended")
            # Stopping: take nothing new, settle what Kafka has (acked or left to RabbitMQ), then close.
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pending.join(), STOP_GRACE_S)
        finally:
            self._not_consuming.setdefault(source.queue, "stopped")
            CONSUMING.labels(source.queue).set(0)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await connection.close()
            IN_FLIGHT.set(0)

    # --- the flow -----------------------------------------------------------------------------

    async def _consume(
        self, queue: AbstractQueue, source: Source, pending: asyncio.Queue[Produced], dead_letters: AbstractChannel
    ) -> None:
        topic = self._settings.topic(source.topic)
        async with queue.iterator() as messages:
            async for message in messages:
                try:
                    items = source.split(message)
                    if source.by_identity:
                        items = await self._keyed_by_identity([i for i in items if isinstance(i, WebhookEvent)])
                    records = [(item.key, item.to_bytes()) for item in items]
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - splitting and serialising are pure: whatever they raise is the message's fault
                    reason = str(exc) if isinstance(exc, UnbridgeableMessage) else describe(exc)
                    await self._dead_letter(dead_letters, queue.name, message, reason)
                    continue
                futures = []
                try:
                    for key, value in records:
                        futures.append(await self._send(topic, key, value))
                except PermanentError as exc:
                    # Records of it that Kafka took stay there; a redrive's copies are deduped downstream.
                    await self._dead_letter(dead_letters, queue.name, message, str(exc))
                    continue
                IN_FLIGHT.inc()
                await pending.put(Produced(message, records, futures, queue.name, topic))
        raise ConnectionError(f"RabbitMQ closed the consumer of {queue.name}")

    async def _keyed_by_identity(self, events: list[WebhookEvent]) -> list[WebhookEvent]:
        """``events`` keyed by their customers' one keys; waits while PostgreSQL cannot say (the
        webhook stays unacked in RabbitMQ, and nothing is produced out of order meanwhile)."""
        delays = backoff_delays(0.5, 10.0)
        waited_since: float | None = None
        while True:
            try:
                keyed = await self._identities.keyed(events)
            except TransientError as exc:
                if waited_since is None:
                    waited_since = time.monotonic()
                    log.error("bridge: customer identities unavailable, waiting: %s", exc)
                IDENTITIES_UNAVAILABLE.set(1)
                await self._sleep_unless_stopping(next(delays))
                if self._stopping.is_set():
                    raise asyncio.CancelledError from exc  # the message goes back to RabbitMQ
                continue
            if waited_since is not None:
                log.warning("bridge: customer identities available again after %.1f s", time.monotonic() - waited_since)
            IDENTITIES_UNAVAILABLE.set(0)
            return keyed

    async def _send(self, topic: str, key: str, value: bytes, *, gated: bool = True) -> asyncio.Future[RecordMetadata]:
        """Hand one record to the producer; holds while Kafka cannot take it, raises ``PermanentError``
        when the record itself is refused.

        ``gated``: wait first while the bridge holds, so that nothing new is produced ahead of what
        failed. The acker, which produces the failed records again, is the one sender not gated.
        """
        delays = backoff_delays(0.5, 10.0)
        if gated:
            await self._flowing.wait()
        while True:
            try:
                future: asyncio.Future[RecordMetadata] = await self._producer.send(topic, value, key=key.encode())
                return future
            except Exception as exc:  # noqa: BLE001 - classified: held, or raised as PermanentError
                await self._hold_unless_refused(exc, next(delays))

    async def _produce_until_taken(self, topic: str, key: str, value: bytes) -> RecordMetadata:
        """Produce one record again and wait for Kafka's ack, holding for as long as that takes."""
        delays = backoff_delays(0.5, 10.0)
        while True:
            future = await self._send(topic, key, value, gated=False)
            try:
                return await future
            except Exception as exc:  # noqa: BLE001 - classified: held, or raised as PermanentError
                await self._hold_unless_refused(exc, next(delays))

    def _enter_hold(self, error: TransientError | PermanentError) -> None:
        """Kafka cannot take records: gated senders wait until Kafka has acked a record again."""
        if self._holding_since is None:
            self._holding_since = time.monotonic()
            log.error("bridge: kafka cannot take records, holding (nothing is returned to RabbitMQ): %s", error)
        self._hold_reason = describe(error, 300)
        HOLDING.set(1)
        if not self._stopping.is_set():
            self._flowing.clear()

    def _leave_hold(self) -> None:
        if self._holding_since is not None:
            log.warning("bridge: kafka takes records again after %.1f s", time.monotonic() - self._holding_since)
        self._holding_since = None
        HOLDING.set(0)
        self._flowing.set()

    async def _hold_unless_refused(self, exc: Exception, wait_s: float) -> None:
        """A producer failure: ``PermanentError`` when Kafka refuses the record for good, else hold."""
        decided = classify(exc)
        if isinstance(decided, PermanentError):
            raise decided from exc
        await self._hold(decided, wait_s)

    async def _hold(self, error: TransientError | PermanentError, wait_s: float) -> None:
        self._enter_hold(error)
        HOLDS.inc()
        await self._sleep_unless_stopping(wait_s)
        if self._stopping.is_set():
            raise asyncio.CancelledError  # stopping while held: the message goes back to RabbitMQ

    async def _ack_in_order(self, pending: asyncio.Queue[Produced], dead_letters: AbstractChannel) -> None:
        """Ack queue messages once Kafka has every record of them, in the order they were sent.

        Whatever is waiting is settled as one batch: each run of bridged messages is acked with a
        single ``basic.ack`` (``multiple``) up to its last message. The channel carries this one
        queue, so an ack up to a delivery tag covers exactly the messages before it in this queue,
        all of which are then settled.
        """
        while True:
            batch = [await pending.get()]
            while not pending.empty():
                batch.append(pending.get_nowait())
            try:
                await self._settle(batch, dead_letters)
            finally:
                for _ in batch:
                    IN_FLIGHT.dec()
                    pending.task_done()

    async def _settle(self, batch: list[Produced], dead_letters: AbstractChannel) -> None:
        unacked: Produced | None = None  # the last of a run of bridged messages, not yet acked
        for produced in batch:
            results = await self._taken(produced)
            try:
                for index, result in enumerate(results):
                    if isinstance(result, BaseException):
                        # Kafka did not take it: produced again here, before anything later is acked.
                        decided = classify(result)
                        if isinstance(decided, PermanentError):
                            raise decided
                        self._enter_hold(decided)
                        key, value = produced.records[index]
                        results[index] = await self._produce_until_taken(produced.topic, key, value)
            except PermanentError as exc:
                if unacked is not None:
                    await unacked.message.ack(multiple=True)
                    unacked = None
                await self._dead_letter(dead_letters, produced.queue_name, produced.message, str(exc))
                continue
            if self._holding_since is not None:
                self._leave_hold()
            for result in results:
                if isinstance(result, RecordMetadata):
                    RECORDS.labels(result.topic).inc()
            WEBHOOKS.labels(produced.queue_name, "bridged").inc()
            unacked = produced
        if unacked is not None:
            await unacked.message.ack(multiple=True)

    async def _taken(self, produced: Produced) -> list[RecordMetadata | BaseException]:
        """Kafka's answer for each record of ``produced``. Batches do not expire, so while Kafka is
        away this waits; past the request timeout the bridge says it holds (``/readyz``, gauge)."""
        answers = asyncio.gather(*produced.futures, return_exceptions=True)
        while True:
            try:
                return list(await asyncio.wait_for(asyncio.shield(answers), self._request_timeout_s))
            except TimeoutError:
                self._enter_hold(
                    TransientError(f"kafka has not acknowledged records for {self._request_timeout_s:.0f} s")
                )

    async def _dead_letter(
        self, channel: AbstractChannel, queue_name: str, message: AbstractIncomingMessage, reason: str
    ) -> None:
        """Keep the message, with why, on the queue's dead-letter queue; then ack the original."""
        reason = reason.replace("\n", " ")[:REASON_LIMIT]
        log.error(
            "bridge: dead-lettering a message of tenant %s from %s (%d bytes): %s",
            tenant_of(message), queue_name, len(message.body), reason,
        )  # fmt: skip
        await channel.default_exchange.publish(
            aio_pika.Message(
                message.body,
                headers={**(message.headers or {}), "x-wabridge-reason": reason},
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                timestamp=datetime.now(UTC),
            ),
            routing_key=queue_name + DEAD_LETTER_SUFFIX,
            mandatory=True,
        )
        await message.ack()
        WEBHOOKS.labels(queue_name, "dead_lettered").inc()


async def serve_bridge(settings: Settings) -> None:
    """Run the bridge with its /healthz, /readyz and /metrics; SIGTERM or SIGINT stops it cleanly."""
    bridge = Bridge(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, bridge.stop)
    app = web.Application()
    app.add_routes(health_routes({"bridge": bridge.readiness}))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, settings.bridge_host, settings.bridge_metrics_port).start()
    backlog = asyncio.create_task(Backlog(settings).run())
    try:
        await bridge.run()
    finally:
        backlog.cancel()
        await asyncio.gather(backlog, return_exceptions=True)
        await runner.cleanup()
