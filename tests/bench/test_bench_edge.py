"""`wabridge bench --mode edge` against `wabridge run --only webhook`: what the edge acknowledged is
read back from the inbound queue, and the harness counts exactly what is missing or out of order.

No timing is asserted. The edge runs on its own prefixes and ports (``isolated_run``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import orjson
import pytest

from tests.integration.run_support import IsolatedRun, clean_up, isolated_run
from wabridge.connectors import rabbitmq
from wabridge.schemas.meta import message_ids
from wabridge.streams.topics import INBOUND_WHATSAPP_MESSAGES

BENCH = [sys.executable, "-m", "wabridge", "bench", "--mode", "edge"]
# 30 messages/s for 3 s from 5 customers: 90 messages, 18 per customer.
SMALL_RUN = ["--rate", "30", "--duration", "3", "--customers", "5", "--json"]
MESSAGES = 90


@pytest.fixture(scope="module")
def edge_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, IsolatedRun]]:
    cwd = tmp_path_factory.mktemp("bench-edge")
    own = isolated_run(log_level="WARNING")
    run = subprocess.Popen(
        [sys.executable, "-m", "wabridge", "run", "--only", "webhook"], cwd=cwd, env=own.env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for_edge(own, run, timeout_s=120)
        yield cwd, own
    finally:
        run.send_signal(signal.SIGINT)
        run.wait(timeout=60)
        asyncio.run(clean_up(own.settings))


def _wait_for_edge(own: IsolatedRun, run: subprocess.Popen[bytes], timeout_s: float) -> None:
    url = f"http://{own.settings.webhook_ops_host}:{own.settings.webhook_ops_port}/healthz"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert run.poll() is None, "`wabridge run --only webhook` exited"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.5)
    pytest.fail(f"the edge did not answer {url} within {timeout_s:.0f} s")


def bench(cwd: Path, own: IsolatedRun, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BENCH, *args], cwd=cwd, env=own.env, capture_output=True, text=True, timeout=240
    )  # fmt: skip


def report_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = orjson.loads(done.stdout)
    return report


async def queue_depth(own: IsolatedRun) -> int:
    connection = await rabbitmq.connect(own.settings)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(own.settings.queue(INBOUND_WHATSAPP_MESSAGES), passive=True)
        return int(queue.declaration_result.message_count or 0)
    finally:
        await connection.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_every_acknowledged_webhook_is_found_in_the_queue_once_per_delivery(
    edge_only: tuple[Path, IsolatedRun],
) -> None:
    cwd, own = edge_only
    report = report_of(bench(cwd, own, *SMALL_RUN, "--duplicate-share", "0.2"))

    assert (report["sent"], report["accepted"], report["queued"]) == (MESSAGES, MESSAGES, MESSAGES)
    assert report["duplicate_posts"] > 0
    assert report["queued_posts"] == report["accepted_posts"] == MESSAGES + report["duplicate_posts"]
    # Every duplicate delivery is queued again, as the edge must: the pipeline drops it on wamid.
    assert report["duplicates"] == report["duplicate_posts"]
    assert (report["lost"], report["out_of_order"], report["misrouted"]) == (0, 0, 0)
    assert "webhook" in report["processes"]
    assert asyncio.run(queue_depth(own)) == 0, "the bench empties the queue it counted"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_webhooks_taken_from_the_queue_during_the_run_are_counted_lost(edge_only: tuple[Path, IsolatedRun]) -> None:
    """A consumer that joins mid-run takes exactly five webhooks: the harness must call exactly those lost."""
    cwd, own = edge_only
    run = subprocess.Popen(
        [*BENCH, *SMALL_RUN], cwd=cwd, env=own.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    taken = asyncio.run(_take_from_queue(own, count=5))
    stdout, stderr = run.communicate(timeout=240)
    report = report_of(subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr))

    assert len(taken) == 5
    assert report["accepted"] == MESSAGES
    assert report["lost"] == 5
    assert set(report["lost_examples"]) == set(taken)
    assert report["queued"] == MESSAGES - 5
    assert report["out_of_order"] == 0


async def _take_from_queue(own: IsolatedRun, *, count: int) -> list[str]:
    """Once the run has queued twice ``count`` webhooks (so the bench has checked the queue was idle)."""
    deadline = time.monotonic() + 60
    while await queue_depth(own) < 2 * count:
        assert time.monotonic() < deadline, "the run queued nothing"
        await asyncio.sleep(0.1)
    connection = await rabbitmq.connect(own.settings)
    taken: list[str] = []
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1)
        queue = await channel.get_queue(own.settings.queue(INBOUND_WHATSAPP_MESSAGES))
        async with queue.iterator() as messages:
            async for message in messages:
                taken += message_ids(message.body)
                await message.ack()
                if len(taken) >= count:
                    break
    finally:
        await connection.close()
    return taken


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_queue_that_is_not_empty_is_refused_with_the_reason(edge_only: tuple[Path, IsolatedRun]) -> None:
    cwd, own = edge_only
    asyncio.run(_publish_one(own))
    try:
        done = bench(cwd, own, *SMALL_RUN)
        assert done.returncode != 0
        assert "holds 1 messages already" in done.stderr
    finally:
        asyncio.run(_purge(own))


async def _publish_one(own: IsolatedRun) -> None:
    connection = await rabbitmq.connect(own.settings)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.default_exchange.publish(
            aio_pika.Message(b"{}"), routing_key=own.settings.queue(INBOUND_WHATSAPP_MESSAGES)
        )
    finally:
        await connection.close()


async def _purge(own: IsolatedRun) -> None:
    connection = await rabbitmq.connect(own.settings)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(own.settings.queue(INBOUND_WHATSAPP_MESSAGES))
        await queue.purge()
    finally:
        await connection.close()
