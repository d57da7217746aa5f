"""`wabridge demo` against `wabridge run`: a customer's conversation reaches the agent, every kind of it."""

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
from wabridge.cli import _COMMANDS
from wabridge.connectors import kafka, postgres, rabbitmq
from wabridge.settings import Settings

# Until `demo` is registered in wabridge.cli, the same click command is run through its module.
_DEMO = (
    ["-m", "wabridge", "demo"]
    if "demo" in _COMMANDS
    else ["-c", "from wabridge.dev.conversation import demo; demo()"]
)  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_conversation_reaches_the_agent(tmp_path: Path, stack_settings: Settings) -> None:
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
        "PYTHONIOENCODING": "utf-8",
    }
    run_log = tmp_path / "run.log"
    with run_log.open("wb") as log:
        run = subprocess.Popen(
            [sys.executable, "-m", "wabridge", "run"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_until_healthy(tmp_path, env)
        demo = subprocess.run(
            [sys.executable, *_DEMO], cwd=tmp_path, env=env, capture_output=True, encoding="utf-8", timeout=120
        )
        output = demo.stdout + demo.stderr
        assert demo.returncode == 0, output + "\n--- wabridge run ---\n" + run_log.read_text(errors="replace")[-20_000:]
        # As the agent saw it: the text, the caption, each attachment's media type, the location,
        # the reply note and the reaction.
        for expected in (
            "Hi! My order #1042 has not arrived yet.",
            "This is the label on the box",
            "[attachment] Image  image/jpeg",
            "[attachment] File  application/pdf  document.pdf",
            "[attachment] Audio  audio/ogg",
            "Location shared by the customer",
            "[In reply to an earlier message",
            "It was due last Monday.",
            "Reacted 👍 to an earlier message",
            "Sheena Nelson:",
        ):
            assert expected in output, output
        assert "sent 7, delivered 7, failed 0, in " in output.splitlines()[-1], output
    finally:
        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=60) == 0
        own = Settings(postgres_schema=f"t_{tag}", kafka_topic_prefix=f"t{tag}.", rabbitmq_queue_prefix=f"t{tag}.")
        asyncio.run(_clean_up(own))
    assert "everything is up" in run_log.read_text(errors="replace")


def _wait_until_healthy(cwd: Path, env: dict[str, str]) -> None:
    deadline = time.monotonic() + 90
    report: dict[str, object] = {}
    while time.monotonic() < deadline:
        status = subprocess.run(
            [sys.executable, "-m", "wabridge", "dev", "status", "--json"],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        report = orjson.loads(status.stdout)
        if all(c["healthy"] for c in report["components"].values()):  # type: ignore[attr-defined]
            return
        time.sleep(1)
    pytest.fail(f"`wabridge run` did not become healthy within 90 s: {report}")


async def _clean_up(settings: Settings) -> None:
    """This test's schema, topics and queues; the buckets are the shared ones and stay."""
    await postgres.drop_schema(settings)
    await kafka.delete_prefixed_topics(settings)
    await rabbitmq.delete_topology(settings)
