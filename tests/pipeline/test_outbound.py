"""Agents answer: an agent's text goes from the Genesys simulator through the real edge, bridge,
broker and worker to the Meta simulator, once, in the order the agent wrote, split at WhatsApp's
limit; every part is tracked with its wamid and Genesys id, and a webhook Genesys sends twice is
sent once. Meta's statuses come back to Genesys as receipts; outside the customer's 24-hour window
nothing is sent and Genesys gets a Failed receipt saying why."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from tests.pipeline.conftest import ACME, GLOBEX, BridgeTenant, Pipeline, _async, pg_rows, wait_for
from wabridge.simulators.agent import build_agent_text, sign_outbound
from wabridge.simulators.customer import InboundSpec


def sent_texts(pipeline: Pipeline, phone_number_id: str, customer: str) -> list[str]:
    return [
        m.body["text"]["body"]
        for m in pipeline.meta.sent_messages(phone_number_id)
        if m.to == customer and m.type == "text"
    ]


async def test_agent_texts_reach_the_customer_once_in_order_and_split_at_the_limit(pipeline: Pipeline) -> None:
    customer, other = "16505550601", "16505550602"
    # The customers write first: their conversations exist and their 24-hour windows are open.
    opened = await pipeline.send(ACME, [InboundSpec(kind="text", wa_id=c, text="hi") for c in (customer, other)])
    globex = await pipeline.send(GLOBEX, [InboundSpec(kind="text", wa_id="16505550603", text="hi")])
    await pipeline.wait_arrived(ACME, opened)
    await pipeline.wait_arrived(GLOBEX, globex)

    long_text = ("Here is everything about your order. " * 60 + "\n\n") * 3  # ~6,800 characters
    agent_ids = []
    for text in ("Hello!", "How can I help?", long_text):
        delivery = await pipeline.genesys.send_agent_message(ACME.integration_id, customer, text=text)
        agent_ids.append(delivery.message_id)
    await pipeline.genesys.send_agent_message(ACME.integration_id, other, text="And you?")
    await pipeline.genesys.send_agent_message(GLOBEX.integration_id, "16505550603", text="Globex here")

    async def all_sent() -> bool:
        return len(sent_texts(pipeline, ACME.phone_number_id, customer)) >= 5 and bool(
            sent_texts(pipeline, GLOBEX.phone_number_id, "16505550603")
        )

    await wait_for(all_sent, 60, "the agents' texts at Meta", pipeline)
    texts = sent_texts(pipeline, ACME.phone_number_id, customer)
    assert texts[:2] == ["Hello!", "How can I help?"]
    # The long one in parts within the limit, cut at its paragraph breaks, in order, nothing lost.
    assert len(texts) == 5 and all(len(t) <= 4096 for t in texts[2:])
    assert [t.strip() for t in texts[2:]] == [p.strip() for p in long_text.split("\n\n") if p]
    assert sent_texts(pipeline, ACME.phone_number_id, other) == ["And you?"]
    assert sent_texts(pipeline, GLOBEX.phone_number_id, "16505550603") == ["Globex here"]

    # Each part is tracked under the wamid Meta gave it, linked to the agent's Genesys message id.
    # The worker writes that once Meta has answered, so the last part's row may follow its send.
    wamids = {m.wamid for m in pipeline.meta.sent_messages(ACME.phone_number_id) if m.to == customer}
    rows: list[Any] = []

    async def all_tracked() -> bool:
        rows[:] = await pg_rows(
            pipeline.settings,
            "SELECT message_id, genesys_message_id, status FROM message_tracking "
            "WHERE direction = 'outbound' AND tenant_id = 'acme' AND customer_id = $1",
            customer,
        )
        return {r["message_id"] for r in rows} == wamids

    await wait_for(all_tracked, 10, "every part tracked under its wamid", pipeline)
    assert sorted(r["genesys_message_id"] for r in rows) == sorted([*agent_ids[:2], *[agent_ids[2]] * 3])


async def test_a_webhook_genesys_sends_twice_is_sent_to_the_customer_once(pipeline: Pipeline) -> None:
    customer = "16505550611"
    opened = await pipeline.send(ACME, [InboundSpec(kind="text", wa_id=customer, text="hi")])
    await pipeline.wait_arrived(ACME, opened)
    body = orjson.dumps(build_agent_text(integration_id=ACME.integration_id, to_id=customer, text="Only once"))
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign_outbound(ACME.webhook_secret, body)}
    url = f"http://127.0.0.1:{pipeline.settings.webhook_port}/webhook/genesys"
    for _ in range(3):  # Genesys's retries after a timeout carry the same message
        async with pipeline.http.post(url, data=body, headers=headers) as response:
            assert response.status == 200
    then = await pipeline.genesys.send_agent_message(ACME.integration_id, customer, text="Then this")

    async def second_sent() -> bool:
        return "Then this" in sent_texts(pipeline, ACME.phone_number_id, customer)

    await wait_for(second_sent, 60, "the agent's second text at Meta", pipeline)
    assert sent_texts(pipeline, ACME.phone_number_id, customer) == ["Only once", "Then this"]
    assert then.delivered


def receipts(pipeline: Pipeline, tenant: BridgeTenant, message_id: str) -> list[dict[str, Any]]:
    return [
        a.body
        for a in pipeline.genesys.accepted(tenant.integration_id)
        if a.kind == "receipt" and a.body["id"] == message_id
    ]


async def test_meta_delivering_an_agent_message_reaches_genesys_as_a_delivered_receipt(pipeline: Pipeline) -> None:
    customer = "16505550621"
    opened = await pipeline.send(ACME, [InboundSpec(kind="text", wa_id=customer, text="hi")])
    await pipeline.wait_arrived(ACME, opened)
    agent = await pipeline.genesys.send_agent_message(ACME.integration_id, customer, text="Your order shipped")

    async def delivered() -> bool:
        return any(r["status"] == "Delivered" for r in receipts(pipeline, ACME, agent.message_id))

    await wait_for(delivered, 60, "a Delivered receipt at Genesys", pipeline)
    [receipt] = [r for r in receipts(pipeline, ACME, agent.message_id) if r["status"] == "Delivered"]
    assert receipt["channel"]["to"] == {"id": customer, "idType": "Phone"} and receipt["direction"] == "Outbound"
    [sent] = [m for m in pipeline.meta.sent_messages(ACME.phone_number_id) if m.to == customer]
    rows = await pg_rows(
        pipeline.settings,
        "SELECT status, genesys_message_id FROM message_tracking WHERE direction = 'outbound' AND message_id = $1",
        sent.wamid,
    )
    assert [(r["status"], r["genesys_message_id"]) for r in rows] in (
        [("delivered", agent.message_id)],
        [("read", agent.message_id)],
    )


async def test_outside_the_24_hour_window_nothing_is_sent_and_the_agent_reads_why(pipeline: Pipeline) -> None:
    stale, stranger = "16505550631", "16505550632"
    # The customer last wrote 25 hours ago (Meta's timestamp of their message).
    old = await pipeline.send(
        ACME, [InboundSpec(kind="text", wa_id=stale, text="hi", timestamp=int(time.time()) - 25 * 3600)]
    )
    await pipeline.wait_arrived(ACME, old)
    late = await pipeline.genesys.send_agent_message(ACME.integration_id, stale, text="Sorry for the wait")
    never = await pipeline.genesys.send_agent_message(ACME.integration_id, stranger, text="Hello?")

    async def both_failed() -> bool:
        return all(any(r["status"] == "Failed" for r in receipts(pipeline, ACME, m.message_id)) for m in (late, never))

    await wait_for(both_failed, 60, "Failed receipts at Genesys", pipeline)
    for agent in (late, never):
        [failed] = [r for r in receipts(pipeline, ACME, agent.message_id) if r["status"] == "Failed"]
        [reason] = failed["reasons"]
        assert reason["code"] == "MessageExpired" and "24-hour" in reason["message"]
    assert [m for m in pipeline.meta.sent_messages(ACME.phone_number_id) if m.to in (stale, stranger)] == []


async def test_meta_failing_a_send_reaches_genesys_as_a_failed_receipt_with_the_reason(pipeline: Pipeline) -> None:
    customer = "16505550641"
    opened = await pipeline.send(ACME, [InboundSpec(kind="text", wa_id=customer, text="hi")])
    await pipeline.wait_arrived(ACME, opened)
    # Meta's clock says the window has closed (ours does not): it accepts the send, then fails it.
    pipeline.meta.update(service_window_s=0.001)
    agent = await pipeline.genesys.send_agent_message(ACME.integration_id, customer, text="Are you there?")

    async def failed() -> bool:
        return any(r["status"] == "Failed" for r in receipts(pipeline, ACME, agent.message_id))

    await wait_for(failed, 60, "a Failed receipt at Genesys", pipeline)
    [receipt] = [r for r in receipts(pipeline, ACME, agent.message_id) if r["status"] == "Failed"]
    assert [reason["code"] for reason in receipt["reasons"]] == ["MessageExpired"]
    assert "131047" in receipt["reasons"][0]["message"]
    [sent] = [m for m in pipeline.meta.sent_messages(ACME.phone_number_id) if m.to == customer]
    rows = await pg_rows(
        pipeline.settings,
        "SELECT status FROM message_tracking WHERE direction = 'outbound' AND message_id = $1",
        sent.wamid,
    )
    assert [r["status"] for r in rows] == ["failed"]


async def test_a_worker_killed_mid_stream_sends_every_agent_text_in_order_and_counts_any_resend(
    pipeline: Pipeline,
) -> None:
    customers = [f"165055506{i:02d}" for i in range(50, 60)]
    opened = await pipeline.send(ACME, [InboundSpec(kind="text", wa_id=c, text="hi") for c in customers], batch=True)
    await pipeline.wait_arrived(ACME, opened)
    worker = pipeline.processes["worker"]

    def at_meta() -> list[Any]:
        return [m for m in pipeline.meta.sent_messages(ACME.phone_number_id) if m.to in customers]

    async def kill_midway() -> None:
        await wait_for(lambda: _async(len(at_meta()) >= 30), 60, "sends under way", pipeline)
        worker.kill()
        worker.start()

    killer = asyncio.create_task(kill_midway())
    for n in range(10):
        for customer in customers:
            await pipeline.genesys.send_agent_message(ACME.integration_id, customer, text=f"{customer} #{n}")
    await killer

    async def all_sent() -> bool:
        return {m.body["text"]["body"] for m in at_meta()} >= {f"{c} #{n}" for c in customers for n in range(10)}

    await wait_for(all_sent, 150, "every agent text at Meta", pipeline)
    texts = [m.body["text"]["body"] for m in at_meta()]
    duplicates = {t for t in texts if texts.count(t) > 1}
    # A duplicate only where a send was in flight when the worker died (recorded, never silent).
    resent = await pg_rows(
        pipeline.settings, "SELECT count(*) AS n FROM outbound_sends WHERE tenant_id = 'acme' AND attempts > 1"
    )
    assert len(duplicates) <= resent[0]["n"], (duplicates, resent)
    for customer in customers:
        first_seen = list(dict.fromkeys(t for t in texts if t.startswith(f"{customer} #")))
        assert first_seen == [f"{customer} #{n}" for n in range(10)], customer


async def test_a_refusal_storm_on_one_number_holds_only_its_sends(pipeline: Pipeline) -> None:
    acme_customers, globex_customers = ["16505550661", "16505550662", "16505550663"], ["16505550671", "16505550672"]
    opened = await pipeline.send(ACME, [InboundSpec(kind="text", wa_id=c, text="hi") for c in acme_customers])
    globex_opened = await pipeline.send(
        GLOBEX, [InboundSpec(kind="text", wa_id=c, text="hi") for c in globex_customers]
    )
    await pipeline.wait_arrived(ACME, opened)
    await pipeline.wait_arrived(GLOBEX, globex_opened)
    # acme's number: throughput exceeded, then Meta's own trouble, then this customer's pair rate.
    pipeline.meta.fault_next_sends(ACME.phone_number_id, 400, 130429, count=9, retry_after="1")
    pipeline.meta.fault_next_sends(ACME.phone_number_id, 503, 131000, count=3, retry_after="1")
    pipeline.meta.fault_next_sends(ACME.phone_number_id, 400, 131056, count=3, retry_after="1")

    for n in range(5):
        for customer in acme_customers:
            await pipeline.genesys.send_agent_message(ACME.integration_id, customer, text=f"{customer} #{n}")
    for n in range(5):
        for customer in globex_customers:
            await pipeline.genesys.send_agent_message(GLOBEX.integration_id, customer, text=f"{customer} #{n}")

    async def globex_done() -> bool:
        return all(len(sent_texts(pipeline, GLOBEX.phone_number_id, c)) == 5 for c in globex_customers)

    await wait_for(globex_done, 60, "globex's texts at Meta", pipeline)
    # Fifteen refusals, at least one second each, shared by three lanes: acme is still retrying.
    assert sum(len(sent_texts(pipeline, ACME.phone_number_id, c)) for c in acme_customers) < 15

    async def acme_done() -> bool:
        return all(len(sent_texts(pipeline, ACME.phone_number_id, c)) >= 5 for c in acme_customers)

    await wait_for(acme_done, 120, "acme's texts at Meta after the storm", pipeline)
    for customer in acme_customers:  # each once (a refused send was not taken), in the agent's order
        assert sent_texts(pipeline, ACME.phone_number_id, customer) == [f"{customer} #{n}" for n in range(5)]
    failed = await pg_rows(pipeline.settings, "SELECT count(*) AS n FROM message_tracking WHERE status = 'failed'")
    assert failed[0]["n"] == 0


async def test_the_agent_typing_shows_the_customer_a_typing_indicator_at_most_every_few_seconds(
    pipeline: Pipeline,
) -> None:
    customer = "16505550681"
    first, last = await pipeline.send(
        ACME, [InboundSpec(kind="text", wa_id=customer, text=t) for t in ("hello", "anyone?")]
    )
    await pipeline.wait_arrived(ACME, [first, last])
    for _ in range(3):  # Genesys sends one each time the agent starts typing again
        await pipeline.genesys.send_agent_message(ACME.integration_id, customer, typing=True)
    reply = await pipeline.genesys.send_agent_message(ACME.integration_id, customer, text="Here!")

    async def replied() -> bool:
        return sent_texts(pipeline, ACME.phone_number_id, customer) == ["Here!"]

    await wait_for(replied, 60, "the agent's reply at Meta", pipeline)
    marks = [m for m in pipeline.meta.read_marks(ACME.phone_number_id) if m["message_id"] in (first, last)]
    # The customer's latest message, marked read with the indicator, once for the three in a row.
    assert [(m["message_id"], m["typing_indicator"]) for m in marks] == [(last, {"type": "text"})]
    assert reply.delivered
