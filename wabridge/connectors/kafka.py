"""Kafka: topic creation with explicit partition counts (Tansu would auto-create with 4)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

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
