"""``wabridge replay``: rewind the worker group's committed offsets on chosen stage topics.

The workers then process those records again when they start. Every effect is idempotent
(dedupe tables, PostgreSQL as the arbiter of mappings, forward-only tracking), so a replay redoes
nothing that was done and re-delivers nothing that was delivered.

It refuses while workers of the group run (they announce themselves in Redis, see
``streams.presence``): a running worker would overwrite the rewound offsets with its next commit.
It commits as a member of the group (see ``rewind`` for why).
Offsets follow Kafka's meaning: the committed offset is the next record the group reads.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import click
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from wabridge.connectors import kafka
from wabridge.errors import ConfigurationError, WabridgeError
from wabridge.observability import configure_logging
from wabridge.settings import Settings
from wabridge.streams import presence
from wabridge.streams.topics import STAGE_TOPICS, WORKER_GROUP

log = logging.getLogger(__name__)


class _FaustCompatibleAssignor(RoundRobinPartitionAssignor):  # type: ignore[misc]  # aiokafka ships no types
    """Joins the workers' group under Faust's protocol name ("faust", version 4).

    A broker refuses a join whose protocol no member shares (InconsistentGroupProtocol), and Tansu
    counts departed Faust members until the next rebalance. The metadata is a valid, empty Faust
    ``ClientMetadata``, so that a live Faust leader could read it; but a live group is refused
    before any commit (the assignment then misses partitions).
    """

    name = "faust"
    version = 4

    @classmethod
    def metadata(cls, topics: Any) -> ConsumerProtocolMemberMetadata:
        user_data = orjson.dumps(
            {
                "assignment": {"actives": {}, "standbys": {}},
                "url": "replay://wabridge",
                "changelog_distribution": {},
                "external_topic_distribution": {},
                "topic_groups": {},
                "__faust": {"ns": "@ClientMetadata"},
            }
        )
        return ConsumerProtocolMemberMetadata(cls.version, list(topics), user_data)


class GroupActiveError(WabridgeError):
    """Workers of the group are running; stop them before rewinding."""


@dataclass(frozen=True, slots=True)
class Moved:
    topic: str
    partition: int
    before: int | None  # None: the group had no committed offset there
    after: int


async def group_members(settings: Settings, group: str) -> list[str]:
    """Member ids of ``group`` (an empty or unknown group has none)."""
    admin = AIOKafkaAdminClient(**kafka.connection(settings))
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    members: list[str] = []
    for response in described:
        for entry in response.groups:
            # (error_code, group_id, state, protocol_type, protocol, members[, authorized_operations])
            state, group_members_ = entry[2], entry[5]
            if state not in ("", "Empty", "Dead"):
                members.extend(str(member[0]) for member in group_members_)
    return members


async def rewind(
    settings: Settings,
    topics: list[str],
    *,
    partitions: list[int] | None = None,
    to_earliest: bool = False,
    to_offset: int | None = None,
    to_time: datetime | None = None,
    group: str | None = None,
    join_timeout_s: float = 180.0,
) -> list[Moved]:
    """Commit the chosen position for each partition of ``topics`` (stage names) for the group."""
    if sum((to_earliest, to_offset is not None, to_time is not None)) != 1:
        raise ConfigurationError("choose exactly one of to_earliest, to_offset, to_time")
    group_id = group or settings.topic(WORKER_GROUP)
    live = await presence.live_workers(settings, group_id)
    if live:
        running = ", ".join(f"{url} ({where})" for url, where in sorted(live.items()))
        raise GroupActiveError(f"workers of group {group_id} are running: {running}; stop them first")
    members = await group_members(settings, group_id)
    chosen = partitions if partitions is not None else list(range(settings.kafka_partitions))
    tps = [TopicPartition(settings.topic(topic), p) for topic in topics for p in chosen]
    # Commit as a member of the group: Tansu keeps stopped members in the group (DescribeGroups
    # still lists them, and it refuses commits from outside a generation) until someone joins,
    # and the join waits for them to time out first. On Apache Kafka the group is simply empty.
    consumer = AIOKafkaConsumer(
        *{tp.topic for tp in tps},
        **kafka.connection(settings),
        group_id=group_id,
        enable_auto_commit=False,
        session_timeout_ms=int(settings.kafka_session_timeout_s * 1000),
        heartbeat_interval_ms=int(settings.kafka_heartbeat_interval_s * 1000),
        rebalance_timeout_ms=int(settings.kafka_rebalance_timeout_s * 1000),
        partition_assignment_strategy=(_FaustCompatibleAssignor,),
    )
    if members:
        log.info("group %s still lists %d stopped member(s); joining once they time out", group_id, len(members))
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await asyncio.wait_for(consumer.start(), timeout=join_timeout_s)
    except (KafkaError, TimeoutError) as exc:
        await consumer.stop()
        raise GroupActiveError(
            f"could not join group {group_id} within {join_timeout_s:.0f} s ({type(exc).__name__}: {exc}); "
            "is a worker of it running without Redis presence, or is the broker down?"
        ) from exc
    log.info("joined group %s in %.1f s", group_id, loop.time() - started)
    try:
        assigned = consumer.assignment()
        if not set(tps) <= assigned:
            raise GroupActiveError(
                f"group {group_id} has other running members ({len(members)} listed); stop the workers first"
            )
        earliest = await consumer.beginning_offsets(tps)
        latest = await kafka.end_offsets(consumer, tps)
        if to_earliest:
            target = dict(earliest)
        elif to_offset is not None:
            # Clamped into what the log still holds: beyond it the group would skip or stall.
            target = {tp: min(max(to_offset, earliest[tp]), latest[tp]) for tp in tps}
        else:
            assert to_time is not None
            found = await consumer.offsets_for_times({tp: int(to_time.timestamp() * 1000) for tp in tps})
            # No record at or after that time: the end of the log (nothing to replay there).
            target = {tp: found[tp].offset if found.get(tp) else latest[tp] for tp in tps}
        before = {}
        for tp in tps:
            committed = await consumer.committed(tp)
            before[tp] = committed if committed is not None and committed >= 0 else None
        await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in target.items()})
    finally:
        await consumer.stop()
    return [Moved(tp.topic, tp.partition, before[tp], target[tp]) for tp in tps]


@click.command("replay")
@click.option(
    "--topic",
    "topics",
    multiple=True,
    required=True,
    type=click.Choice(STAGE_TOPICS),
    help="Stage topic to rewind (repeatable).",
)
@click.option("--partition", "partitions", multiple=True, type=click.IntRange(min=0), help="Only these (repeatable).")
@click.option("--to-earliest", is_flag=True, help="Rewind to the oldest record the broker holds.")
@click.option("--to-offset", type=click.IntRange(min=0), help="Rewind to this offset (the next record read).")
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=1),
    default=180.0,
    show_default=True,
    help="Seconds to wait for the broker to let go of stopped workers.",
)
@click.option("--to-time", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]), help="ISO time.")
def replay(
    topics: tuple[str, ...],
    partitions: tuple[int, ...],
    to_earliest: bool,
    to_offset: int | None,
    to_time: datetime | None,
    wait_s: float,
) -> None:
    """Rewind the workers' committed offsets; start the workers afterwards to reprocess."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format, "replay")
    if sum((to_earliest, to_offset is not None, to_time is not None)) != 1:
        raise click.UsageError("give exactly one of --to-earliest, --to-offset, --to-time")
    try:
        moved = asyncio.run(
            rewind(
                settings,
                list(topics),
                partitions=list(partitions) or None,
                to_earliest=to_earliest,
                to_offset=to_offset,
                to_time=to_time,
                join_timeout_s=wait_s,
            )
        )
    except GroupActiveError as exc:
        raise click.ClickException(str(exc)) from exc
    for m in moved:
        before = "none" if m.before is None else str(m.before)
        click.echo(f"{m.topic}[{m.partition}]: {before} -> {m.after}")
