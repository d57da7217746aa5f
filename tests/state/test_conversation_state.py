"""One worker, the real broker, PostgreSQL and Redis: mappings, dedupe, remapping, statuses, errors."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg
import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from tests.integration.edge_fixtures import read_topic
from tests.state.conftest import (
    TENANT,
    WorkerProcess,
    get_json,
    inbound_records,
    owns_partitions,
    produce,
    spawn,
    spawn_ready,
    status_records,
)
from tests.streams.support import wait_until
from wabridge.schemas.meta import keyed_as
from wabridge.schemas.records import ReadyMessage, WebhookEvent
from wabridge.settings import Settings
from wabridge.simulators.customer import InboundSpec, new_wamid
from wabridge.streams.topics import ERROR_EVENTS, WA_INBOUND, WA_READY

NEW_CUSTOMER = "16505550101"
OTHER_CUSTOMER = "16505550102"
NEW_NUMBER = "16505550199"


async def test_mapping_dedupe_remap_and_statuses(
    state_settings: Settings,
    workers: list[WorkerProcess],
    clean_changelogs: None,
    producer: AIOKafkaProducer,
    http: aiohttp.ClientSession,
    pg: asyncpg.Connection,
    redis: aioredis.Redis,
) -> None:
    settings = state_settings
    worker = await spawn_ready(workers, settings, http)

    # A new customer's first three messages in one webhook, delivered twice (Meta's retry), plus
    # a second customer, an unreadable record and statuses of one outbound message out of order.
    first_three = [InboundSpec(kind="text", wa_id=NEW_CUSTOMER, text=f"hello {n}", wamid=new_wamid()) for n in range(3)]
    batch = inbound_records(*first_three, InboundSpec(kind="text", wa_id=OTHER_CUSTOMER, text="hi"))
    outbound_wamid = new_wamid()
    statuses = status_records(OTHER_CUSTOMER, outbound_wamid, "read", "sent", "delivered", "read", "sent")
    garbage = [(f"{TENANT}:{NEW_CUSTOMER}", b'{"v": 1, "kind": "message", "tenant_id": "acme"}')]
    await produce(producer, settings, batch + batch + garbage + statuses)

    async def mapped(customer: str) -> dict | None:
        status, body = await get_json(http, f"{worker.url}/state/mapping/{customer}", tenantId=TENANT)
        return body if status == 200 and body.get("source") == "table" else None

    try:
        mapping = await wait_until(lambda: mapped(NEW_CUSTOMER), 30, "the new customer's mapping")
        await wait_until(lambda: mapped(OTHER_CUSTOMER), 10, "the other customer's mapping")
    except TimeoutError:
        print(worker.tail(80))
        raise
    conversation_id = mapping["conversationId"]

    # Exactly three resolved messages for the customer (duplicates dropped), all one conversation.
    resolved = [
        ReadyMessage.from_bytes(r.value)
        for r in await read_topic(settings, WA_READY, expected=4)
        if r.key == f"{TENANT}:{NEW_CUSTOMER}".encode()
    ]
    assert sorted(r.message.wamid for r in resolved) == sorted(s.wamid for s in first_three)  # type: ignore[misc]
    assert [r.message.wamid for r in resolved] == [s.wamid for s in first_three]  # in order
    assert {str(r.conversation.conversation_id) for r in resolved} == {conversation_id}

    # The mapping is in PostgreSQL (once) and in Redis, both directions.
    rows = await pg.fetch(
        "SELECT * FROM conversation_mappings WHERE tenant_id = $1 AND customer_id = $2", TENANT, NEW_CUSTOMER
    )
    assert len(rows) == 1 and str(rows[0]["conversation_id"]) == conversation_id
    cached = orjson.loads(await redis.get(settings.redis_key(f"mapping:wa:{TENANT}:{NEW_CUSTOMER}")))
    assert cached["conversation_id"] == conversation_id
    reverse = orjson.loads(await redis.get(settings.redis_key(f"mapping:conv:{conversation_id}")))
    assert reverse == {"waId": NEW_CUSTOMER, "customerId": NEW_CUSTOMER, "tenantId": TENANT}
    assert 3590 <= await redis.ttl(settings.redis_key(f"mapping:conv:{conversation_id}")) <= 3600

    # One 'received' tracking row per inbound message.
    tracked = await pg.fetch(
        "SELECT message_id, status, conversation_id FROM message_tracking"
        " WHERE customer_id = $1 AND direction = 'inbound'",
        NEW_CUSTOMER,
    )
    assert sorted(r["message_id"] for r in tracked) == sorted(s.wamid for s in first_three)  # type: ignore[misc]
    assert {str(r["conversation_id"]) for r in tracked} == {conversation_id}
    # Received here; the deliver stage then fails them for good, as this test's tenant has no Genesys.
    assert {r["status"] for r in tracked} <= {"received", "failed"}

    # Statuses out of order end at the highest rank.
    async def outbound_status() -> str | None:
        status, body = await get_json(
            http, f"{worker.url}/state/message/{quote(outbound_wamid, safe='')}", tenantId=TENANT, direction="outbound"
        )
        return body["status"] if status == 200 and body["status"] == "read" else None

    await wait_until(outbound_status, 10, "the outbound status")

    # The unreadable record is on the error topic with its reason and origin, not dropped.
    async def stage_errors() -> list[dict[str, Any]]:
        # deliver's refusals of this Genesys-less tenant's messages are there too; not this test's.
        records = await read_topic(settings, ERROR_EVENTS, expected=1, timeout_s=2)
        return [e for e in (orjson.loads(r.value) for r in records) if e["stage"] != "deliver"]

    errors = await wait_until(stage_errors, 20, "the unreadable record on the error topic")
    assert [(e["stage"], e["reason"], e["topic"]) for e in errors] == [
        ("normalize", "invalid_record", settings.topic(WA_INBOUND))
    ]
    assert errors[0]["tenant_id"] == TENANT and isinstance(errors[0]["offset"], int)

    # A number change: the customer keeps their key and conversation; it knows the new number.
    change = InboundSpec(kind="system_number_change", wa_id=NEW_CUSTOMER, new_wa_id=NEW_NUMBER, wamid=new_wamid())
    await produce(producer, settings, inbound_records(change))

    async def renumbered() -> dict | None:
        found = await mapped(NEW_CUSTOMER)
        return found if found and found["waId"] == NEW_NUMBER else None

    moved = await wait_until(renumbered, 20, "the mapping with the new number")
    assert moved["conversationId"] == conversation_id
    live = await pg.fetch(
        "SELECT customer_id, wa_id FROM conversation_mappings"
        " WHERE conversation_id = $1 AND moved_to_customer_id IS NULL",
        moved["conversationId"],
    )
    assert [(r["customer_id"], r["wa_id"]) for r in live] == [(NEW_CUSTOMER, NEW_NUMBER)]

    # The next message from the new number, keyed as the bridge keys it (the customer's one key,
    # connectors.identities), stays in the same conversation; the system message itself was not
    # passed on for delivery.
    follow_up = InboundSpec(kind="text", wa_id=NEW_NUMBER, text="new phone", wamid=new_wamid())
    rekeyed = [
        (f"{TENANT}:{NEW_CUSTOMER}", keyed_as(WebhookEvent.from_bytes(value), NEW_CUSTOMER).to_bytes())
        for _, value in inbound_records(follow_up)
    ]
    await produce(producer, settings, rekeyed)
    records = await read_topic(settings, WA_READY, expected=5)
    resolved_all = [ReadyMessage.from_bytes(r.value) for r in records]
    assert [r.message.type for r in resolved_all].count("system") == 0
    last = next(r for r in resolved_all if r.message.wamid == follow_up.wamid)
    assert str(last.conversation.conversation_id) == conversation_id


async def test_state_api_requests(
    state_settings: Settings,
    workers: list[WorkerProcess],
    clean_changelogs: None,
    http: aiohttp.ClientSession,
) -> None:
    worker = spawn(workers, state_settings)
    await wait_until(lambda: owns_partitions(http, worker, 1), 45, "the worker to own its partitions")
    url = worker.url

    async def post(path: str, body: object) -> tuple[int, dict]:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        async with http.post(url + path, data=data) as response:
            return response.status, orjson.loads(await response.read())

    status, created = await post("/state/mapping", {"tenantId": TENANT, "waId": "4912345", "contactName": "Ana"})
    assert status == 201 and created["created"] is True
    status, again = await post("/state/mapping", {"tenantId": TENANT, "waId": "4912345"})
    assert status == 200 and again["conversationId"] == created["conversationId"] and again["created"] is False
    status, body = await get_json(http, f"{url}/state/mapping/4912345", tenantId=TENANT)
    assert status == 200 and body["conversationId"] == created["conversationId"]
    status, body = await get_json(http, f"{url}/state/conversation/{created['conversationId']}", tenantId=TENANT)
    assert status == 200 and body["waId"] == "4912345"
    assert (await get_json(http, f"{url}/state/conversation/{created['conversationId']}"))[0] == 400

    assert (await get_json(http, f"{url}/state/mapping/4900000", tenantId=TENANT))[0] == 404
    assert (await get_json(http, f"{url}/state/mapping/4912345"))[0] == 400
    assert (await get_json(http, f"{url}/state/conversation/not-a-uuid", tenantId=TENANT))[0] == 400
    assert (await post("/state/mapping", b"{not json"))[0] == 400
    assert (await post("/state/mapping", {"tenantId": TENANT}))[0] == 400

    # A new message's first status is recorded; later ones are the pipeline's (tests/security).
    status, tracked = await post(
        "/state/message", {"tenantId": TENANT, "messageId": "wamid.X", "direction": "outbound"}
    )
    assert status == 200 and tracked["status"] == "accepted"
    status, _ = await post(
        "/state/message", {"tenantId": TENANT, "messageId": "wamid.X", "direction": "outbound", "status": "delivered"}
    )
    assert status == 422
    assert (await post("/state/message", {"tenantId": TENANT, "messageId": "m", "status": "bogus"}))[0] == 400
    status, body = await get_json(http, f"{url}/state/message/wamid.X", tenantId=TENANT)
    assert status == 200 and [m["status"] for m in body["messages"]] == ["accepted"]
    assert (await get_json(http, f"{url}/state/message/wamid.Y", tenantId=TENANT))[0] == 404
    # A value PostgreSQL cannot hold (a NUL byte) is the caller's mistake, not the worker's: 400.
    assert (await get_json(http, f"{url}/state/message/wamid.%00", tenantId=TENANT))[0] == 400
    assert (await get_json(http, f"{url}/state/message/wamid.X", tenantId="a\x00b"))[0] == 400
    assert (await get_json(http, f"{url}/state/mapping/49%0012", tenantId=TENANT))[0] == 400
    assert (await get_json(http, f"{url}/trace/wamid.%00"))[0] == 400
    # A write of one is refused by the sink, as every write PostgreSQL rejects: 422 with the reason.
    refused = await post("/state/message", {"tenantId": TENANT, "messageId": "wamid.\x00", "direction": "outbound"})
    assert refused[0] == 422 and refused[1]["reason"] == "postgres_rejected"
    status, body = await get_json(http, f"{url}/readyz")
    assert status == 200 and body["ready"] is True

    status, tables = await get_json(http, f"{url}/state/tables")
    assert status == 200 and set(tables["tables"]) == {"normalize-seen", "conversations", "genesys-seen"}
    assert (await get_json(http, f"{url}/state/tables/nope/{TENANT}:1"))[0] == 404
    assert (await get_json(http, f"{url}/state/tables/conversations/{TENANT}:4912345"))[0] == 404  # not in table yet
    assert (await get_json(http, f"{url}/healthz"))[0] == 200
    assert (await get_json(http, f"{url}/readyz"))[0] == 200
