"""``wabridge sim …`` as an integrator runs it: real processes, real ports."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import orjson

from tests.simulators.conftest import WebhookReceiver, eventually

WABRIDGE = str(Path(sys.executable).with_name("wabridge"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def running(*args: str, port: int) -> AsyncIterator[str]:
    """Start ``wabridge sim …`` and yield its URL once it answers; stop it with SIGTERM."""
    process = await asyncio.create_subprocess_exec(
        WABRIDGE,
        "sim",
        *args,
        "--port",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"{url}/__sim/requests") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    assert process.returncode is None, await process.stderr.read()  # type: ignore[union-attr]
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("the simulator never started")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0


async def run_cli(*args: str) -> dict[str, object]:
    process = await asyncio.create_subprocess_exec(
        WABRIDGE, "sim", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, stderr.decode()
    result: dict[str, object] = orjson.loads(stdout)
    return result


async def test_meta_simulator_and_customer_driver_from_the_command_line(receiver: WebhookReceiver) -> None:
    async with running(
        "meta",
        "--phone-number-id",
        "111",
        "--access-token",
        "t",
        "--app-secret",
        "s",
        "--webhook-url",
        f"{receiver.url}/hook",
        port=free_port(),
    ) as url:
        result = await run_cli(
            "customer",
            "send",
            "--meta-url",
            url,
            "--phone-number-id",
            "111",
            "--type",
            "text",
            "--type",
            "image",
            "--customers",
            "2",
            "--batch",
            "--text",
            "café",
        )
    assert result["posts"] == [[200]]
    (webhook,) = receiver.received
    expected = "sha256=" + hmac.new(b"s", webhook.raw, hashlib.sha256).hexdigest()
    assert webhook.headers["X-Hub-Signature-256"] == expected
    changes = orjson.loads(webhook.raw)["entry"][0]["changes"]
    assert [c["value"]["contacts"][0]["wa_id"] for c in changes] == ["16505551234", "16505551235"]


async def test_genesys_simulator_and_agent_driver_from_the_command_line(receiver: WebhookReceiver) -> None:
    async with running(
        "genesys",
        "--client-id",
        "c",
        "--client-secret",
        "cs",
        "--integration-id",
        "i",
        "--webhook-url",
        f"{receiver.url}/outbound",
        "--webhook-secret",
        "ws",
        port=free_port(),
    ) as url:
        result = await run_cli(
            "agent",
            "send",
            "--genesys-url",
            url,
            "--integration-id",
            "i",
            "--to",
            "1650",
            "--text",
            "hello",
            "--attachment",
            "document",
        )
        async with aiohttp.ClientSession() as http:
            auth = {"Authorization": "Basic " + base64.b64encode(b"c:cs").decode()}
            async with http.post(
                f"{url}/oauth/token", data={"grant_type": "client_credentials"}, headers=auth
            ) as response:
                assert response.status == 200
    assert result["delivered"] is True
    await eventually(lambda: len(receiver.received) == 1)
    digest = base64.b64encode(hmac.new(b"ws", receiver.received[0].raw, hashlib.sha256).digest()).decode()
    assert receiver.received[0].headers["X-Hub-Signature-256"] == f"sha256={digest}"
