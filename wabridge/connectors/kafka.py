"""Kafka: topic creation with explicit partition counts (Tansu would auto-create with 4), the retry
decision for Kafka errors, and the end of a partition's log as both brokers can be trusted to say it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.protocol.fetch import FetchRequest

from wabridge.errors import ConfigurationError, PermanentError, TransientError
from wabridge.settings import Settings
from wabridge.streams.topics import stage_topic_names

log = logging.getLogger(__name__)

# CreateTopics error code for "already exists"; Tansu answers with it in the response body.
_TOPIC_ALREADY_EXISTS = TopicAlreadyExistsError.errno


# The record itself is refused: sending it again can never succeed. Everything else a producer
# raises (no leader, timeouts, a broker unreachable, authorization) is the cluster's state, which an
# outage's end or an operator fixes: retried. aiokafka's own ``retriable`` flag is not enough on its
# own: ``KafkaTimeoutError`` (no room in the buffer, no leader in time) says False, yet passes.
_RECORD_REFUSED: tuple[type[BaseException], ...] = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.InvalidMessageError,
    kafka_errors.InvalidTimestampError,
)


def classify(exc: BaseException) -> TransientError | PermanentError | None:
    """The retry decision for a Kafka producer failure (STYLE.md §5); None when not a Kafka error."""
    if isinstance(exc, _RECORD_REFUSED):
        return PermanentError(f"kafka refused the record: {type(exc).__name__}: {exc}", reason="record_refused")
    if isinstance(exc, kafka_errors.KafkaError):
        return TransientError(f"kafka unavailable: {type(exc).__name__}: {exc}", retry_after=1.0)
    return None


async def end_offsets(consumer: AIOKafkaConsumer, partitions: Collection[TopicPartition]) -> dict[TopicPartition, int]:
    """The end of each partition's log (the offset its next record gets), right on Kafka and Tansu.

    Tansu 0.6 (the development and test broker) answers ListOffsets(latest) with the base offset
    of the newest record *batch* plus one (``dynostore.rs``, ``list_offsets``): when that batch
    holds several records, the answer falls short of the log's end. A Faust worker taking over a
    changelog partition then stopped its recovery before the last records and served stale table
    state; a reader stopping at that "end" skipped them. A Fetch response's high watermark is
    the broker's own counter, right on both; each partition's end is the larger of the two answers.
    On Kafka they agree and this costs one empty fetch per broker.
    """
    listed: dict[TopicPartition, int] = dict(await consumer.end_offsets(list(partitions)))
    client = consumer._client
    by_leader: dict[int, dict[str, list[tuple[int, int, int]]]] = defaultdict(lambda: defaultdict(list))
    for tp in partitions:
        leader = client.cluster.leader_for_partition(tp)
        if leader is not None and leader >= 0:
            by_leader[leader][tp.topic].append((tp.partition, listed[tp], 1))
    for leader, topics in by_leader.items():
        # min_bytes 0: answered at once; at most one batch back, only the watermark counts. (Tansu
        # answers a fetch with max_wait 0 with no partitions at all, hence 10 ms.)
        response = await client.send(leader, FetchRequest(10, 0, 1, 0, list(topics.items())))
        for topic, answers in response.topics:
            for partition, error_code, highwater, *_ in answers:
                tp = TopicPartition(topic, partition)
                if error_code == 0 and tp in listed and highwater > listed[tp]:
                    listed[tp] = highwater
    return listed


def admin_client(settings: Settings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)


async def partition_counts(settings: Settings, topics: list[str]) -> dict[str, int]:
    admin = admin_client(settings)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return {d["topic"]: len(d["partitions"]) for d in described if d["error_code"] == 0}


async def ensure_topics(
    settings: Settings, topics: Iterable[str] | None = None, *, compacted: Iterable[str] = ()
) -> list[str]:
    """Create missing topics with ``kafka_partitions`` partitions; refuse a count mismatch.

    ``topics`` defaults to the stage topics; those in ``compacted`` (table changelogs) are created
    with ``cleanup.policy=compact``. Idempotent; returns the names it created.
    """
    wanted = list(dict.fromkeys(topics if topics is not None else stage_topic_names(settings)))
    compact = set(compacted)
    admin = admin_client(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        created = []
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        t,
                        settings.kafka_partitions,
                        settings.kafka_replication_factor,
                        topic_configs={"cleanup.policy": "compact"} if t in compact else {},
                    )
                    for t in missing
                ]
            )
            for topic, code, message in response.topic_errors:
                if code == 0:
                    created.append(topic)
                elif code != _TOPIC_ALREADY_EXISTS:
                    raise ConfigurationError(f"cannot create topic {topic}: {message} (error {code})")
    finally:
        await admin.close()
    counts = await partition_counts(settings, wanted)
    wrong = {t: n for t, n in counts.items() if n != settings.kafka_partitions}
    if wrong:
        raise ConfigurationError(
            f"topics with a partition count other than {settings.kafka_partitions} break "
            f"co-partitioning: {wrong}; recreate them or set WABRIDGE_KAFKA_PARTITIONS to match"
        )
    if created:
        log.info("created topics %s with %d partitions", created, settings.kafka_partitions)
    return created


async def delete_topics(settings: Settings, topics: list[str]) -> None:
    admin = admin_client(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [t for t in topics if t in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


async def delete_prefixed_topics(settings: Settings) -> None:
    """Every topic under this deployment's prefix, changelogs included (test clean-up)."""
    if not settings.kafka_topic_prefix:
        raise ConfigurationError("refusing to delete every topic of a deployment without a topic prefix")
    admin = admin_client(settings)
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(settings.kafka_topic_prefix)]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()
