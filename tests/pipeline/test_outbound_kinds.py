"""Every kind of agent message reaches the customer in a form WhatsApp shows, through the real edge,
bridge, broker, worker, S3 and both simulators: attachments (fetched from Genesys, kept in
media-outbound, uploaded to Meta, sent by id), quick replies and list pickers (interactive buttons
or lists within WhatsApp's limits, numbered text beyond), templates (also outside the 24-hour
window, never to a customer who opted out). The customer's answers come back with their context:
a tapped button as a structured response to the agent's message, a reply or reaction quoting what
it refers to, a chat opened as such."""

from __future__ import annotations

import time
from typing import Any

from tests.pipeline.conftest import ACME, BridgeTenant, Pipeline, wait_for
from wabridge.connectors import s3
from wabridge.simulators.agent import list_picker, notification, quick_replies
from wabridge.simulators.customer import InboundSpec
from wabridge.simulators.meta import SentMessage


def sent_to(pipeline: Pipeline, customer: str) -> list[SentMessage]:
    return pipeline.sent_to(ACME, customer)


def receipts(pipeline: Pipeline, tenant: BridgeTenant, message_id: str, status: str) -> list[dict[str, Any]]:
    return pipeline.receipts(tenant, message_id, status)


async def open_window(pipeline: Pipeline, customer: str) -> None:
    wamids = await pipeline.send(ACME, [InboundSpec(kind="text", wa_id=customer, text="hi")])
    await pipeline.wait_arrived(ACME, wamids)


async def test_attachments_are_uploaded_to_meta_kept_in_media_outbound_and_sent_in_order(pipeline: Pipeline) -> None:
    customer = "16505550701"
    await open_window(pipeline, customer)
    photo = await pipeline.genesys.send_agent_message(
        ACME.integration_id, customer, text="Here is the damaged part", attachments=["image"]
    )
    await pipeline.genesys.send_agent_message(
        ACME.integration_id, customer, text="And the paperwork", attachments=["document", "audio"]
    )

    async def all_sent() -> bool:
        return len(sent_to(pipeline, customer)) >= 4

    await wait_for(all_sent, 60, "the agent's attachments at Meta", pipeline)
    sent = sent_to(pipeline, customer)
    assert [m.type for m in sent] == ["image", "text", "document", "audio"]
    # One attachment and a short text: the text is the photo's caption.
    assert sent[0].body["image"]["caption"] == "Here is the damaged part"
    assert sent[1].body["text"]["body"] == "And the paperwork"
    for message in (sent[0], sent[2], sent[3]):
        media_id = message.body[message.type]["id"]  # sent by the id Meta's upload gave
        stored = pipeline.meta.media(media_id)
        assert stored is not None and stored.owner_phone_number_id == ACME.phone_number_id and stored.data
    assert sent[2].body["document"]["filename"].endswith(".pdf")

    # Each file is kept at media-outbound/{tenant}/{type}/{yyyy-MM-dd}/{uuid}.{ext}.
    async with s3.client(pipeline.settings) as client:
        keys = [
            obj.object_name
            async for obj in client.list_objects(
                pipeline.settings.s3_bucket_media_outbound, prefix="acme/", recursive=True
            )
        ]
    assert sorted(k.split("/")[1] for k in keys if k) == ["audio", "document", "image"]
    assert all(len(k.split("/")[2]) == 10 and len(k.split("/")[3].split(".")[0]) == 32 for k in keys if k)

    async def delivered() -> bool:
        return bool(receipts(pipeline, ACME, photo.message_id, "Delivered"))

    await wait_for(delivered, 60, "a Delivered receipt for the photo", pipeline)


async def test_quick_replies_become_buttons_and_the_customers_tap_answers_the_agents_message(
    pipeline: Pipeline,
) -> None:
    customer = "16505550711"
    await open_window(pipeline, customer)
    asked = await pipeline.genesys.send_agent_message(
        ACME.integration_id, customer, text="Did that fix it?", content=quick_replies("Yes", "No", "Not sure")
    )
    await pipeline.genesys.send_agent_message(
        ACME.integration_id,
        customer,
        text="Which size?",
        content=list_picker({"Shirts": ["Small", "Medium"], "Shoes": ["40", "41", "42"]}),
    )
    many = [f"Option {n}" for n in range(1, 13)]
    await pipeline.genesys.send_agent_message(
        ACME.integration_id, customer, text="Pick one", content=quick_replies(*many)
    )
    await pipeline.genesys.send_agent_message(
        ACME.integration_id, customer, text="Which day?", content=quick_replies("Monday", "Tuesday", "Wed", "Thu")
    )

    async def all_sent() -> bool:
        return len(sent_to(pipeline, customer)) >= 4

    await wait_for(all_sent, 60, "the agent's choices at Meta", pipeline)
    buttons, sizes, numbered, days = sent_to(pipeline, customer)
    assert buttons.type == "interactive" and buttons.body["interactive"]["type"] == "button"
    assert buttons.body["interactive"]["body"]["text"] == "Did that fix it?"
    assert [b["reply"]["title"] for b in buttons.body["interactive"]["action"]["buttons"]] == ["Yes", "No", "Not sure"]
    assert sizes.body["interactive"]["type"] == "list"
    sections = sizes.body["interactive"]["action"]["sections"]
    assert [(s["title"], [r["title"] for r in s["rows"]]) for s in sections] == [
        ("Shirts", ["Small", "Medium"]),
        ("Shoes", ["40", "41", "42"]),
    ]
    # Twelve choices are more than a list holds: numbered text, nothing dropped.
    assert numbered.type == "text" and all(f"{n}. Option {n}\n" in numbered.body["text"]["body"] for n in range(1, 13))
    # Four quick replies are more than three buttons: a list.
    assert days.body["interactive"]["type"] == "list"

    # The customer taps "No": Genesys gets a structured response to the agent's question.
    tapped = await pipeline.send(
        ACME,
        [InboundSpec(kind="button_reply", wa_id=customer, reply_to=buttons.wamid, choice_id="no", choice_title="No")],
    )
    await pipeline.wait_arrived(ACME, tapped)
    [answer] = [a.body for a in pipeline.arrived(ACME) if a.body["channel"].get("messageId") == tapped[0]]
    assert answer["originatingMessageId"] == asked.message_id
    assert answer["buttonResponse"]["payload"] == "no" and answer["buttonResponse"]["text"] == "No"


async def test_templates_go_outside_the_window_and_marketing_ones_never_to_a_customer_who_opted_out(
    pipeline: Pipeline,
) -> None:
    quiet, stopped = "16505550721", "16505550722"
    # Both customers last wrote 25 hours ago (Meta's timestamp): free text can no longer be sent.
    old = int(time.time()) - 25 * 3600
    wrote = await pipeline.send(
        ACME, [InboundSpec(kind="text", wa_id=c, text="hi", timestamp=old) for c in (quiet, stopped)]
    )
    await pipeline.wait_arrived(ACME, wrote)

    reminder = notification("appointment_reminder", "en-US", "Sheena", "Tuesday 10:00", text="Hi Sheena, see you")
    template = await pipeline.genesys.send_agent_message(ACME.integration_id, quiet, content=reminder)

    async def template_sent() -> bool:
        return any(m.type == "template" for m in sent_to(pipeline, quiet))

    await wait_for(template_sent, 60, "the template at Meta", pipeline)
    [sent] = sent_to(pipeline, quiet)
    assert sent.body["template"] == {
        "name": "appointment_reminder",
        "language": {"code": "en_US"},
        "components": [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Sheena"}, {"type": "text", "text": "Tuesday 10:00"}],
            }
        ],
    }

    async def template_delivered() -> bool:
        return bool(receipts(pipeline, ACME, template.message_id, "Delivered"))

    await wait_for(template_delivered, 60, "the template's Delivered receipt", pipeline)

    # A customer who stops marketing messages: the next marketing template is not sent (the agent
    # reads why); a utility template still goes, as Meta allows.
    await pipeline.meta.send_user_preference(ACME.phone_number_id, stopped, "stop")
    sale = notification("spring_sale", "en-US", "Sheena")

    async def refused_after_opt_out() -> bool:
        agent = await pipeline.genesys.send_agent_message(ACME.integration_id, stopped, content=sale)
        await wait_for(lambda: _has_failed(pipeline, agent.message_id), 30, "a receipt for the template", pipeline)
        return receipts(pipeline, ACME, agent.message_id, "Failed")[0]["reasons"][0]["code"] == "RecipientOptedOut"

    # The preference webhook and the agent's template race through different topics: the first
    # template may reach Meta, which refuses it with 131050 (also RecipientOptedOut); later ones
    # are refused before sending.
    await wait_for(refused_after_opt_out, 60, "marketing templates refused after the opt-out", pipeline)
    before = len(sent_to(pipeline, stopped))
    last = await pipeline.genesys.send_agent_message(ACME.integration_id, stopped, content=sale)
    await wait_for(lambda: _has_failed(pipeline, last.message_id), 30, "a Failed receipt", pipeline)
    [failed] = receipts(pipeline, ACME, last.message_id, "Failed")
    assert failed["reasons"][0]["code"] == "RecipientOptedOut" and "opted out" in failed["reasons"][0]["message"]
    assert len(sent_to(pipeline, stopped)) == before  # refused before reaching Meta

    utility = await pipeline.genesys.send_agent_message(ACME.integration_id, stopped, content=reminder)

    async def utility_delivered() -> bool:
        return bool(receipts(pipeline, ACME, utility.message_id, "Delivered"))

    await wait_for(utility_delivered, 60, "the utility template delivered to the opted-out customer", pipeline)


async def _has_failed(pipeline: Pipeline, message_id: str) -> bool:
    return bool(receipts(pipeline, ACME, message_id, "Failed"))


async def test_replies_and_reactions_show_what_they_refer_to_and_unshowable_content_is_refused(
    pipeline: Pipeline,
) -> None:
    customer = "16505550731"
    first = await pipeline.send(ACME, [InboundSpec(kind="text", wa_id=customer, text="My parcel never arrived")])
    await pipeline.wait_arrived(ACME, first)
    await pipeline.genesys.send_agent_message(ACME.integration_id, customer, text="Sorry! It ships today.")

    async def answered() -> bool:
        return bool(sent_to(pipeline, customer))

    await wait_for(answered, 60, "the agent's answer at Meta", pipeline)
    [agent_wamid] = [m.wamid for m in sent_to(pipeline, customer)]
    later = await pipeline.send(
        ACME,
        [
            InboundSpec(kind="text", wa_id=customer, text="Thanks!", reply_to=agent_wamid),
            InboundSpec(kind="reaction", wa_id=customer, reacted_message_id=agent_wamid),
            InboundSpec(kind="text", wa_id=customer, text="As I said", reply_to=first[0]),
            InboundSpec(kind="request_welcome", wa_id="16505550732"),
        ],
    )
    await pipeline.wait_arrived(ACME, later)
    texts = {a.body["channel"]["messageId"]: a.body.get("text", "") for a in pipeline.arrived(ACME)}
    assert texts[later[0]].startswith('[In reply to your message "Sorry! It ships today."]')
    assert texts[later[1]] == 'Reacted \U0001f44d to your message "Sorry! It ships today."'
    assert texts[later[2]].startswith('[In reply to their earlier message "My parcel never arrived"]')
    assert "opened the chat" in texts[later[3]]

    carousel = [{"contentType": "Carousel", "carousel": {"cards": [{"title": "A"}]}}]
    refused = await pipeline.genesys.send_agent_message(ACME.integration_id, customer, text="Look", content=carousel)
    await wait_for(lambda: _has_failed(pipeline, refused.message_id), 60, "a Failed receipt", pipeline)
    [failed] = receipts(pipeline, ACME, refused.message_id, "Failed")
    assert failed["reasons"][0]["code"] == "UnsupportedMessage" and "Carousel" in failed["reasons"][0]["message"]
    assert len(sent_to(pipeline, customer)) == 1
