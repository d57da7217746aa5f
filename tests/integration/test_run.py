"""`wabridge run` (what `make run` starts): every component healthy, and Ctrl-C stops it all."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.integration.edge_fixtures import free_port
from wabridge.connectors import kafka, postgres, rabbitmq
from wabridge.settings import Settings


@pytest.mark.slow
def test_run_brings_every_component_up_and_ctrl_c_stops_it(tmp_path: Path, stack_settings: Settings) -> None:
    tag = os.urandom(4).hex()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WABRIDGE_")},
        "WABRIDGE_POSTGRES_SCHEMA": f"t_{tag}",
        "WABRIDGE_KAFKA_TOPIC_PREFIX": f"t{tag}.",
        "WABRIDGE_RABBITMQ_QUEUE_PREFIX": f"t{tag}.",
        "WABRIDGE_REDIS_KEY_PREFIX": f"t{tag}:",
        "WABRIDGE_WEBHOOK_PORT": str(free_port()),
        "WABRIDGE_BRIDGE_METRICS_PORT": str(free_port()),
        "WABRIDGE_WORKER_PORT": str(free_port()),
        "WABRIDGE_SIM_META_PORT": str(free_port()),
        "WABRIDGE_SIM_GENESYS_PORT": str(free_port()),
    }
    run = subprocess.Popen(
        [sys.executable, "-m", "wabridge", "run"], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        report: dict[str, object] = {}
        while time.monotonic() < deadline:
            status = subprocess.run(
                [sys.executable, "-m", "wabridge", "dev", "status", "--json"],
                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            report = orjson.loads(status.stdout)
            if all(c["healthy"] for c in report["components"].values()):  # type: ignore[attr-defined]
                break
            time.sleep(1)
        components = report["components"]
        assert {"kafka", "s3", "postgres", "redis", "rabbitmq", "webhook", "bridge", "sim_meta", "sim_genesys"} <= set(
            components  # type: ignore[arg-type]
        )
        unhealthy = [n for n, c in components.items() if not c["healthy"]]  # type: ignore[attr-defined]
        assert unhealthy == []
    finally:
        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=60) == 0
        own = Settings(postgres_schema=f"t_{tag}", kafka_topic_prefix=f"t{tag}.", rabbitmq_queue_prefix=f"t{tag}.")
        asyncio.run(_clean_up(own))


async def _clean_up(settings: Settings) -> None:
    """This test's schema, topics and queues; the buckets are the shared ones and stay."""
    await postgres.drop_schema(settings)
    await kafka.delete_prefixed_topics(settings)
    await rabbitmq.delete_topology(settings)
