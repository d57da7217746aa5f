"""Workers of the real ``wabridge worker`` command against the embedded stack, per test.

Every test gets ``provisioned`` settings (own topics, group, schema, Redis prefix) with short
group timeouts so joins and rebalances on Tansu take seconds, and its workers are killed and its
changelog topics deleted afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from tests.integration.edge_fixtures import DISPLAY_NUMBER, PHONE_NUMBER_ID, free_port, settings_env
from wabridge.connectors import kafka, redis_client
from wabridge.schemas.meta import split_webhook
from wabridge.settings import Settings
from wabridge.simulators.customer import InboundSpec, build_message, build_webhook
from wabridge.streams import internal_auth
from wabridge.streams.app import changelog_topic_names
from wabridge.streams.topics import WA_INBOUND, stage_topic_names
from wabridge.streams.worker import build_worker

TENANT = "acme"
WABA_ID = "102290129340398"


@dataclass
class WorkerProcess:
    settings: Settings
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.worker_port}"

    def start(self) -> WorkerProcess:
        assert self.proc is None or self.proc.poll() is not None
        log = self.log.with_suffix(f".{len(self.logs)}.log")
        self.logs.append(log)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "wabridge", "worker"],
                env=settings_env(self.settings),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM: a graceful stop (the group rebalances, offsets are committed)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def tail(self, lines: int = 40) -> str:
        return "\n".join("\n".join(p.read_text(errors="replace").splitlines()[-lines:]) for p in self.logs)


@pytest.fixture
def state_settings(provisioned: Settings, tmp_path: Path) -> Settings:
    return provisioned.model_copy(
        update={
            "kafka_idempotent": False,
            # Tansu holds a JoinGroup a while before answering; short timeouts keep joins and
            # rebalances to seconds (the session timeout stays above 3 heartbeats).
            "kafka_session_timeout_s": 6.0,
            "kafka_heartbeat_interval_s": 0.5,
            "kafka_rebalance_timeout_s": 5.0,
            "kafka_commit_interval_s": 0.5,
            "worker_port": free_port(),
            "state_dir": tmp_path / "state",
            "log_level": "INFO",
        }
    )


@pytest.fixture
def workers(state_settings: Settings, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.kill()
    if os.environ.get("WABRIDGE_TEST_SHOW_LOGS"):
        for worker in started:
            print(worker.tail(200))


def spawn(workers: list[WorkerProcess], settings: Settings) -> WorkerProcess:
    worker = WorkerProcess(settings, settings.state_dir.parent / f"worker-{settings.worker_port}").start()
    workers.append(worker)
    return worker


async def spawn_ready(
    workers: list[WorkerProcess], settings: Settings, http: aiohttp.ClientSession, timeout_s: float = 60
) -> WorkerProcess:
    """A worker started and owning its partitions (its log printed if it does not get there)."""
    from tests.streams.support import wait_until

    worker = spawn(workers, settings)
    try:
        await wait_until(lambda: owns_partitions(http, worker, 1), timeout_s, "the worker to own its partitions")
    except TimeoutError:
        print(worker.tail())
        raise
    return worker


def all_topic_names(settings: Settings) -> list[str]:
    return [*stage_topic_names(settings), *changelog_topic_names(build_worker(settings))]


@pytest.fixture
async def clean_changelogs(state_settings: Settings) -> AsyncIterator[None]:
    yield
    await kafka.delete_topics(state_settings, changelog_topic_names(build_worker(state_settings)))


@pytest.fixture
async def producer(state_settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    # aiokafka's default partitioner is murmur2 like Faust's, so keys land where the workers expect.
    producer = AIOKafkaProducer(**kafka.connection(state_settings), enable_idempotence=False, acks="all")
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture
async def pg(state_settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(
        state_settings.postgres_dsn.get_secret_value(), server_settings={"search_path": state_settings.postgres_schema}
    )
    yield conn
    await conn.close()


@pytest.fixture
async def redis(state_settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = redis_client.client(state_settings)
    yield client
    await client.aclose()


@pytest.fixture
async def http(stack_settings: Settings) -> AsyncIterator[aiohttp.ClientSession]:
    """A client of the workers' web servers, as an operator holding the deployment token."""
    headers = internal_auth.authorization(stack_settings)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10), headers=headers) as session:
        yield session


def inbound_records(*specs: InboundSpec, webhook_id: str | None = None) -> list[tuple[str, bytes]]:
    """The bridge's records (key, WebhookEvent bytes) for one webhook POST carrying ``specs``."""
    payload = build_webhook(
        waba_id=WABA_ID,
        display_phone_number=DISPLAY_NUMBER,
        phone_number_id=PHONE_NUMBER_ID,
        messages=[build_message(spec) for spec in specs],
    )
    events = split_webhook(
        payload, tenant_id=TENANT, webhook_id=webhook_id or uuid.uuid4().hex, received_at=time.time()
    )
    return [(e.key, e.to_bytes()) for e in events]


def status_records(wa_id: str, wamid: str, *statuses: str) -> list[tuple[str, bytes]]:
    """One webhook per status of outbound message ``wamid`` (Meta sends them separately)."""
    records = []
    for status in statuses:
        payload = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": WABA_ID,
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": DISPLAY_NUMBER,
                                    "phone_number_id": PHONE_NUMBER_ID,
                                },
                                "statuses": [
                                    {
                                        "id": wamid,
                                        "status": status,
                                        "timestamp": str(int(time.time())),
                                        "recipient_id": wa_id,
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        }
        events = split_webhook(payload, tenant_id=TENANT, webhook_id=uuid.uuid4().hex, received_at=time.time())
        records += [(e.key, e.to_bytes()) for e in events]
    return records


async def produce(producer: AIOKafkaProducer, settings: Settings, records: list[tuple[str, bytes]]) -> None:
    """Send all, then wait for every ack (one batch on the wire, like the bridge)."""
    futures = [await producer.send(settings.topic(WA_INBOUND), key=key.encode(), value=value) for key, value in records]
    for future in futures:
        await future


async def get_json(http: aiohttp.ClientSession, url: str, **params: str) -> tuple[int, Any]:
    try:
        async with http.get(url, params=params) as response:
            return response.status, orjson.loads(await response.read() or b"null")
    except (aiohttp.ClientError, TimeoutError):
        return 0, None


async def owns_partitions(http: aiohttp.ClientSession, worker: WorkerProcess, expected_owners: int) -> bool:
    """Faust's ``/router/`` view: worker URL -> partitions it owns; true when ``expected_owners`` own some."""
    status, routes = await get_json(http, f"{worker.url}/router/")
    if status != 200 or not isinstance(routes, dict):
        return False
    return len({url for url, topics in routes.items() if any(topics.values())}) == expected_owners


async def committed_all(settings: Settings, topic: str) -> bool:
    """True when the worker group has committed the end of every partition of ``topic``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from wabridge.streams.topics import WORKER_GROUP

    tps = [TopicPartition(settings.topic(topic), p) for p in range(settings.kafka_partitions)]
    admin = AIOKafkaAdminClient(**kafka.connection(settings))
    consumer = AIOKafkaConsumer(**kafka.connection(settings))
    await admin.start()
    await consumer.start()
    try:
        ends = await kafka.end_offsets(consumer, tps)
        offsets = await admin.list_consumer_group_offsets(settings.topic(WORKER_GROUP), partitions=tps)
    finally:
        await consumer.stop()
        await admin.close()
    return all(ends[tp] == 0 or (tp in offsets and offsets[tp].offset >= ends[tp]) for tp in tps)
