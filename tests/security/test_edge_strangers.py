"""Strangers cannot stall the webhook port: connections that stall mid-body or trickle their headers
hold no work slot, are closed at their deadlines, and are capped per address and in total, while
signed Meta and Genesys webhooks keep being answered at once. Every attacker and client here is on
loopback (attackers from their own 127.0.0.x addresses)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import orjson
import pytest
from pydantic import SecretStr

from tests.integration.edge_fixtures import (
    APP_SECRET,
    INTEGRATION_ID,
    RunningEdge,
    make_tenant,
    save_tenants,
    serve_edge,
    webhook_body,
)
from wabridge.settings import Settings
from wabridge.simulators.agent import build_agent_text, sign_outbound
from wabridge.simulators.customer import InboundSpec, new_wamid, sign_webhook

STALLERS = 500
TRICKLERS = 500
ADDRESSES = 10  # each group of attackers spreads over its own ten addresses
WEBHOOK_SECRET = "fake-genesys-webhook-secret"


@pytest.fixture
async def edge(edge_settings: Settings) -> AsyncIterator[RunningEdge]:
    settings = edge_settings.model_copy(update={"webhook_header_timeout_s": 3.0, "webhook_body_timeout_s": 3.0})
    tenant = make_tenant()
    tenant = tenant.model_copy(
        update={"secrets": tenant.secrets.model_copy(update={"genesys_webhook_secret": SecretStr(WEBHOOK_SECRET)})}
    )
    await save_tenants(settings, tenant)
    async for running in serve_edge(settings):
        yield running


async def connect(edge: RunningEdge, address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = edge.url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port), local_addr=(address, 0))


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def stall_mid_body(edge: RunningEdge, address: str) -> Connection | None:
    """A POST whose head says 100 KB and whose body stops after ten bytes (the writer is kept: a
    stream writer that is collected closes its connection)."""
    try:
        reader, writer = await connect(edge, address)
    except OSError:
        return None
    head = (
        "POST /webhook/meta HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    writer.write(head.encode() + b'{"object":')
    return reader, writer


async def trickle_headers(edge: RunningEdge, address: str, until: float) -> None:
    """A request head sent a byte a second, until the edge closes the connection or ``until``."""
    try:
        reader, writer = await connect(edge, address)
    except OSError:
        return
    head = b"POST /webhook/genesys HTTP/1.1\r\nHost: edge\r\nX-Slow: " + b"a" * 1000
    for byte in head:
        if time.monotonic() > until or reader.at_eof() or writer.is_closing():
            break
        writer.write(bytes([byte]))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        await asyncio.sleep(1.0)
    writer.close()


async def signed_webhooks(edge: RunningEdge, count: int) -> list[tuple[int, float]]:
    """A normal client's signed Meta and Genesys webhooks, one after the other: (status, seconds)."""
    answers = []
    for n in range(count):
        if n % 2:
            raw = webhook_body(InboundSpec(kind="text", wa_id="16505551234", text=f"hi {n}", wamid=new_wamid()))
            url, signature = f"{edge.url}/webhook/meta", sign_webhook(APP_SECRET, raw)
        else:
            raw = orjson.dumps(build_agent_text(integration_id=INTEGRATION_ID, to_id="16505551234", text=f"hi {n}"))
            url, signature = f"{edge.url}/webhook/genesys", sign_outbound(WEBHOOK_SECRET, raw)
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
        started = time.perf_counter()
        async with edge.session.post(url, data=raw, headers=headers) as response:
            answers.append((response.status, time.perf_counter() - started))
    return answers


async def test_stalled_bodies_and_trickled_headers_do_not_stop_signed_webhooks(edge: RunningEdge) -> None:
    until = time.monotonic() + 8
    stallers = [await stall_mid_body(edge, f"127.0.1.{n % ADDRESSES + 1}") for n in range(STALLERS)]
    tricklers = [
        asyncio.create_task(trickle_headers(edge, f"127.0.2.{n % ADDRESSES + 1}", until)) for n in range(TRICKLERS)
    ]
    await asyncio.sleep(0.5)  # every attacker is connected and waiting on the edge
    try:
        answers = await signed_webhooks(edge, 40)
        statuses = {status for status, _ in answers}
        assert statuses <= {200, 202}, answers
        latencies = sorted(seconds for _, seconds in answers)
        assert latencies[int(len(latencies) * 0.99) - 1] < 1.0, latencies[-5:]

        # Past their deadlines the edge has closed the stalled ones: nothing of theirs is left open.
        async def closed(connection: Connection | None) -> bool:
            if connection is None:
                return True
            reader, _ = connection
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(reader.read(), 10)
            return reader.at_eof()

        assert all(await asyncio.gather(*(closed(r) for r in stallers)))
    finally:
        await asyncio.gather(*tricklers, return_exceptions=True)


async def closed_by_the_edge(held: list[Connection | None]) -> int:
    """How many of the held connections the edge has closed (each looked at for 50 ms)."""
    closed = 0
    for connection in held:
        assert connection is not None
        reader, _ = connection
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.05)
        closed += reader.at_eof()
    return closed


async def test_connections_are_capped_per_address(edge_settings: Settings) -> None:
    settings = edge_settings.model_copy(update={"webhook_max_connections_per_address": 20})
    await save_tenants(settings, make_tenant())
    async for running in serve_edge(settings):
        held = [await stall_mid_body(running, "127.0.3.1") for _ in range(40)]
        await asyncio.sleep(0.3)
        assert await closed_by_the_edge(held) == 20  # the twenty over the cap were closed at once
        answers = await signed_webhooks(running, 4)  # another address is not affected
        assert {status for status, _ in answers} <= {200, 202}


async def test_connections_are_capped_in_total(edge_settings: Settings) -> None:
    settings = edge_settings.model_copy(update={"webhook_max_connections": 30})
    await save_tenants(settings, make_tenant())
    async for running in serve_edge(settings):
        held = [await stall_mid_body(running, f"127.0.4.{n % 5 + 1}") for n in range(40)]
        await asyncio.sleep(0.3)
        assert (
            await closed_by_the_edge(held) == 10
        )  # the ten over the total were closed at once, whatever their address
