"""Shared fixtures: every test gets its own topics, queues, buckets, schema and Redis keys.

The suite runs against the embedded stack that `make test` brings up (`wabridge dev up`). A test
never touches the shared names: `isolated_settings` gives each one unique prefixes, and the
`provisioned` fixture creates and afterwards removes what lives under them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from wabridge.connectors import kafka, postgres, rabbitmq, redis_client, s3
from wabridge.dev import services
from wabridge.settings import Settings


def _unique_settings(**overrides: object) -> Settings:
    tag = uuid.uuid4().hex[:10]
    values: dict[str, object] = {
        "kafka_topic_prefix": f"t{tag}.",
        "postgres_schema": f"t_{tag}",
        "redis_key_prefix": f"t{tag}:",
        "rabbitmq_queue_prefix": f"t{tag}.",
        "s3_bucket_webhooks": f"t{tag}-webhooks-inbound",
        "s3_bucket_media_inbound": f"t{tag}-media-inbound",
        "s3_bucket_media_outbound": f"t{tag}-media-outbound",
        "kafka_partitions": 4,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def stack_settings() -> Settings:
    """The shared embedded stack, as `wabridge dev up` configured it; fails fast when it is down."""
    settings = Settings()

    async def check() -> dict[str, bool]:
        return {
            "kafka": await services.kafka_healthy(settings),
            "s3": await services.s3_healthy(settings),
            "postgres": await services.postgres_healthy(settings),
            "redis": await services.redis_healthy(settings),
            "rabbitmq": await services.rabbitmq_healthy(settings),
        }

    health = asyncio.run(check())
    down = [name for name, ok in health.items() if not ok]
    if down:
        pytest.fail(f"the embedded stack is not up ({', '.join(down)}): run `make test` or `wabridge dev up`")
    return settings


@pytest.fixture
def isolated_settings(stack_settings: Settings) -> Iterator[Settings]:
    """Settings for this test alone: unique prefixes on every shared resource (nothing created yet)."""
    yield _unique_settings()


@pytest.fixture
async def provisioned(isolated_settings: Settings) -> AsyncIterator[Settings]:
    """This test's schema (migrated), topics, buckets and queues; all removed afterwards."""
    settings = isolated_settings
    await postgres.migrate(settings)
    await kafka.ensure_topics(settings)
    await s3.ensure_buckets(settings)
    await rabbitmq.ensure_topology(settings)
    try:
        yield settings
    finally:
        await teardown(settings)


async def teardown(settings: Settings) -> None:
    await postgres.drop_schema(settings)
    await kafka.delete_prefixed_topics(settings)
    await rabbitmq.delete_topology(settings)
    await empty_buckets(settings)
    client = redis_client.client(settings)
    try:
        keys = [key async for key in client.scan_iter(match=settings.redis_key("*"))]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def empty_buckets(settings: Settings) -> None:
    async with s3.client(settings) as client:
        for policy in s3.bucket_policies(settings):
            if not await client.bucket_exists(policy.name):
                continue
            # Listed in full before deleting, and again until nothing is left: deleting while a
            # paginated version listing (over 1,000 versions) is read skips some.
            while versions := [
                obj async for obj in client.list_objects(policy.name, recursive=True, include_version=True)
            ]:
                for obj in versions:
                    await client.remove_object(policy.name, obj.object_name, version_id=obj.version_id)
            await client.remove_bucket(policy.name)


pytest_plugins = ["tests.integration.edge_fixtures", "tests.services"]
