"""End to end: customers on WhatsApp → edge → RabbitMQ → bridge → Kafka → workers → Genesys.

Everything is real (processes, broker, S3, Redis, PostgreSQL, both simulators); the Genesys
simulator validates every body against the reference and fetches every attachment URL.
"""

from __future__ import annotations

import hashlib

from tests.integration.edge_fixtures import read_topic
from tests.pipeline.conftest import ACME, GLOBEX, Pipeline, pg_rows, wait_for
from wabridge.schemas.genesys import OutboundEvent, OutboundKind
from wabridge.simulators.customer import MEDIA_KINDS, InboundSpec
from wabridge.simulators.media_samples import sample_for
from wabridge.streams.topics import AGENT_MESSAGES

CUSTOMER = "16505550101"


def every_type(reacted: str) -> list[InboundSpec]:
    def spec(kind: str, **fields: object) -> InboundSpec:
        return InboundSpec(kind=kind, wa_id=CUSTOMER, name="Ada Lovelace", **fields)  # type: ignore[arg-type]

    return [
        spec("text", text="Hello, my order has not arrived"),
        spec("image", text="the parcel"),
        spec("video"),
        spec("audio"),
        spec("voice"),
        spec("document", text="invoice attached"),
        spec("sticker"),
        spec("location"),
        spec("contacts"),
        spec("button_reply"),
        spec("list_reply"),
        spec("flow_reply"),
        spec("template_button"),
        spec("reaction", reacted_message_id=reacted),
        spec("unreaction", reacted_message_id=reacted),
        spec("order", text="please deliver before noon"),
        spec("text", text="as I said", reply_to=reacted),
        spec("text", text="look at this", forwarded=True),
        spec("text", text="from your ad", ad_referral=True),
        spec("unsupported"),
    ]


async def test_every_message_type_reaches_the_agent_in_order(pipeline: Pipeline) -> None:
    [first] = await pipeline.send(ACME, [InboundSpec(kind="text", wa_id=CUSTOMER, text="hi")])
    specs = every_type(reacted=first)
    wamids = [first, *await pipeline.send(ACME, specs)]
    await pipeline.wait_arrived(ACME, wamids, timeout_s=120)

    arrived = pipeline.arrived(ACME)
    assert [a.body["channel"]["messageId"] for a in arrived] == wamids  # once each, in the customer's order
    by_id = {a.body["channel"]["messageId"]: a.body for a in arrived}
    for wamid, spec in zip(wamids[1:], specs, strict=True):
        body = by_id[wamid]
        assert body["channel"]["from"] == {
            "id": CUSTOMER,
            "idType": "Phone",
            "nickname": "Ada Lovelace",
            "firstName": "Ada",
            "lastName": "Lovelace",
        }
        attributes = body["channel"]["metadata"]["customAttributes"]
        assert attributes["tenantId"] == ACME.id and attributes["waMessageId"] == wamid
        if spec.kind in MEDIA_KINDS:
            [item] = body["content"]
            assert item["attachment"]["url"].startswith("http"), body
        else:
            assert body.get("text"), body  # rendered so an agent understands it

    # Genesys fetched every attachment from its presigned URL and got the customer's exact bytes.
    media_specs = [(w, s) for w, s in zip(wamids[1:], specs, strict=True) if s.kind in MEDIA_KINDS]

    async def all_fetched() -> bool:
        fetches = pipeline.genesys.attachment_fetches(ACME.integration_id)
        return len(fetches) == len(media_specs) and all(f.done for f in fetches)

    await wait_for(all_fetched, 30, "Genesys to fetch every attachment", pipeline)
    fetched = {f.genesys_message_id: f for f in pipeline.genesys.attachment_fetches(ACME.integration_id)}
    genesys_ids = {a.body["channel"]["messageId"]: a.genesys_id for a in arrived}
    for wamid, spec in media_specs:
        fetch = fetched[genesys_ids[wamid]]
        assert fetch.reachable and fetch.error is None, fetch
        assert fetch.sha256_hex == hashlib.sha256(sample_for(spec.kind).data).hexdigest(), spec.kind

    # Tracking: every message sent to Genesys with its Genesys id, then delivered by Genesys's receipt.
    async def all_delivered() -> bool:
        rows = await pg_rows(
            pipeline.settings,
            "SELECT message_id, status, genesys_message_id FROM message_tracking WHERE direction = 'inbound'",
        )
        return {r["message_id"]: (r["status"], r["genesys_message_id"]) for r in rows} == {
            w: ("delivered", genesys_ids[w]) for w in wamids
        }

    await wait_for(all_delivered, 30, "every message tracked as delivered (Genesys receipts)", pipeline)
    [mapping] = await pg_rows(
        pipeline.settings, "SELECT customer_id, genesys_conversation_id FROM conversation_mappings"
    )
    assert mapping["genesys_conversation_id"] == pipeline.genesys.conversation_id(ACME.integration_id, CUSTOMER)


async def test_duplicates_and_batches_reach_the_agent_once(pipeline: Pipeline) -> None:
    customers = [f"1650555020{i}" for i in range(4)]
    specs = [InboundSpec(kind="text", wa_id=c, text=f"message {n}") for n in range(5) for c in customers]
    # Meta retries: every webhook twice, in one batch per POST, shuffled across both tenants.
    acme = await pipeline.send(ACME, specs, batch=True, duplicate=True)
    globex = await pipeline.send(GLOBEX, specs, duplicate=True, shuffle=True)
    await pipeline.wait_arrived(ACME, acme)
    await pipeline.wait_arrived(GLOBEX, globex)
    assert sorted(pipeline.arrived_ids(ACME)) == sorted(acme)
    assert sorted(pipeline.arrived_ids(GLOBEX)) == sorted(globex)
    for customer in customers:
        texts = [
            a.body["text"] for a in pipeline.arrived(ACME) if a.body["channel"]["from"]["id"] == customer
        ]  # fmt: skip
        assert texts == [f"message {n}" for n in range(5)]


async def test_agent_messages_and_typing_are_recorded_for_the_outbound_direction(pipeline: Pipeline) -> None:
    customer = "16505550901"
    await pipeline.wait_arrived(ACME, await pipeline.send(ACME, [InboundSpec(kind="text", wa_id=customer)]))
    # The agent types, then answers with text and a picture: Genesys posts each to the edge (signed),
    # retrying as Genesys does; the worker keeps each once on agent-messages, keyed by the customer.
    typing = await pipeline.genesys.send_agent_message(ACME.integration_id, customer, typing=True)
    text = await pipeline.genesys.send_agent_message(
        ACME.integration_id, customer, text="Your parcel leaves today", attachments=["image"]
    )
    assert typing.attempts[-1].status == 200 and text.attempts[-1].status == 200
    # The topic also carries the receipts Meta's statuses of the sent picture become (ReceiptDue):
    # they follow the agent's message in its partition, so the two agent events are there already.
    found = await read_topic(pipeline.settings, AGENT_MESSAGES, expected=2)
    records = [r for r in found if b'"receipt_for"' not in r.value]  # type: ignore[attr-defined]
    events = [OutboundEvent.from_bytes(r.value) for r in records]  # type: ignore[attr-defined]
    assert [e.id for e in events] == [typing.message_id, text.message_id]
    assert {r.key for r in records} == {f"{ACME.id}:{customer}".encode()}  # type: ignore[attr-defined]
    assert events[0].typing is not None and events[0].kind is OutboundKind.EVENT
    assert events[1].text == "Your parcel leaves today" and events[1].attachments[0].media_type == "Image"
