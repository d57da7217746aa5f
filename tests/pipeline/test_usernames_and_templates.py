"""WhatsApp as it is in 2027, through the real edge, bridge, broker, worker, S3, Redis, PostgreSQL
and both simulators: a customer known only by a username (BSUID) gets every reply, by
``recipient``; agent templates go as Meta documents them, checked against the tenant's templates
first; a list picker keeps the agent's prompt; a long text gets one final receipt."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.pipeline.conftest import ACME, Pipeline, wait_for
from wabridge.connectors import redis_client
from wabridge.simulators.agent import list_picker, notification, quick_replies
from wabridge.simulators.customer import InboundSpec
from wabridge.simulators.meta import SentMessage

BSUID = "US.13491208655302700001"


def sent_to(pipeline: Pipeline, customer: str) -> list[SentMessage]:
    return pipeline.sent_to(ACME, customer)


def receipts_for(pipeline: Pipeline, message_id: str) -> list[dict[str, Any]]:
    return pipeline.receipts(ACME, message_id)


async def failed_note(pipeline: Pipeline, message_id: str) -> str:
    async def failed() -> bool:
        return any(r["status"] == "Failed" for r in receipts_for(pipeline, message_id))

    await wait_for(failed, 60, f"a Failed receipt for {message_id}", pipeline)
    [receipt] = receipts_for(pipeline, message_id)
    assert receipt["isFinalReceipt"] is True
    return str(receipt["reasons"][0]["message"])


async def test_a_username_only_customer_gets_every_reply_by_recipient_in_order(pipeline: Pipeline) -> None:
    wrote = await pipeline.send(
        ACME, [InboundSpec(kind="text", user_id=BSUID, username="sheena.k", bsuid_only=True, text="hi")]
    )
    await pipeline.wait_arrived(ACME, wrote)
    [arrived] = [a.body for a in pipeline.arrived(ACME) if a.body["channel"]["messageId"] == wrote[0]]
    assert arrived["channel"]["from"]["id"] == BSUID and arrived["channel"]["from"]["idType"] == "Opaque"
    assert arrived["channel"]["metadata"]["customAttributes"]["waUsername"] == "sheena.k"

    agent = pipeline.genesys
    replies = [
        await agent.send_agent_message(ACME.integration_id, BSUID, text="Hello Sheena", to_id_type="Opaque"),
        await agent.send_agent_message(ACME.integration_id, BSUID, attachments=["image"], to_id_type="Opaque"),
        await agent.send_agent_message(
            ACME.integration_id, BSUID, text="Fixed?", content=quick_replies("Yes", "No"), to_id_type="Opaque"
        ),
        await agent.send_agent_message(
            ACME.integration_id, BSUID, content=notification("welcome", "en-US", "Sheena"), to_id_type="Opaque"
        ),
    ]

    async def all_sent() -> bool:
        return len(sent_to(pipeline, BSUID)) >= 4

    await wait_for(all_sent, 60, "the four replies at Meta", pipeline)
    sent = sent_to(pipeline, BSUID)
    assert [m.type for m in sent] == ["text", "image", "interactive", "template"]
    assert all(m.addressed_by == "recipient" and "to" not in m.body for m in sent)

    async def all_delivered() -> bool:
        return all(any(r["status"] == "Delivered" for r in receipts_for(pipeline, r.message_id)) for r in replies)

    await wait_for(all_delivered, 60, "a Delivered receipt for each reply", pipeline)
    for reply in replies:
        [receipt] = receipts_for(pipeline, reply.message_id)
        assert receipt["channel"]["to"] == {"id": BSUID, "idType": "Opaque"}

    # An authentication template needs a phone number: refused before Meta is asked.
    code = await agent.send_agent_message(
        ACME.integration_id, BSUID, content=notification("login_code", "en-US", "123456"), to_id_type="Opaque"
    )
    assert "phone number" in await failed_note(pipeline, code.message_id)
    assert len(sent_to(pipeline, BSUID)) == 4


async def test_a_genesys_template_goes_as_meta_documents_and_one_meta_would_refuse_is_not_sent(
    pipeline: Pipeline,
) -> None:
    customer = "16505550741"
    photo = pipeline.genesys.host_agent_media("image").content_attachment()
    shipped = notification(
        "5f1c_namespace@order_shipped",
        "en-US",
        "Ana",
        "#123",
        header_media=photo,
        buttons=(
            {"type": "Url", "index": 0, "text": "Track", "parameters": [{"text": "A1B2"}]},
            {"type": "QuickReply", "index": 1, "text": "Stop updates", "payload": "stop-updates"},
        ),
    )
    message = await pipeline.genesys.send_agent_message(ACME.integration_id, customer, content=shipped)

    async def sent() -> bool:
        return bool(sent_to(pipeline, customer))

    await wait_for(sent, 60, "the template at Meta", pipeline)
    [template] = [m.body["template"] for m in sent_to(pipeline, customer)]
    assert (template["name"], template["language"]) == ("order_shipped", {"code": "en_US"})
    header, body, url_button, quick_reply = template["components"]
    uploaded = pipeline.meta.media(header["parameters"][0]["image"]["id"])
    assert uploaded is not None and uploaded.owner_phone_number_id == ACME.phone_number_id
    assert [p["text"] for p in body["parameters"]] == ["Ana", "#123"]
    assert url_button == {
        "type": "button",
        "sub_type": "url",
        "index": 0,
        "parameters": [{"type": "text", "text": "A1B2"}],
    }
    assert quick_reply["parameters"] == [{"type": "payload", "payload": "stop-updates"}]

    async def delivered() -> bool:
        return any(r["status"] == "Delivered" for r in receipts_for(pipeline, message.message_id))

    await wait_for(delivered, 60, "the template's Delivered receipt", pipeline)

    unknown = await pipeline.genesys.send_agent_message(
        ACME.integration_id, customer, content=notification("5f1c_namespace@no_such_template", "en-US", "Ana")
    )
    assert "not one of this WhatsApp Business Account's templates" in await failed_note(pipeline, unknown.message_id)
    short = notification("5f1c_namespace@order_shipped", "en-US", "Ana", header_media=photo)
    wrong = await pipeline.genesys.send_agent_message(ACME.integration_id, customer, content=short)
    assert "takes 2 body parameters, the message has 1" in await failed_note(pipeline, wrong.message_id)
    assert len(sent_to(pipeline, customer)) == 1  # neither reached Meta


async def test_a_list_pickers_prompt_reaches_the_customer_and_a_long_text_gets_one_final_receipt(
    pipeline: Pipeline,
) -> None:
    customer = "16505550751"
    wrote = await pipeline.send(ACME, [InboundSpec(kind="text", wa_id=customer, text="hi")])
    await pipeline.wait_arrived(ACME, wrote)
    picker = list_picker({"Sizes": ["Small", "Medium"]}, title="Which size fits you best?", button_label="See sizes")
    await pipeline.genesys.send_agent_message(ACME.integration_id, customer, content=picker)
    long_text = "Here is the whole story. " * 360  # 9,000 characters: three WhatsApp parts
    assert 8_500 < len(long_text) < 10_000
    long = await pipeline.genesys.send_agent_message(ACME.integration_id, customer, text=long_text)

    async def all_delivered() -> bool:
        parts = [m for m in sent_to(pipeline, customer) if m.type == "text"]
        return len(parts) == 3 and all(m.delivered for m in parts)

    await wait_for(all_delivered, 60, "the three parts delivered", pipeline)
    [listed] = [m.body["interactive"] for m in sent_to(pipeline, customer) if m.type == "interactive"]
    assert listed["header"] == {"type": "text", "text": "Which size fits you best?"}
    assert listed["action"]["button"] == "See sizes"

    async def told() -> bool:
        return bool(receipts_for(pipeline, long.message_id))

    await wait_for(told, 60, "the long message's receipt", pipeline)
    await asyncio.sleep(2)  # the other parts' delivered and read statuses have come and gone by now
    [receipt] = receipts_for(pipeline, long.message_id)
    assert receipt["status"] == "Delivered" and receipt["isFinalReceipt"] is True


def arrived_from(pipeline: Pipeline, wamids: list[str]) -> list[Any]:
    """What reached Genesys of ``wamids``, in the order Genesys got them."""
    return [a for a in pipeline.arrived(ACME) if a.body["channel"]["messageId"] in wamids]


async def test_a_customer_who_adopts_a_username_or_gives_a_phone_stays_one_conversation_in_order(
    pipeline: Pipeline,
) -> None:
    phone, bsuid, new_bsuid = "16505550761", "US.13491208655302700761", "US.13491208655302709999"
    # Known by phone; Meta starts adding a BSUID; the customer adopts a username (phone gone from
    # webhooks); Meta changes their BSUID.
    specs = [
        InboundSpec(kind="text", wa_id=phone, text="one"),
        InboundSpec(kind="text", wa_id=phone, user_id=bsuid, text="two"),
        InboundSpec(kind="text", user_id=bsuid, username="sheena.k", bsuid_only=True, text="three"),
        InboundSpec(kind="system_user_id_change", user_id=bsuid, new_user_id=new_bsuid, bsuid_only=True),
        InboundSpec(kind="text", user_id=new_bsuid, bsuid_only=True, text="four"),
    ]
    wamids = []
    for spec in specs:  # one webhook after the other, as the customer wrote them
        wamids += await pipeline.send(ACME, [spec])
    texts = [w for w, s in zip(wamids, specs, strict=True) if s.kind == "text"]
    await pipeline.wait_arrived(ACME, texts)
    arrived = arrived_from(pipeline, texts)
    assert [a.body["channel"]["messageId"] for a in arrived] == texts  # in order
    assert {a.body["channel"]["from"]["id"] for a in arrived} == {phone}  # one customer to Genesys
    assert len({a.conversation_id for a in arrived}) == 1  # one conversation

    reply = await pipeline.genesys.send_agent_message(ACME.integration_id, phone, text="Got all four")

    async def delivered() -> bool:
        return any(r["status"] == "Delivered" for r in receipts_for(pipeline, reply.message_id))

    await wait_for(delivered, 60, "the reply delivered", pipeline)
    assert [m.addressed_by for m in sent_to(pipeline, phone)] == ["to"]  # the phone, still known

    # The reverse: first known by username only, then Meta shares their phone number.
    first, later_phone = "US.13491208655302700762", "16505550762"
    reverse = [
        InboundSpec(kind="text", user_id=first, username="ana", bsuid_only=True, text="hello"),
        InboundSpec(kind="text", wa_id=later_phone, user_id=first, text="again"),
        InboundSpec(kind="text", wa_id=later_phone, text="and again"),
    ]
    sent = []
    for spec in reverse:
        sent += await pipeline.send(ACME, [spec])
    await pipeline.wait_arrived(ACME, sent)
    arrived = arrived_from(pipeline, sent)
    assert [a.body["channel"]["messageId"] for a in arrived] == sent
    assert {(a.body["channel"]["from"]["id"], a.body["channel"]["from"]["idType"]) for a in arrived} == {
        (first, "Opaque")
    }
    assert len({a.conversation_id for a in arrived}) == 1
    answer = await pipeline.genesys.send_agent_message(ACME.integration_id, first, text="Hi Ana", to_id_type="Opaque")

    async def answered() -> bool:
        return any(r["status"] == "Delivered" for r in receipts_for(pipeline, answer.message_id))

    await wait_for(answered, 60, "the answer delivered", pipeline)
    assert [
        (m.to, m.addressed_by)
        for m in pipeline.meta.sent_messages(ACME.phone_number_id)
        if m.body.get("text", {}).get("body") == "Hi Ana"
    ] == [(later_phone, "to")]


async def test_a_template_paused_at_meta_is_refused_before_sending_once_metas_webhook_says_so(
    pipeline: Pipeline,
) -> None:
    customer = "16505550771"
    reminder = notification("appointment_reminder", "en-US", "Sheena", "Tuesday 10:00")
    first = await pipeline.genesys.send_agent_message(ACME.integration_id, customer, content=reminder)

    async def delivered() -> bool:
        return any(r["status"] == "Delivered" for r in receipts_for(pipeline, first.message_id))

    await wait_for(delivered, 60, "the template delivered", pipeline)
    cached = pipeline.settings.redis_key(f"tenant:{ACME.id}:templates:{ACME.waba_id}")
    redis = redis_client.client(pipeline.settings)
    try:
        assert await redis.exists(cached)  # the list, read from Meta for the first send, is kept

        # Meta pauses the template and says so on the WABA's webhook (no phone number in it).
        await pipeline.meta.change_template(ACME.waba_id, "appointment_reminder", "en_US", status="PAUSED")

        async def forgotten() -> bool:
            return not await redis.exists(cached)

        await wait_for(forgotten, 60, "the template webhook to reach the worker", pipeline)
    finally:
        await redis.aclose()
    second = await pipeline.genesys.send_agent_message(ACME.integration_id, customer, content=reminder)
    assert "is paused at Meta" in await failed_note(pipeline, second.message_id)
    assert len(sent_to(pipeline, customer)) == 1  # not sent: Meta would refuse it (132015)
