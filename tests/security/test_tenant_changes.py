"""A number removed from a tenant stops routing to it: its cache entries go at once, every edge
refuses it within the directory's 10 s, and a second edge process cannot keep it alive."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from tests.integration.edge_fixtures import (
    APP_SECRET,
    PHONE_NUMBER_ID,
    RunningEdge,
    make_tenant,
    post_meta,
    save_tenants,
    serve_edge,
    settings_env,
    webhook_body,
)
from tests.streams.support import wait_until
from wabridge.connectors import redis_client
from wabridge.settings import Settings
from wabridge.simulators.customer import InboundSpec
from wabridge.tenants import PhoneNumber

SECOND = PhoneNumber(phone_number_id="106540352242988", display_phone_number="15550783988")


async def test_a_removed_number_stops_routing(edge_settings: Settings) -> None:
    tenant = make_tenant()
    await save_tenants(edge_settings, tenant.model_copy(update={"phone_numbers": (*tenant.phone_numbers, SECOND)}))
    second = webhook_body(InboundSpec(kind="text", text="b"), phone_number_id=SECOND.phone_number_id)
    first = webhook_body(InboundSpec(kind="text", text="a"), phone_number_id=PHONE_NUMBER_ID)
    async for edge in serve_edge(edge_settings):
        assert await post_meta(edge, second, secret=APP_SECRET) == 200  # cached now, in-process and in Redis
        phone_key = edge_settings.redis_key(f"tenant:phone:{SECOND.phone_number_id}")
        redis = redis_client.client(edge_settings)
        try:
            assert await redis.exists(phone_key) == 1
            removed = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "wabridge", "tenants", "update", "acme", "--remove-phone-number",
                 SECOND.phone_number_id],
                env=settings_env(edge_settings), capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert removed.returncode == 0, removed.stderr
            assert await redis.exists(phone_key) == 0  # at once
        finally:
            await redis.aclose()

        await wait_until(
            lambda edge=edge: _status_is(edge, second, 404), 15, "the edge to refuse the removed number", interval=0.5
        )
        assert await post_meta(edge, first) == 200  # the tenant's other number is untouched
        break


async def _status_is(edge: RunningEdge, body: bytes, status: int) -> bool:
    return await post_meta(edge, body) == status
