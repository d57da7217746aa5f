"""Kafka: how a client connects (one place: plaintext, TLS, SASL), topic creation with explicit
partition counts (Tansu would auto-create with 4), the retry decision for Kafka errors, and the end
of a partition's log as both brokers can be trusted to say it.
"""

from __future__ import annotations

import logging
import ssl
from collections import defaultdict
from collections.abc import Collection, Iterable
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.fetch import FetchRequest

from wabridge.errors import ConfigurationError, PermanentError, TransientError
from wabridge.settings import Settings
from wabridge.streams.topics import ERROR_EVENTS, stage_topic_names

log = logging.getLogger(__name__)

_SSL_PROTOCOLS = ("SSL", "SASL_SSL")
_SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")


def connection(settings: Settings) -> dict[str, Any]:
    """The options every aiokafka client the project makes connects with: bootstrap and security.

    Raises ``ConfigurationError`` for SASL without a username and password, or an unreadable
    certificate file. The password is never in the message.
    """
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap, "security_protocol": protocol}
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if protocol in _SASL_PROTOCOLS:
        username, password = _sasl_credentials(settings)
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": username,
            "sasl_plain_password": password,
        }
    return options


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for ``SSL`` and ``SASL_SSL`` (hostnames verified), else None."""
    if settings.kafka_security_protocol not in _SSL_PROTOCOLS:
        return None
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
            certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
            keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"kafka TLS files cannot be used: {exc}") from exc
    return context


def faust_credentials(settings: Settings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """The same connection options, as Faust's ``broker_credentials``."""
    protocol = settings.kafka_security_protocol
    if protocol in _SASL_PROTOCOLS:
        username, password = _sasl_credentials(settings)
        return faust.SASLCredentials(
            username=username,
            password=password,
            ssl_context=ssl_context(settings),
            mechanism=settings.kafka_sasl_mechanism,
        )
    context = ssl_context(settings)
    return faust.SSLCredentials(context) if context is not None else None


def _sasl_credentials(settings: Settings) -> tuple[str, str]:
    if not settings.kafka_sasl_username or settings.kafka_sasl_password is None:
        raise ConfigurationError(
            f"WABRIDGE_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} needs "
            "WABRIDGE_KAFKA_SASL_USERNAME and WABRIDGE_KAFKA_SASL_PASSWORD"
        )
    return settings.kafka_sasl_username, settings.kafka_sasl_password.get_secret_value()


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
    return AIOKafkaAdminClient(**connection(settings))


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
    configs = {t: {"cleanup.policy": "compact"} for t in compact}
    errors_topic = settings.topic(ERROR_EVENTS)
    configs[errors_topic] = {"retention.ms": str(error_events_retention_ms(settings))}
    admin = admin_client(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        created = []
        if errors_topic in wanted and errors_topic in existing:
            await _warn_if_short_retention(admin, settings, errors_topic)
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        t,
                        settings.kafka_partitions,
                        settings.kafka_replication_factor,
                        topic_configs=configs.get(t, {}),
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


def error_events_retention_ms(settings: Settings) -> int:
    return settings.error_events_retention_days * 24 * 3600 * 1000


async def topic_retention_ms(admin: AIOKafkaAdminClient, topic: str) -> int | None:
    """The topic's ``retention.ms`` as the broker reports it; None when it does not say."""
    described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    for response in described:
        for resource in response.resources:
            for entry in resource[4]:
                if entry[0] == "retention.ms" and entry[1] is not None:
                    return int(entry[1])
    return None


async def _warn_if_short_retention(admin: AIOKafkaAdminClient, settings: Settings, topic: str) -> None:
    """An ``error-events`` created before its retention was set keeps the broker's default (7 days):
    said, since this client cannot change it on every broker (Tansu has no AlterConfigs)."""
    try:
        retention = await topic_retention_ms(admin, topic)
    except kafka_errors.KafkaError as exc:
        log.warning("could not read the retention of %s: %s", topic, exc)
        return
    wanted = error_events_retention_ms(settings)
    if retention is not None and 0 <= retention < wanted:
        log.warning(
            "%s keeps records %.1f days, less than WABRIDGE_ERROR_EVENTS_RETENTION_DAYS=%d: failed records "
            "may expire before they can be redriven; raise its retention.ms to %d",
            topic, retention / 86_400_000, settings.error_events_retention_days, wanted,
        )  # fmt: skip


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
