"""The edge past saturation and with PostgreSQL gone: quick, honest answers, and nothing acked that
is not durable."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from tests.integration.edge_fixtures import (
    APP_SECRET,
    RunningEdge,
    make_tenant,
    save_tenants,
    serve_edge,
    webhook_body,
)
from tests.services import TcpProxy
from wabridge.connectors.tenant_directory import LIST_MAX_AGE_S
from wabridge.simulators.customer import InboundSpec, sign_webhook
from wabridge.streams.topics import INBOUND_WHATSAPP_MESSAGES
from wabridge.tenants import PhoneNumber


async def post(edge: RunningEdge, body: bytes) -> tuple[int, str | None, float]:
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign_webhook(APP_SECRET, body)}
    started = time.monotonic()
    async with edge.session.post(edge.url + "/webhook/meta", data=body, headers=headers) as response:
        await response.read()
        return response.status, response.headers.get("Retry-After"), time.monotonic() - started


@pytest.fixture
async def small_edge(edge_settings) -> AsyncIterator[RunningEdge]:  # type: ignore[no-untyped-def]
    settings = edge_settings.model_copy(update={"webhook_max_in_flight": 2, "webhook_admission_wait_s": 0.05})
    await save_tenants(settings, make_tenant())
    async for running in serve_edge(settings):
        yield running


async def test_past_saturation_the_edge_answers_503_quickly_and_queues_exactly_what_it_accepted(
    small_edge: RunningEdge,
) -> None:
    wamids = [f"wamid.burst.{i}" for i in range(200)]
    specs = [InboundSpec(kind="text", wa_id=f"1650444{i % 50:04d}", wamid=w, text="x") for i, w in enumerate(wamids)]
    bodies = [webhook_body(spec) for spec in specs]
    results = await asyncio.gather(*(post(small_edge, body) for body in bodies))

    accepted = {w for w, (status, _, _) in zip(wamids, results, strict=True) if status == 200}
    refused = [(w, r) for w, r in zip(wamids, results, strict=True) if r[0] != 200]
    assert refused, "the burst never saturated the edge: the test tests nothing"
    assert accepted, "nothing was accepted"
    for _, (status, retry_after, seconds) in refused:
        assert status == 503
        assert retry_after == "1"
        assert seconds < 5.0  # answered, not held until Meta's own timeout
    queued = await small_edge.queued(INBOUND_WHATSAPP_MESSAGES)
    from wabridge.schemas.meta import message_ids

    queued_ids = {wamid for message in queued for wamid in message_ids(message.body)}
    assert queued_ids == accepted  # every 200 is durable; no 503 is
    # Saturation passed, the edge takes webhooks again.
    assert (await post(small_edge, webhook_body(InboundSpec(kind="text", wa_id="16504440000", text="y"))))[0] == 200


async def test_postgresql_unreachable_gives_503_not_a_500_and_recovers(
    edge_settings,
    postgres_proxy: TcpProxy,  # type: ignore[no-untyped-def]
) -> None:
    dsn = edge_settings.postgres_dsn.get_secret_value().replace(
        f":{postgres_proxy.target_port}/", f":{postgres_proxy.port}/"
    )
    settings = edge_settings.model_copy(update={"postgres_dsn": SecretStr(dsn)})
    tenant = make_tenant()
    second = PhoneNumber(phone_number_id="106540352242955", display_phone_number="15550783955")
    await save_tenants(settings, tenant.model_copy(update={"phone_numbers": (*tenant.phone_numbers, second)}))
    async for edge in serve_edge(settings):
        assert (await post(edge, webhook_body(InboundSpec(kind="text", wa_id="16504440001", text="a"))))[0] == 200
        await postgres_proxy.cut()
        # The tenant's other number, not looked up yet: only PostgreSQL can give its tenant.
        other = webhook_body(InboundSpec(kind="text", wa_id="16504440002", text="b"), phone_number_id="106540352242955")
        status, retry_after, _ = await post(edge, other)
        assert (status, retry_after) == (503, "1")
        # A number nobody owns is told apart by the last list of owned numbers, even once that list
        # is due to be read again and PostgreSQL cannot give it: refused, not retried.
        await asyncio.sleep(LIST_MAX_AGE_S)
        unknown = webhook_body(InboundSpec(kind="text", wa_id="16504440003", text="c"), phone_number_id="999000111")
        assert (await post(edge, unknown))[0] == 404
        # Meta's verify handshake needs the tenants too: "retry", not a 500.
        verify = {"hub.mode": "subscribe", "hub.verify_token": "acme-verify-token", "hub.challenge": "42"}
        async with edge.session.get(edge.url + "/webhook/meta", params=verify) as response:
            assert (response.status, response.headers.get("Retry-After")) == (503, "1")
        async with edge.session.get(edge.ops_url + "/readyz") as response:
            assert response.status == 503
            assert (await response.json())["dependencies"]["postgres"] is False
        await postgres_proxy.start()
        for _ in range(50):
            status, _, _ = await post(edge, other)
            if status != 503:
                break
            await asyncio.sleep(0.2)
        assert status == 200  # PostgreSQL answers again: the message is taken
        async with edge.session.get(edge.url + "/webhook/meta", params=verify) as response:
            assert (response.status, await response.text()) == (200, "42")
        break


async def raw_request(edge: RunningEdge, head: bytes, body: bytes = b"") -> int:
    """Send bytes as they are (headers a client library would refuse to write); the status."""
    port = int(edge.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        await writer.drain()
        status_line = await reader.readline()
        return int(status_line.split()[1])
    finally:
        writer.close()


async def test_non_ascii_signature_and_verify_token_are_refused_not_errors(edge: RunningEdge) -> None:
    body = webhook_body(InboundSpec(kind="text", wa_id="16504440003", text="z"))
    head = b"POST /webhook/meta HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    assert await raw_request(edge, head + "X-Hub-Signature-256: sha256=\u00e9\u00e9\r\n".encode()) == 401
    assert await raw_request(edge, head + b"X-Hub-Signature-256: sha256=\xff\xfe\r\n", body) == 401
    verify = (
        "GET /webhook/meta?hub.mode=subscribe&hub.verify_token=%C3%A9%C3%A9&hub.challenge=1 HTTP/1.1\r\nHost: x\r\n"
    )
    assert await raw_request(edge, verify.encode()) == 403
