"""A worker's web server, read and written as someone without the deployment token would."""

from __future__ import annotations

import uuid

import aiohttp
import asyncpg
import orjson
import pytest

from tests.state.conftest import TENANT, WorkerProcess, get_json, spawn_ready
from wabridge.settings import Settings

# Every route that names a tenant, a customer, a token or a table, with the request that reads it.
PROTECTED = [
    ("GET", "/auth/token", None),
    ("GET", f"/state/mapping/4915550001?tenantId={TENANT}", None),
    ("POST", "/state/mapping", {"tenantId": TENANT, "waId": "4915550009"}),
    ("GET", f"/state/conversation/{uuid.uuid4()}?tenantId={TENANT}", None),
    ("POST", "/state/message", {"tenantId": TENANT, "messageId": "wamid.attack"}),
    ("GET", f"/state/message/wamid.attack?tenantId={TENANT}", None),
    ("GET", "/state/tables", None),
    ("GET", f"/state/tables/conversations/{TENANT}:4915550001", None),
    ("GET", "/table/conversations/", None),
    ("GET", f"/table/conversations/{TENANT}:4915550001/", None),
    ("GET", "/router/", None),
    ("GET", "/", None),
]

WRONG_CREDENTIALS = [
    {},
    {"Authorization": "Bearer not-the-token"},
    {"Authorization": "Bearer "},
    {"Authorization": "Basic d2FicmlkZ2U6d2FicmlkZ2U="},
    {"Authorization": "Bearer t\u00f6ken-\u00fcber"},  # non-ASCII: refused like any other, not a 500
    {"X-Wabridge-Routed": "1"},  # posing as a forward from another worker
]


async def test_without_the_token_nothing_is_read_or_written(
    state_settings: Settings,
    workers: list[WorkerProcess],
    clean_changelogs: None,
    http: aiohttp.ClientSession,
    pg: asyncpg.Connection,
) -> None:
    worker = await spawn_ready(workers, state_settings, http)
    # A customer with a name and number exists, as the operator (holding the token) can see.
    async with http.post(
        f"{worker.url}/state/mapping", json={"tenantId": TENANT, "waId": "4915550001", "contactName": "Ana Private"}
    ) as response:
        assert response.status == 201
        conversation_id = (await response.json())["conversationId"]
    status, body = await get_json(http, f"{worker.url}/state/mapping/4915550001", tenantId=TENANT)
    assert status == 200 and body["contactName"] == "Ana Private"

    async with aiohttp.ClientSession() as stranger:
        for credentials in WRONG_CREDENTIALS:
            headers = {"X-Tenant-ID": TENANT, **credentials}
            for method, path, body in PROTECTED:
                data = orjson.dumps(body) if body is not None else None
                async with stranger.request(method, worker.url + path, headers=headers, data=data) as response:
                    answer = await response.read()
                    assert (response.status, answer) == (401, b""), (method, path, credentials)
        # The probes stay open, and say nothing about tenants or customers.
        for path in ("/healthz", "/readyz", "/metrics"):
            async with stranger.get(worker.url + path) as response:
                text = await response.text()
                assert response.status == 200, path
                assert "4915550001" not in text and "Ana Private" not in text

    # Nothing the stranger sent was written.
    rows = await pg.fetch("SELECT customer_id FROM conversation_mappings WHERE tenant_id = $1", TENANT)
    assert [r["customer_id"] for r in rows] == ["4915550001"]
    assert await pg.fetchval("SELECT count(*) FROM message_tracking") == 0
    # Faust's table view stays possible for the operator.
    status, view = await get_json(http, f"{worker.url}/router/")
    assert status == 200 and view
    assert conversation_id


async def test_state_writes_cannot_suppress_or_fake_a_delivery(
    state_settings: Settings,
    workers: list[WorkerProcess],
    clean_changelogs: None,
    http: aiohttp.ClientSession,
    pg: asyncpg.Connection,
) -> None:
    worker = await spawn_ready(workers, state_settings, http)

    async def post(path: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
        async with http.post(worker.url + path, json=body) as response:
            return response.status, orjson.loads(await response.read())

    # The bridge chooses conversation ids: a caller's is refused, so two customers never share one.
    status, body = await post(
        "/state/mapping", {"tenantId": TENANT, "waId": "4915550002", "conversationId": str(uuid.uuid4())}
    )
    assert status == 400 and "conversationId" in str(body["error"])
    status, first = await post("/state/mapping", {"tenantId": TENANT, "waId": "4915550002"})
    assert status == 201
    with pytest.raises(asyncpg.UniqueViolationError):
        await pg.execute(
            "INSERT INTO conversation_mappings (tenant_id, customer_id, conversation_id) VALUES ($1, $2, $3)",
            TENANT,
            "4915550003",
            uuid.UUID(str(first["conversationId"])),
        )

    # A customer's message the pipeline has taken in but not yet delivered.
    wamid = f"wamid.{uuid.uuid4().hex}"
    status, tracked = await post("/state/message", {"tenantId": TENANT, "messageId": wamid, "waId": "4915550002"})
    assert (status, tracked["status"]) == (200, "received")
    # Marking it failed or sent, or giving it a Genesys id, would make deliver skip it: all refused.
    attacks = [
        ({"status": "failed"}, 422),
        ({"status": "sent"}, 422),
        ({"status": "delivered"}, 422),
        ({"genesysMessageId": "forged-genesys-id"}, 400),
        ({"metaMessageId": "wamid.other"}, 400),
        ({"status": "failed", "error": {"code": 1}}, 400),
    ]
    for extra, expected in attacks:
        status, body = await post("/state/message", {"tenantId": TENANT, "messageId": wamid, **extra})
        assert status == expected, (extra, body)
    row = await pg.fetchrow(
        "SELECT status, genesys_message_id, delivery_attempts FROM message_tracking WHERE message_id = $1", wamid
    )
    assert dict(row) == {"status": "received", "genesys_message_id": None, "delivery_attempts": 0}


async def test_conversation_lookups_stay_inside_their_tenant(
    state_settings: Settings,
    workers: list[WorkerProcess],
    clean_changelogs: None,
    http: aiohttp.ClientSession,
) -> None:
    worker = await spawn_ready(workers, state_settings, http)
    async with http.post(f"{worker.url}/state/mapping", json={"tenantId": TENANT, "waId": "4915550004"}) as response:
        conversation_id = (await response.json())["conversationId"]
    url = f"{worker.url}/state/conversation/{conversation_id}"
    assert (await get_json(http, url, tenantId=TENANT))[0] == 200
    # Another tenant (or a guess) learns nothing, from the cache or from PostgreSQL.
    status, body = await get_json(http, url, tenantId="othertenant")
    assert status == 404 and "4915550004" not in orjson.dumps(body).decode()
    assert (await get_json(http, url))[0] == 400
