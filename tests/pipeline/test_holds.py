"""What an operator must fix holds that tenant, not its messages: they wait and flow once fixed,
none is failed, and other tenants are not held up."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

from pydantic import SecretStr

from tests.pipeline.conftest import ACME, GLOBEX, Pipeline, pg_rows, wait_for
from tests.pipeline.test_faults import per_customer, texts
from wabridge.connectors import postgres
from wabridge.connectors.tenant_directory import invalidate_cached
from wabridge.simulators.customer import InboundSpec
from wabridge.tenants import SecretBox, TenantStore


async def held_gauge(pipeline: Pipeline) -> float:
    async with pipeline.http.get(f"http://127.0.0.1:{pipeline.settings.worker_port}/metrics") as response:
        metrics = await response.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("wabridge_tenant_held{") and 'tenant="acme"' in line
    )


async def test_genesys_refusing_a_tenants_credentials_holds_it_until_they_work_again(pipeline: Pipeline) -> None:
    acme_customers = ["16505550701", "16505550702"]
    client = pipeline.genesys.clients[ACME.client_id]
    first = await pipeline.send(ACME, texts(acme_customers, 2, "before "))
    await pipeline.wait_arrived(ACME, first)

    # The OAuth client is deleted in Genesys: its tokens stop working and logins are refused.
    pipeline.genesys.remove_client(ACME.client_id)
    pipeline.genesys.revoke_tokens(ACME.client_id)
    held = await pipeline.send(ACME, texts(acme_customers, 3, "held "))
    globex = await pipeline.send(GLOBEX, texts(["16505550801"], 3))
    await pipeline.wait_arrived(GLOBEX, globex)  # the other tenant is not held up

    async def on_hold() -> bool:
        return await held_gauge(pipeline) == 1.0

    await wait_for(on_hold, 30, "acme on hold", pipeline)
    assert not set(held) & set(pipeline.arrived_ids(ACME))

    pipeline.genesys.upsert_client(client)  # fixed by an operator
    await pipeline.wait_arrived(ACME, held, timeout_s=60)
    assert sorted(pipeline.arrived_ids(ACME)) == sorted(first + held)  # each once
    for customer, seen in per_customer(pipeline, ACME).items():
        expected = [f"before {customer} #{n}" for n in range(2)] + [f"held {customer} #{n}" for n in range(3)]
        assert seen == expected
    failed = await pg_rows(pipeline.settings, "SELECT message_id FROM message_tracking WHERE status = 'failed'")
    assert failed == []
    assert await held_gauge(pipeline) == 0.0


async def test_an_attachment_link_is_signed_when_its_message_is_delivered_not_before(pipeline: Pipeline) -> None:
    client = pipeline.genesys.clients[ACME.client_id]
    pipeline.genesys.remove_client(ACME.client_id)
    pipeline.genesys.revoke_tokens(ACME.client_id)
    [wamid] = await pipeline.send(ACME, [InboundSpec(kind="image", wa_id="16505550711", text="held photo")])

    async def on_hold() -> bool:
        return await held_gauge(pipeline) == 1.0

    await wait_for(on_hold, 30, "acme on hold", pipeline)  # the media stage has stored and signed it
    await asyncio.sleep(2.0)
    released_at = time.time()
    pipeline.genesys.upsert_client(client)
    await pipeline.wait_arrived(ACME, [wamid], timeout_s=60)

    [accepted] = [a for a in pipeline.arrived(ACME) if a.body["channel"]["messageId"] == wamid]
    [content] = accepted.body["content"]
    query = parse_qs(urlsplit(content["attachment"]["url"]).query)
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    # Signed for the POST after the hold, so its hour of validity starts then, not when it was stored.
    assert signed_at >= released_at - 1.0


async def set_active(pipeline: Pipeline, tenant_id: str, active: bool) -> None:
    """What ``wabridge tenants disable`` / ``enable`` does."""
    pool = await postgres.connect(pipeline.settings, min_size=1, max_size=1)
    try:
        store = TenantStore(pool, SecretBox.from_settings(pipeline.settings))
        await store.set_active(tenant_id, active)
        await invalidate_cached(pipeline.settings, await store.get(tenant_id))
    finally:
        await pool.close()


async def test_a_tenant_disabled_with_messages_in_flight_holds_them_until_enabled(pipeline: Pipeline) -> None:
    customers = ["16505550721", "16505550722"]
    client = pipeline.genesys.clients[ACME.client_id]
    pipeline.genesys.remove_client(ACME.client_id)  # keeps acme's messages in the worker meanwhile
    pipeline.genesys.revoke_tokens(ACME.client_id)
    waiting = await pipeline.send(ACME, texts(customers, 2, "waiting "))

    async def on_hold(reason: str) -> bool:
        async with pipeline.http.get(f"http://127.0.0.1:{pipeline.settings.worker_port}/metrics") as response:
            return f'wabridge_tenant_held{{reason="{reason}",tenant="acme"}} 1.0' in await response.text()

    await wait_for(lambda: on_hold("genesys_auth_failed"), 30, "acme held for its credentials", pipeline)
    await set_active(pipeline, "acme", False)
    # Seen by the worker within its tenant cache's 10 s, then the next probe holds it as disabled.
    await wait_for(lambda: on_hold("tenant_disabled"), 45, "acme held as disabled", pipeline)
    pipeline.genesys.upsert_client(client)  # Genesys would take them now; the tenant is disabled
    globex = await pipeline.send(GLOBEX, texts(["16505550821"], 2))
    await pipeline.wait_arrived(GLOBEX, globex)
    await asyncio.sleep(6)  # at least one probe (every 5 s) with Genesys willing and the tenant disabled
    assert pipeline.arrived_ids(ACME) == []

    await set_active(pipeline, "acme", True)
    await pipeline.wait_arrived(ACME, waiting, timeout_s=60)
    assert sorted(pipeline.arrived_ids(ACME)) == sorted(waiting)
    failed = await pg_rows(pipeline.settings, "SELECT message_id FROM message_tracking WHERE status = 'failed'")
    assert failed == []


async def test_meta_refusing_a_tenants_whatsapp_token_holds_its_media_not_its_texts(pipeline: Pipeline) -> None:
    # Meta rotates the token (an expired system-user token, say): the one acme stored is refused.
    number = pipeline.meta.phone_numbers[ACME.phone_number_id]
    pipeline.meta.upsert_phone_number(number.model_copy(update={"access_token": SecretStr("fake-rotated-token")}))
    [photo] = await pipeline.send(ACME, [InboundSpec(kind="image", wa_id="16505550731", text="held photo")])

    async def on_hold() -> bool:
        async with pipeline.http.get(f"http://127.0.0.1:{pipeline.settings.worker_port}/metrics") as response:
            return 'wabridge_tenant_held{reason="whatsapp_token_refused",tenant="acme"} 1.0' in await response.text()

    await wait_for(on_hold, 30, "acme's media held for its WhatsApp token", pipeline)
    # Texts need no token: acme's other customers, and globex, are not held with the photo.
    others = await pipeline.send(ACME, texts(["16505550732"], 2, "meanwhile "))
    globex = await pipeline.send(GLOBEX, [InboundSpec(kind="image", wa_id="16505550831", text="globex photo")])
    await pipeline.wait_arrived(ACME, others)
    await pipeline.wait_arrived(GLOBEX, globex)
    assert photo not in pipeline.arrived_ids(ACME)

    # An operator stores the new token (what `wabridge tenants` does): the photo flows, once.
    pool = await postgres.connect(pipeline.settings, min_size=1, max_size=1)
    try:
        store = TenantStore(pool, SecretBox.from_settings(pipeline.settings))
        tenant = await store.get("acme")
        secrets = tenant.secrets.model_copy(update={"meta_access_token": SecretStr("fake-rotated-token")})
        await store.upsert(tenant.model_copy(update={"secrets": secrets}))
        await invalidate_cached(pipeline.settings, tenant)
    finally:
        await pool.close()
    await pipeline.wait_arrived(ACME, [photo], timeout_s=60)
    assert pipeline.arrived_ids(ACME).count(photo) == 1
    [accepted] = [a for a in pipeline.arrived(ACME) if a.body["channel"]["messageId"] == photo]
    assert accepted.body["content"][0]["attachment"]["mediaType"] == "Image"
    failed = await pg_rows(pipeline.settings, "SELECT message_id FROM message_tracking WHERE status = 'failed'")
    assert failed == []
    assert not await on_hold()
