"""The bridge's backlog gauges: what they read, and what they do when RabbitMQ or Kafka is away.

They count what waits in each queue and dead-letter queue and what sits on ``error-events``; a
check that cannot reach its peer is counted, keeps the last values and is tried again, and never
stops the loop (the bridge's own work runs beside it).
"""

from __future__ import annotations

import asyncio
import contextlib

import aio_pika
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

from tests.delivery.test_deliver_handler import counter
from tests.services import TcpProxy
from tests.simulators.conftest import eventually
from wabridge.connectors import kafka, rabbitmq
from wabridge.connectors.backlog import Backlog
from wabridge.settings import Settings
from wabridge.streams.topics import DEAD_LETTER_SUFFIX, ERROR_EVENTS, INBOUND_WHATSAPP_MESSAGES

DEAD = INBOUND_WHATSAPP_MESSAGES + DEAD_LETTER_SUFFIX


async def test_the_gauges_count_dead_letters_and_error_records(provisioned: Settings) -> None:
    connection = await rabbitmq.connect(provisioned)
    try:
        channel = await connection.channel()
        for n in range(3):
            await channel.default_exchange.publish(
                aio_pika.Message(body=b"poison %d" % n), routing_key=provisioned.queue(DEAD)
            )
    finally:
        await connection.close()
    producer = AIOKafkaProducer(**kafka.connection(provisioned))
    await producer.start()
    try:
        for n in range(2):
            await producer.send_and_wait(provisioned.topic(ERROR_EVENTS), b"failed record %d" % n, key=b"t:c")
    finally:
        await producer.stop()

    task = asyncio.create_task(Backlog(provisioned, interval_s=0.2).run())
    try:
        await eventually(lambda: counter("wabridge_queue_messages", queue=DEAD) == 3, 20.0)
        await eventually(lambda: counter("wabridge_error_events_records") == 2, 20.0)
        assert counter("wabridge_queue_messages", queue=INBOUND_WHATSAPP_MESSAGES) == 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_unreachable_peers_are_counted_and_read_again_once_back(
    provisioned: Settings, kafka_proxy: TcpProxy
) -> None:
    rabbit_proxy = TcpProxy(5672)
    await rabbit_proxy.start()
    settings = provisioned.model_copy(
        update={
            "rabbitmq_url": SecretStr(f"amqp://guest:guest@127.0.0.1:{rabbit_proxy.port}/"),
            "kafka_bootstrap": f"127.0.0.1:{kafka_proxy.port}",
            "kafka_request_timeout_ms": 1000,
        }
    )
    topic = settings.topic(ERROR_EVENTS)
    await kafka.ensure_topics(settings, [topic])
    producer = AIOKafkaProducer(**kafka.connection(settings))
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"a failed record", key=b"t:c")
    finally:
        await producer.stop()

    await rabbit_proxy.cut()
    await kafka_proxy.cut()
    rabbit_before = counter("wabridge_backlog_check_failures_total", peer="rabbitmq")
    kafka_before = counter("wabridge_backlog_check_failures_total", peer="kafka")
    task = asyncio.create_task(Backlog(settings, interval_s=0.1).run())
    try:
        failures = "wabridge_backlog_check_failures_total"
        await eventually(lambda: counter(failures, peer="rabbitmq") >= rabbit_before + 2, 20.0)
        await eventually(lambda: counter(failures, peer="kafka") >= kafka_before + 2, 60.0)
        assert not task.done()  # still checking, round after round
        # Both come back: the next rounds read them.
        await rabbit_proxy.start()
        await kafka_proxy.start()
        await eventually(lambda: counter("wabridge_error_events_records") == 1, 60.0)
        await eventually(lambda: counter("wabridge_queue_messages", queue=INBOUND_WHATSAPP_MESSAGES) == 0, 20.0)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await rabbit_proxy.cut()
