"""Fault tests of the whole bridge: Genesys tokens, 429 storms, media faults, a worker SIGKILLed.

Faults are scripted in the simulators (what a real Genesys or Meta does wrong); the bridge runs as
its real processes. What is asserted is what an agent would notice: every message, once, in each
customer's order, with the right attachment or a clear note.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict

from tests.pipeline.conftest import ACME, GLOBEX, BridgeTenant, Pipeline, pg_rows, wait_for
from wabridge.simulators.customer import InboundSpec
from wabridge.simulators.faults import FaultPlan, Latency
from wabridge.simulators.media_samples import sample_for


def texts(customers: list[str], count: int, tag: str = "") -> list[InboundSpec]:
    """``count`` numbered texts per customer, interleaved across customers."""
    return [InboundSpec(kind="text", wa_id=c, text=f"{tag}{c} #{n}") for n in range(count) for c in customers]


def per_customer(pipeline: Pipeline, tenant: BridgeTenant) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = defaultdict(list)
    for accepted in pipeline.arrived(tenant):
        seen[accepted.body["channel"]["from"]["id"]].append(accepted.body["text"])
    return seen


async def test_a_token_revoked_mid_stream_is_refreshed_once_and_nothing_is_lost(pipeline: Pipeline) -> None:
    customers = ["16505550301", "16505550302"]
    first = await pipeline.send(ACME, texts(customers, 5, "before "))
    await pipeline.wait_arrived(ACME, first)
    logins_before = _logins(pipeline)

    assert pipeline.genesys.revoke_tokens(ACME.client_id) >= 1
    second = await pipeline.send(ACME, texts(customers, 5, "after "))
    await pipeline.wait_arrived(ACME, second)

    assert sorted(pipeline.arrived_ids(ACME)) == sorted(first + second)  # each once
    for customer, seen in per_customer(pipeline, ACME).items():
        assert seen == [f"before {customer} #{n}" for n in range(5)] + [f"after {customer} #{n}" for n in range(5)]
    assert _logins(pipeline) == logins_before + 1  # one refresh, however many requests saw the 401
    unauthorized = [r for r in pipeline.genesys.requests.select() if r.status == 401]
    assert unauthorized, "the revoked token was never presented: the test did not test a refresh"


def _logins(pipeline: Pipeline) -> int:
    return sum(1 for r in pipeline.genesys.requests.select() if r.path == "/oauth/token" and r.status == 200)


async def test_a_429_storm_on_one_tenant_does_not_hold_up_another(pipeline: Pipeline) -> None:
    acme_customers = [f"1650555040{i}" for i in range(3)]
    globex_customers = [f"1650555050{i}" for i in range(3)]
    # Every Genesys call of acme's client is refused with 429 and Retry-After: 1 s.
    pipeline.genesys.set_faults("client", ACME.client_id, FaultPlan(throttle_rate=1.0, throttle_retry_after_s=1))
    acme = await pipeline.send(ACME, texts(acme_customers, 4))
    globex = await pipeline.send(GLOBEX, texts(globex_customers, 4))

    await pipeline.wait_arrived(GLOBEX, globex)
    throttled = [r for r in pipeline.genesys.requests.select() if r.status == 429]
    assert throttled, "acme was never throttled"
    assert pipeline.arrived_ids(ACME) == []  # still throttled while globex's messages all went through

    pipeline.genesys.set_faults("client", ACME.client_id, None)
    await pipeline.wait_arrived(ACME, acme)
    assert sorted(pipeline.arrived_ids(ACME)) == sorted(acme)  # each once
    for customer, seen in per_customer(pipeline, ACME).items():
        assert seen == [f"{customer} #{n}" for n in range(4)]  # caught up in order


def _downloads(pipeline: Pipeline) -> list[int]:
    return [r.status for r in pipeline.meta.requests.select() if r.path.startswith("/whatsapp_business/attachments")]


async def _fetched_bytes_sha(pipeline: Pipeline, tenant: BridgeTenant, wamid: str) -> str | None:
    [accepted] = [a for a in pipeline.arrived(tenant) if a.body["channel"]["messageId"] == wamid]

    async def fetched() -> bool:
        return any(f.done for f in pipeline.genesys.attachment_fetches() if f.genesys_message_id == accepted.genesys_id)

    await wait_for(fetched, 30, "Genesys to fetch the attachment", pipeline)
    [fetch] = [f for f in pipeline.genesys.attachment_fetches() if f.genesys_message_id == accepted.genesys_id]
    return fetch.sha256_hex


async def test_a_media_url_that_404s_once_is_fetched_again(pipeline: Pipeline) -> None:
    pipeline.meta.fault_next_media(ACME.phone_number_id, failing_downloads=1)
    [wamid] = await pipeline.send(ACME, [InboundSpec(kind="image", wa_id="16505550601", text="broken?")])
    await pipeline.wait_arrived(ACME, [wamid])

    assert _downloads(pipeline) == [404, 200]
    expected = hashlib.sha256(sample_for("image").data).hexdigest()
    assert await _fetched_bytes_sha(pipeline, ACME, wamid) == expected


async def test_a_sha256_mismatch_is_downloaded_again_or_told_to_the_agent(pipeline: Pipeline) -> None:
    customer = "16505550701"
    # Once damaged: downloaded again, the agent gets the right file.
    pipeline.meta.fault_next_media(ACME.phone_number_id, corrupt_downloads=1)
    [recovered] = await pipeline.send(ACME, [InboundSpec(kind="document", wa_id=customer, text="contract")])
    await pipeline.wait_arrived(ACME, [recovered])
    expected = hashlib.sha256(sample_for("document").data).hexdigest()
    assert await _fetched_bytes_sha(pipeline, ACME, recovered) == expected

    # Always damaged: nothing wrong is stored or shown; the agent reads a note instead of silence.
    pipeline.meta.fault_next_media(ACME.phone_number_id, corrupt_downloads=10)
    [noted] = await pipeline.send(ACME, [InboundSpec(kind="image", wa_id=customer, text="my receipt")])
    await pipeline.wait_arrived(ACME, [noted])
    [body] = [a.body for a in pipeline.arrived(ACME) if a.body["channel"]["messageId"] == noted]
    assert "content" not in body
    assert "cannot be shown here: the downloaded file was corrupt" in body["text"], body["text"]
    assert "Caption: my receipt" in body["text"]


async def test_a_worker_killed_under_load_delivers_everything_once_in_order_after_restart(pipeline: Pipeline) -> None:
    # 50 ms per Genesys call keeps requests in flight when the worker dies.
    pipeline.genesys.set_faults("integration", ACME.integration_id, FaultPlan(latency=Latency(ms=50)))
    customers = [f"165055508{i:02d}" for i in range(20)]
    specs = texts(customers, 15)
    worker = pipeline.processes["worker"]

    async def kill_midway() -> None:
        await wait_for(lambda: _at_least(pipeline, ACME, 60), 60, "deliveries to be under way", pipeline)
        worker.kill()
        worker.start()

    killer = asyncio.create_task(kill_midway())
    wamids: list[str] = []
    for start in range(0, len(specs), 20):
        wamids += await pipeline.send(ACME, specs[start : start + 20], batch=True)
    await killer
    await pipeline.wait_arrived(ACME, wamids, timeout_s=150)

    arrived = pipeline.arrived_ids(ACME)
    assert set(arrived) == set(wamids)  # nothing lost
    # Nothing shown twice, except a message whose POST was in flight when the worker died: Genesys
    # may have taken it, and it has no idempotency key. Such a resend is recorded, never silent.
    duplicates = {w for w in arrived if arrived.count(w) > 1}
    resent = {
        r["message_id"]
        for r in await pg_rows(pipeline.settings, "SELECT message_id FROM message_tracking WHERE delivery_attempts > 1")
    }
    assert duplicates <= resent, (duplicates, resent)
    for customer, seen in per_customer(pipeline, ACME).items():
        first_seen = list(dict.fromkeys(seen))
        assert first_seen == [f"{customer} #{n}" for n in range(15)]  # in the customer's order


async def _at_least(pipeline: Pipeline, tenant: BridgeTenant, count: int) -> bool:
    return len(pipeline.arrived(tenant)) >= count
