"""A `wabridge run` of the test's own: unique schema, prefixes and ports, health polling, clean-up."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.edge_fixtures import free_port
from wabridge.connectors import kafka, postgres, rabbitmq, redis_client
from wabridge.settings import Settings

_PORTS = ("webhook_port", "webhook_ops_port", "bridge_metrics_port", "worker_port", "sim_meta_port", "sim_genesys_port")


@dataclass(frozen=True)
class IsolatedRun:
    settings: Settings  # the same schema, prefixes and ports as the processes
    env: dict[str, str]  # for `wabridge run` and the commands that talk to it


def isolated_run(**overrides: Any) -> IsolatedRun:
    """Settings and environment for a `wabridge run` that shares nothing with other tests.

    ``overrides`` are further settings (by field name) for both, such as a known secrets key.
    """
    tag = os.urandom(4).hex()
    values: dict[str, Any] = {
        "postgres_schema": f"t_{tag}",
        "kafka_topic_prefix": f"t{tag}.",
        "rabbitmq_queue_prefix": f"t{tag}.",
        "redis_key_prefix": f"t{tag}:",
        **{port: free_port() for port in _PORTS},
        **overrides,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("WABRIDGE_")}
    for name, value in values.items():
        plain = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        env[f"WABRIDGE_{name.upper()}"] = str(plain)
    return IsolatedRun(Settings(**values), env)


def wait_until_healthy(cwd: Path, env: dict[str, str], timeout_s: float) -> dict[str, Any]:
    """`wabridge dev status --json` components once all are healthy; fails the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    components: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = subprocess.run(
            [sys.executable, "-m", "wabridge", "dev", "status", "--json"],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        components = orjson.loads(status.stdout)["components"]
        if all(component["healthy"] for component in components.values()):
            return components
        time.sleep(1)
    pytest.fail(f"`wabridge run` did not become healthy within {timeout_s:.0f} s: {components}")


async def clean_up(settings: Settings) -> None:
    """The run's schema, topics, queues and Redis keys; the buckets are the shared ones and stay."""
    await postgres.drop_schema(settings)
    await kafka.delete_prefixed_topics(settings)
    await rabbitmq.delete_topology(settings)
    client = redis_client.client(settings)
    try:
        keys = [key async for key in client.scan_iter(match=settings.redis_key("*"))]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
