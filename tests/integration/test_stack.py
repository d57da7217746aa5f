"""The embedded stack: reachable components, topics, buckets, queues, migrations, `dev up`/`down`."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import aio_pika
import asyncpg
import orjson
import pytest
from miniopy_async.commonconfig import ENABLED

from tests.integration.edge_fixtures import drain
from wabridge.connectors import kafka, postgres, rabbitmq, s3
from wabridge.dev import services, stack
from wabridge.errors import ConfigurationError
from wabridge.settings import Settings
from wabridge.streams.topics import (
    DEAD_LETTER_SUFFIX,
    ERROR_EVENTS,
    INBOUND_WHATSAPP_MESSAGES,
    STAGE_TOPICS,
    stage_topic_names,
)


async def test_every_stack_component_answers(stack_settings: Settings) -> None:
    report = await stack.status(stack_settings)
    infrastructure = {name: report["components"][name] for name in ("kafka", "s3", "postgres", "redis", "rabbitmq")}
    assert all(c["healthy"] for c in infrastructure.values()), infrastructure
    assert "***" in report["components"]["rabbitmq"]["url"], "passwords must not be printed"


async def test_topics_are_created_with_the_configured_partition_count(isolated_settings: Settings) -> None:
    settings = isolated_settings.model_copy(update={"kafka_partitions": 6})
    topics = stage_topic_names(settings)
    try:
        created = await kafka.ensure_topics(settings)
        assert sorted(created) == sorted(topics)
        counts = await kafka.partition_counts(settings, topics)
        assert counts == dict.fromkeys(topics, 6)
        # error-events keeps failed records as long as the raw archive keeps webhooks (30 days), not
        # the broker's 7-day default: a failed message can be redriven for as long as it can be re-ingested.
        admin = kafka.admin_client(settings)
        await admin.start()
        try:
            retention = await kafka.topic_retention_ms(admin, settings.topic(ERROR_EVENTS))
        finally:
            await admin.close()
        assert retention == 30 * 86_400_000 >= settings.s3_webhooks_retention_days * 86_400_000
        # A second run finds them all and creates nothing.
        assert await kafka.ensure_topics(settings) == []
        # A deployment that asks for another count must hear about it, not silently lose co-partitioning.
        with pytest.raises(ConfigurationError, match="partition count"):
            await kafka.ensure_topics(settings.model_copy(update={"kafka_partitions": 8}))
    finally:
        await kafka.delete_topics(settings, topics)
    assert len(STAGE_TOPICS) == len(topics)


async def test_buckets_have_versioning_and_lifecycle_rules(provisioned: Settings) -> None:
    async with s3.client(provisioned) as client:
        webhooks = provisioned.s3_bucket_webhooks
        assert (await client.get_bucket_versioning(webhooks)).status == ENABLED
        [rule] = (await client.get_bucket_lifecycle(webhooks)).rules
        # No tier configured: expiry only, which a plain MinIO accepts; old versions expire too.
        assert rule.transition is None
        assert rule.expiration.days == 30
        assert rule.noncurrent_version_expiration.noncurrent_days == 30
        [media_in] = (await client.get_bucket_lifecycle(provisioned.s3_bucket_media_inbound)).rules
        assert media_in.expiration.days == 90
        [media_out] = (await client.get_bucket_lifecycle(provisioned.s3_bucket_media_outbound)).rules
        assert media_out.expiration.days == 30
    # Re-applying is harmless.
    assert await s3.ensure_buckets(provisioned) == []


async def test_retention_days_and_a_cold_tier_come_from_the_settings(provisioned: Settings) -> None:
    settings = provisioned.model_copy(
        update={"s3_webhooks_retention_days": 45, "s3_media_inbound_retention_days": 12, "s3_cold_tier": "GLACIER"}
    )
    await s3.ensure_buckets(settings)
    async with s3.client(settings) as client:
        [rule] = (await client.get_bucket_lifecycle(settings.s3_bucket_webhooks)).rules
        assert (rule.transition.storage_class, rule.transition.days) == ("GLACIER", 7)
        assert rule.expiration.days == 45
        [media_in] = (await client.get_bucket_lifecycle(settings.s3_bucket_media_inbound)).rules
        assert media_in.expiration.days == 12


async def test_migrations_apply_once_and_rerun_as_no_op(isolated_settings: Settings) -> None:
    try:
        first, second = await asyncio.gather(postgres.migrate(isolated_settings), postgres.migrate(isolated_settings))
        every = [m.version for m in postgres.available_migrations()]
        assert every[0] == "0001_initial" and len(every) >= 2
        assert sorted([first, second], key=len) == [[], every], "two concurrent runs apply each migration once"
        assert await postgres.migrate(isolated_settings) == []
        pool = await postgres.connect(isolated_settings, min_size=1, max_size=1)
        try:
            tables = {
                r["table_name"]
                for r in await pool.fetch(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
                    isolated_settings.postgres_schema,
                )
            }
            assert {"tenants", "tenant_credentials", "conversation_mappings", "message_tracking"} <= tables
            await pool.execute(
                "INSERT INTO conversation_mappings (tenant_id, customer_id, wa_id, conversation_id)"
                " VALUES ('acme', '16505551234', '16505551234', gen_random_uuid())"
            )
            with pytest.raises(asyncpg.UniqueViolationError):
                await pool.execute(
                    "INSERT INTO conversation_mappings (tenant_id, customer_id, wa_id, conversation_id)"
                    " VALUES ('acme', '16505551234', '16505551234', gen_random_uuid())"
                )
        finally:
            await pool.close()
    finally:
        await postgres.drop_schema(isolated_settings)


async def test_poison_message_is_dead_lettered_after_the_delivery_limit(provisioned: Settings) -> None:
    queue_name = provisioned.queue(INBOUND_WHATSAPP_MESSAGES)
    connection = await rabbitmq.connect(provisioned)
    try:
        channel = await connection.channel()
        await channel.default_exchange.publish(
            aio_pika.Message(b"poison", delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=queue_name
        )
        queue = await channel.get_queue(queue_name, ensure=False)
        deliveries = 0
        try:
            async with queue.iterator(timeout=2) as messages:
                async for message in messages:
                    deliveries += 1
                    await message.nack(requeue=True)
        except TimeoutError:
            pass
        [dead_message] = await drain(provisioned, queue_name + DEAD_LETTER_SUFFIX)
        assert dead_message.body == b"poison", "a message returned past the delivery limit must be dead-lettered"
        assert deliveries == provisioned.rabbitmq_delivery_limit + 1
    finally:
        await connection.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wabridge(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wabridge", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )


@pytest.mark.slow
def test_dev_up_twice_is_harmless_and_down_stops_only_its_own(tmp_path: Path, stack_settings: Settings) -> None:
    """A second stack on other ports: `dev up` starts its broker and S3, a second `up` changes nothing,
    `status --json` reports it healthy, and `down` stops those two while PostgreSQL, Redis and RabbitMQ
    (which it found running) keep running."""
    tag = os.urandom(4).hex()
    kafka_port, s3_port = _free_port(), _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WABRIDGE_")},
        "WABRIDGE_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_port}",
        "WABRIDGE_S3_ENDPOINT": f"http://127.0.0.1:{s3_port}",
        "WABRIDGE_POSTGRES_SCHEMA": f"t_{tag}",
        "WABRIDGE_RABBITMQ_QUEUE_PREFIX": f"t{tag}.",
        "WABRIDGE_REDIS_KEY_PREFIX": f"t{tag}:",
    }
    own = Settings(
        kafka_bootstrap=env["WABRIDGE_KAFKA_BOOTSTRAP"],
        s3_endpoint=env["WABRIDGE_S3_ENDPOINT"],
        postgres_schema=env["WABRIDGE_POSTGRES_SCHEMA"],
        rabbitmq_queue_prefix=env["WABRIDGE_RABBITMQ_QUEUE_PREFIX"],
        state_dir=tmp_path / ".wabridge",
    )
    try:
        first = _wabridge(["dev", "up"], tmp_path, env)
        assert first.returncode == 0, first.stderr
        assert "kafka      started" in first.stdout and "s3         started" in first.stdout
        assert "postgres   running" in first.stdout
        pids = orjson.loads((tmp_path / ".wabridge" / "stack.json").read_bytes())["daemons"]

        second = _wabridge(["dev", "up"], tmp_path, env)
        assert second.returncode == 0, second.stderr
        assert "started" not in second.stdout
        assert orjson.loads((tmp_path / ".wabridge" / "stack.json").read_bytes())["daemons"] == pids

        status = _wabridge(["dev", "status", "--json"], tmp_path, env)
        report = orjson.loads(status.stdout)
        for name in ("kafka", "s3", "postgres", "redis", "rabbitmq"):
            assert report["components"][name]["healthy"], name
        assert report["components"]["kafka"]["url"].endswith(str(kafka_port))
        assert {"tenant_id", "phone_number_id", "app_secret", "genesys_webhook_secret"} <= set(report["demo_tenant"])

        down = _wabridge(["dev", "down"], tmp_path, env)
        assert down.returncode == 0, down.stderr
        assert sorted(down.stdout.removeprefix("stopped: ").strip().split(", ")) == ["kafka", "s3"]
        assert not any(services.pid_alive(pid) for pid in pids.values())
        # Scripts can tell: --json still says which component is down, and the exit status is 1.
        after = _wabridge(["dev", "status", "--json"], tmp_path, env)
        assert after.returncode == 1 and orjson.loads(after.stdout)["components"]["kafka"]["healthy"] is False
        assert asyncio.run(services.postgres_healthy(stack_settings))
        assert asyncio.run(services.redis_healthy(stack_settings))
        assert asyncio.run(services.rabbitmq_healthy(stack_settings))
    finally:
        stack.down(own)
        asyncio.run(postgres.drop_schema(own))
        asyncio.run(rabbitmq.delete_topology(own))
