"""Fixtures for the edge: a tenant in this test's schema, and the webhook edge on a free port."""

from __future__ import annotations

import random
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aio_pika
import aiohttp
import orjson
import pytest
from aiohttp import web
from pydantic import SecretStr

from wabridge.connectors import archive, kafka, postgres, rabbitmq, s3
from wabridge.connectors.connection_guard import ConnectionGuard, GuardedSite
from wabridge.connectors.webhook import EdgeDeps, build_edge, build_ops
from wabridge.settings import Settings
from wabridge.simulators.customer import InboundSpec, build_message, build_webhook, encode_webhook, sign_webhook
from wabridge.tenants import PhoneNumber, SecretBox, Tenant, TenantConfig, TenantSecrets, TenantStore
from wabridge.tenants.crypto import generate_key

PHONE_NUMBER_ID = "106540352242922"
DISPLAY_NUMBER = "15550783881"
APP_SECRET = "fake-app-secret-for-tests"
GENESYS_WEBHOOK_SECRET = "fake-genesys-webhook-secret"
INTEGRATION_ID = "5e5a1c43-0000-4000-8000-000000000abc"


# Below Linux's ephemeral range (32768-60999): a port asked of the kernel (bind to 0) comes from
# that range, and between choosing it and a subprocess binding it, any outgoing connection may
# take it ("address already in use", seen once in a full run). Ports here are never handed out so.
_PORTS = random.Random()
# Ports already handed out in this run: two settings of one test (a webhook port and its
# operations port, say) must never get the same one, even before either is bound.
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on now, outside the ephemeral range, not handed out before."""
    for _ in range(200):
        port = _PORTS.randrange(20000, 32768)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free port found in 20000-32767")


def make_tenant(tenant_id: str = "acme", phone_number_id: str = PHONE_NUMBER_ID, **config: object) -> Tenant:
    return Tenant(
        id=tenant_id,
        name=f"{tenant_id} test business",
        phone_numbers=(PhoneNumber(phone_number_id=phone_number_id, display_phone_number=DISPLAY_NUMBER),),
        config=TenantConfig(genesys_integration_id=INTEGRATION_ID if tenant_id == "acme" else "", **config),  # type: ignore[arg-type]
        secrets=TenantSecrets(
            meta_app_secret=SecretStr(APP_SECRET if tenant_id == "acme" else f"{tenant_id}-secret"),
            meta_verify_token=SecretStr(f"{tenant_id}-verify-token"),
            meta_access_token=SecretStr("fake-access-token"),
            genesys_client_secret=SecretStr("fake-client-secret"),
            genesys_webhook_secret=SecretStr(GENESYS_WEBHOOK_SECRET),
        ),
    )


async def save_tenants(settings: Settings, *tenants: Tenant) -> None:
    pool = await postgres.connect(settings, min_size=1, max_size=1)
    try:
        store = TenantStore(pool, SecretBox.from_settings(settings))
        for tenant in tenants:
            await store.upsert(tenant)
    finally:
        await pool.close()


def webhook_body(*specs: InboundSpec, phone_number_id: str = PHONE_NUMBER_ID) -> bytes:
    messages = [build_message(spec) for spec in specs]
    payload = build_webhook(
        waba_id="102290129340398",
        display_phone_number=DISPLAY_NUMBER,
        phone_number_id=phone_number_id,
        messages=messages,
    )
    return encode_webhook(payload)


@dataclass
class RunningEdge:
    url: str
    settings: Settings
    session: aiohttp.ClientSession
    ops_url: str = ""  # /healthz, /readyz, /metrics
    deps: EdgeDeps | None = None

    async def queued(self, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """Every message waiting on this test's ``queue`` (taken off it)."""
        return await drain(self.settings, self.settings.queue(queue))


async def drain(settings: Settings, queue_name: str, idle_s: float = 1.0) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Consume (and ack) everything on a queue until it has been idle ``idle_s`` seconds.

    A consumer, not basic.get: quorum queues with a single active consumer refuse basic.get.
    """

    connection = await rabbitmq.connect(settings)
    taken: list[aio_pika.abc.AbstractIncomingMessage] = []
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name, ensure=False)
        try:
            async with queue.iterator(timeout=idle_s) as messages:
                async for message in messages:
                    await message.ack()
                    taken.append(message)
        except TimeoutError:
            pass
        return taken
    finally:
        await connection.close()


async def serve_edge(settings: Settings) -> AsyncIterator[RunningEdge]:
    app, deps = await build_edge(settings)
    runner = web.AppRunner(app, keepalive_timeout=settings.webhook_keepalive_s)
    ops = web.AppRunner(build_ops(deps))
    await runner.setup()
    await ops.setup()
    port, ops_port = free_port(), free_port()
    await GuardedSite(runner, "127.0.0.1", port, ConnectionGuard(settings)).start()
    await web.TCPSite(ops, "127.0.0.1", ops_port).start()
    try:
        async with aiohttp.ClientSession() as session:
            yield RunningEdge(f"http://127.0.0.1:{port}", settings, session, f"http://127.0.0.1:{ops_port}", deps)
    finally:
        await ops.cleanup()
        await runner.cleanup()


@pytest.fixture
def edge_settings(provisioned: Settings) -> Settings:
    return provisioned.model_copy(update={"secrets_key": SecretStr(generate_key())})


@pytest.fixture
async def edge(edge_settings: Settings) -> AsyncIterator[RunningEdge]:
    await save_tenants(edge_settings, make_tenant())
    async for running in serve_edge(edge_settings):
        yield running


def json_of(message: aio_pika.abc.AbstractIncomingMessage) -> dict[str, object]:
    return orjson.loads(message.body)  # type: ignore[no-any-return]


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a subprocess exactly these settings."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("WABRIDGE_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        env[f"WABRIDGE_{name.upper()}"] = str(raw).lower() if isinstance(raw, bool) else str(raw)
    return env


async def read_topic(settings: Settings, topic_name: str, expected: int, timeout_s: float = 60.0) -> list[object]:
    """Every record on a topic (all partitions, from the beginning), once ``expected`` have arrived."""
    import asyncio
    import time

    from aiokafka import AIOKafkaConsumer, TopicPartition

    topic = settings.topic(topic_name)
    consumer = AIOKafkaConsumer(**kafka.connection(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.kafka_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[object] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for rs in batch.values():
                records.extend(rs)
            if len(records) >= expected:
                # Anything more that is already there counts too (duplicates).
                await asyncio.sleep(0.5)
                for rs in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(rs)
                break
        return records
    finally:
        await consumer.stop()


async def post_meta(edge: RunningEdge, body: bytes, secret: str | None = APP_SECRET, **headers: str) -> int:
    all_headers = {"Content-Type": "application/json", "User-Agent": "facebookexternalua", **headers}
    if secret is not None:
        all_headers["X-Hub-Signature-256"] = sign_webhook(secret, body)
    async with edge.session.post(edge.url + "/webhook/meta", data=body, headers=all_headers) as response:
        await response.read()
        return response.status


async def archived(settings: Settings, prefix: str = "") -> dict[str, bytes]:
    """Every archived webhook under ``prefix`` by its address: batch objects read through their
    index (``connectors.archive``), anything else (quarantine) as the object it is."""
    async with s3.client(settings) as client:
        objects = {}
        async for obj in client.list_objects(settings.s3_bucket_webhooks, prefix=prefix, recursive=True):
            response = await client.get_object(settings.s3_bucket_webhooks, obj.object_name)
            data = await response.read()
            response.release()
            if obj.object_name.endswith(archive.SUFFIX):
                objects.update((w.key, w.document) for w in archive.read_batch(obj.object_name, data))
            else:
                objects[obj.object_name] = data
        return objects
