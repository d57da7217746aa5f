"""``wabridge bridge``: the RabbitMQ -> Kafka connector.

Consumes the webhook queues in delivery order, splits each webhook into one record per message,
status and error, keys each ``tenant_id:customer_id`` and produces it to the first stage topic.
A RabbitMQ message is acked only after Kafka has acknowledged every record made from it
(acks=all), so a crash at any point leaves the webhook in RabbitMQ to be delivered again.
Records may then reach Kafka twice; the normalize stage dedupes them on wamid (and on
wamid + status for statuses), so nothing reaches an agent twice.

Order: the queues are quorum queues with a single active consumer, and this connector produces
records in the order it receives the webhooks; aiokafka keeps one batch in flight per partition,
so a customer's records land on their partition in arrival order.

Acks: each queue is consumed on its own channel, and the messages whose records Kafka has taken
are acked in runs, one ``basic.ack`` (``multiple``) per run rather than one per message.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass

import aio_pika
import orjson
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import RecordMetadata
from prometheus_client import Counter, Gauge

from wabridge.connectors import rabbitmq
from wabridge.observability import health_routes
from wabridge.schemas.meta import WebhookShapeError, parse_webhook, split_webhook
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

GENESYS_RECORD_VERSION = 1


class UnbridgeableMessage(Exception):
    """The queue message cannot become records; it goes to the dead-letter queue with the reason."""


def meta_records(message: AbstractIncomingMessage) -> list[tuple[str, bytes]]:
    """``(key, value)`` per event of one Meta webhook, in the order Meta listed them."""
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
    records: list[tuple[str, bytes]] = []
    # Usually one tenant; a POST naming numbers of several tenants is split once per tenant.
    for tenant_id in dict.fromkeys(tenants.values()):
        events = split_webhook(payload, tenant_id=tenant_id, webhook_id=webhook_id, received_at=received_at)
        records += [(e.key, e.to_bytes()) for e in events if tenants.get(e.phone_number_id) == tenant_id]
    return records


def genesys_records(message: AbstractIncomingMessage) -> list[tuple[str, bytes]]:
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
    return [(f"{tenant_id}:{customer_id}", orjson.dumps(record))]


Splitter = Callable[[AbstractIncomingMessage], list[tuple[str, bytes]]]


@dataclass(frozen=True, slots=True)
class Produced:
    """A queue message whose records are on their way to Kafka."""

    message: AbstractIncomingMessage
    futures: list[asyncio.Future[RecordMetadata]]
    queue_name: str


class Bridge:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=settings.kafka_idempotent,
            # Faust's producer partitions with this same murmur2 partitioner, so a key lands on
            # the same partition whichever process produced it.
            partitioner=DefaultPartitioner(),
            linger_ms=2,
            max_batch_size=256 * 1024,
            request_timeout_ms=30_000,
        )
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Bridge until ``stop()``; then finish in-flight work and return it acked or requeued."""
        await self._producer.start()
        self._connection = await rabbitmq.connect(self._settings)
        try:
            setup = await self._connection.channel()
            await rabbitmq.declare_topology(setup, self._settings)
            await setup.close()
            sources = [
                (INBOUND_WHATSAPP_MESSAGES, WA_INBOUND, meta_records),
                (GENESYS_OUTBOUND_EVENTS, GENESYS_OUTBOUND, genesys_records),
            ]
            bridging = [asyncio.create_task(self._bridge_queue(*source)) for source in sources]
            await self._stopping.wait()
            for task in bridging:
                task.cancel()
            await asyncio.gather(*bridging, return_exceptions=True)
        finally:
            await self._producer.stop()
            await self._connection.close()

    def stop(self) -> None:
        self._stopping.set()

    async def connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    async def _bridge_queue(self, queue_name: str, topic_name: str, split: Splitter) -> None:
        """Consume one queue on its own channel, so that its delivery tags follow its delivery order."""
        assert self._connection is not None
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=self._settings.rabbitmq_prefetch)
        queue = await channel.get_queue(self._settings.queue(queue_name))
        pending: asyncio.Queue[Produced] = asyncio.Queue(maxsize=self._settings.rabbitmq_prefetch)
        acker = asyncio.create_task(self._ack_in_order(pending))
        try:
            await self._consume(queue, topic_name, split, pending)
        finally:
            # Stopping: what was produced is settled (acked or requeued) before the channel goes.
            await pending.join()
            acker.cancel()
            await asyncio.gather(acker, return_exceptions=True)
            await channel.close()

    async def _consume(
        self, queue: AbstractQueue, topic_name: str, split: Splitter, pending: asyncio.Queue[Produced]
    ) -> None:
        topic = self._settings.topic(topic_name)
        async with queue.iterator() as messages:
            async for message in messages:
                try:
                    records = split(message)
                except UnbridgeableMessage as exc:
                    await self._dead_letter(queue.name, message, str(exc))
                    continue
                futures = [await self._producer.send(topic, value, key=key.encode()) for key, value in records]
                IN_FLIGHT.inc()
                await pending.put(Produced(message, futures, queue.name))

    async def _ack_in_order(self, pending: asyncio.Queue[Produced]) -> None:
        """Ack queue messages once Kafka has every record of them, in the order they were sent.

        Whatever is waiting is settled as one batch: each run of bridged messages is acked with a
        single ``basic.ack`` (``multiple``) up to its last message, and a message Kafka refused is
        returned on its own. The channel carries this one queue, so an ack up to a delivery tag
        covers exactly the messages before it in this queue, all of which are then settled.
        """
        while True:
            batch = [await pending.get()]
            while not pending.empty():
                batch.append(pending.get_nowait())
            try:
                await self._settle(batch)
            finally:
                for _ in batch:
                    IN_FLIGHT.dec()
                    pending.task_done()

    async def _settle(self, batch: list[Produced]) -> None:
        unacked: Produced | None = None  # the last of a run of bridged messages, not yet acked
        for produced in batch:
            results = await asyncio.gather(*produced.futures, return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            if failures:
                if unacked is not None:
                    await unacked.message.ack(multiple=True)
                    unacked = None
                # Not acked: RabbitMQ delivers it again; the records that did land are deduped downstream.
                log.error(
                    "kafka refused records of a webhook from %s, returning it: %r", produced.queue_name, failures[0]
                )
                WEBHOOKS.labels(produced.queue_name, "requeued").inc()
                await produced.message.nack(requeue=True)
                continue
            for result in results:
                RECORDS.labels(result.topic).inc()
            WEBHOOKS.labels(produced.queue_name, "bridged").inc()
            unacked = produced
        if unacked is not None:
            await unacked.message.ack(multiple=True)

    async def _dead_letter(self, queue_name: str, message: AbstractIncomingMessage, reason: str) -> None:
        """Keep the message, with why, on the queue's dead-letter queue; then ack the original."""
        assert self._connection is not None
        log.error("dead-lettering a message from %s: %s", queue_name, reason)
        channel = await self._connection.channel(publisher_confirms=True)
        try:
            await channel.default_exchange.publish(
                aio_pika.Message(
                    message.body,
                    headers={**(message.headers or {}), "x-wabridge-reason": reason},
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=queue_name + DEAD_LETTER_SUFFIX,
                mandatory=True,
            )
        finally:
            await channel.close()
        await message.ack()
        WEBHOOKS.labels(queue_name, "dead_lettered").inc()


async def serve_bridge(settings: Settings) -> None:
    """Run the bridge with its /healthz, /readyz and /metrics; SIGTERM or SIGINT stops it cleanly."""
    bridge = Bridge(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, bridge.stop)
    app = web.Application()
    app.add_routes(health_routes({"rabbitmq": bridge.connected}))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, settings.bridge_host, settings.bridge_metrics_port).start()
    try:
        await bridge.run()
    finally:
        await runner.cleanup()
