"""What waits, and what was set aside: the bridge's backlog gauges.

* ``wabridge_queue_messages{queue}``: messages ready in each webhook queue and in its dead-letter
  queue (``<queue>.dead-letter``), from a passive declaration. A growing webhook queue means the bridge
  does not keep up or Kafka does not take records; anything in a dead-letter queue waits for
  ``wabridge redrive --from dlq``.
* ``wabridge_error_events_records``: records kept on ``error-events`` (log end minus log start,
  over its partitions): permanent failures of the stages, for ``wabridge redrive --from
  error-events``. It grows by one per failure and shrinks only when retention deletes old ones;
  alerts look at its increase.

The bridge refreshes them every ``BACKLOG_INTERVAL_S``. A check that fails (RabbitMQ or Kafka away)
keeps the last values, counts in ``wabridge_backlog_check_failures_total`` and is tried again the
next round; the bridge's own work is not affected. Labels are the base queue names (a fixed set),
not the deployment's prefixed names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aio_pika.abc import AbstractRobustConnection
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import Counter, Gauge

from wabridge.connectors import kafka, rabbitmq
from wabridge.observability import ThrottledLog
from wabridge.settings import Settings
from wabridge.streams.topics import DEAD_LETTER_SUFFIX, ERROR_EVENTS, QUEUES

log = logging.getLogger(__name__)

BACKLOG_INTERVAL_S = 10.0

QUEUE_MESSAGES = Gauge(
    "wabridge_queue_messages", "Messages ready in a webhook queue or its dead-letter queue", ["queue"]
)
ERROR_EVENTS_RECORDS = Gauge("wabridge_error_events_records", "Records kept on error-events (failed stage records)")
CHECK_FAILURES = Counter(
    "wabridge_backlog_check_failures_total", "Backlog checks that could not reach their peer", ["peer"]
)


class Backlog:
    """Refreshes the backlog gauges until stopped; owns one RabbitMQ connection and one Kafka client."""

    def __init__(self, settings: Settings, interval_s: float = BACKLOG_INTERVAL_S) -> None:
        self._settings = settings
        self._interval_s = interval_s
        self._failures = ThrottledLog(log, period_s=60.0)
        for base in QUEUES:
            for label in (base, base + DEAD_LETTER_SUFFIX):
                QUEUE_MESSAGES.labels(label)
        for peer in ("rabbitmq", "kafka"):
            CHECK_FAILURES.labels(peer)

    async def run(self) -> None:
        """Refresh every interval until cancelled."""
        connection: AbstractRobustConnection | None = None
        consumer: AIOKafkaConsumer | None = None
        try:
            while True:
                try:
                    connection = connection or await rabbitmq.connect(self._settings)
                    await self._queues(connection)
                except Exception as exc:  # noqa: BLE001 - a gauge check: counted, logged, tried next round
                    CHECK_FAILURES.labels("rabbitmq").inc()
                    self._failures.log("queue depths not refreshed (kept the last values): %s", exc)
                try:
                    consumer = consumer or await self._start_consumer()
                    await self._error_events(consumer)
                except Exception as exc:  # noqa: BLE001 - a gauge check: counted, logged, tried next round
                    CHECK_FAILURES.labels("kafka").inc()
                    self._failures.log("error-events depth not refreshed (kept the last value): %s", exc)
                await asyncio.sleep(self._interval_s)
        finally:
            if consumer is not None:
                with contextlib.suppress(Exception):
                    await consumer.stop()
            if connection is not None:
                with contextlib.suppress(Exception):
                    await connection.close()

    async def _start_consumer(self) -> AIOKafkaConsumer:
        # Kept only once started: a client whose start failed never connects, so the next round
        # makes a new one.
        consumer = AIOKafkaConsumer(**kafka.connection(self._settings), enable_auto_commit=False)
        try:
            await consumer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise
        return consumer

    async def _queues(self, connection: AbstractRobustConnection) -> None:
        # A channel per round: a passive declaration of a missing queue closes its channel.
        async with connection.channel() as channel:
            for base in QUEUES:
                for label in (base, base + DEAD_LETTER_SUFFIX):
                    queue = await channel.declare_queue(self._settings.queue(label), passive=True)
                    QUEUE_MESSAGES.labels(label).set(queue.declaration_result.message_count or 0)

    async def _error_events(self, consumer: AIOKafkaConsumer) -> None:
        topic = self._settings.topic(ERROR_EVENTS)
        numbers = consumer.partitions_for_topic(topic)
        if not numbers:
            await consumer._client.force_metadata_update()
            numbers = consumer.partitions_for_topic(topic) or set()
        partitions = [TopicPartition(topic, number) for number in sorted(numbers)]
        if not partitions:
            return
        starts = await consumer.beginning_offsets(partitions)
        ends = await kafka.end_offsets(consumer, partitions)
        ERROR_EVENTS_RECORDS.set(sum(max(0, ends[tp] - starts[tp]) for tp in partitions))
