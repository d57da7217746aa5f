"""The webhook edge against real PostgreSQL, Redis, RabbitMQ and S3: every answer Meta or Genesys can get."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from datetime import UTC, datetime

import asyncpg
import orjson
import pytest

from tests.integration.edge_fixtures import (
    APP_SECRET,
    GENESYS_WEBHOOK_SECRET,
    INTEGRATION_ID,
    PHONE_NUMBER_ID,
    RunningEdge,
    archived,
    make_tenant,
    post_meta,
    save_tenants,
    serve_edge,
    webhook_body,
)
from wabridge.connectors import archive, redis_client, s3
from wabridge.settings import Settings
from wabridge.simulators.customer import InboundSpec, build_message, build_webhook, encode_webhook, sign_webhook
from wabridge.streams.topics import GENESYS_OUTBOUND_EVENTS, INBOUND_WHATSAPP_MESSAGES


async def test_verify_handshake(edge: RunningEdge) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": "acme-verify-token", "hub.challenge": "1158201444"}
    async with edge.session.get(edge.url + "/webhook/meta", params=params) as response:
        assert response.status == 200
        assert await response.text() == "1158201444"
    async with edge.session.get(edge.url + "/webhook/meta", params={**params, "hub.verify_token": "nope"}) as response:
        assert response.status == 403


async def test_accepted_webhook_is_queued_and_archived_with_the_seed_key_and_metadata(edge: RunningEdge) -> None:
    spec = InboundSpec(kind="text", text="Hello, I need help", wamid="wamid.TEST1")
    body = webhook_body(spec)
    assert await post_meta(edge, body) == 200

    [queued] = await edge.queued(INBOUND_WHATSAPP_MESSAGES)
    assert queued.body == body, "the queue carries the raw bytes Meta signed"
    assert orjson.loads(str(queued.headers["tenants"])) == {PHONE_NUMBER_ID: "acme"}

    today = datetime.now(UTC).strftime("%Y-%m-%d")
    objects = await archived(edge.settings, "acme/")
    [(key, document)] = objects.items()
    assert key.startswith(f"acme/{today}/") and key.endswith("-wamid.TEST1.json")
    stored = orjson.loads(document)
    assert stored["entry"] == orjson.loads(body)["entry"]
    metadata = stored["metadata"]
    assert metadata["tenant_id"] == "acme"
    assert metadata["webhook_signature"] == sign_webhook(APP_SECRET, body)
    assert metadata["source_ip"] == "127.0.0.1"
    assert metadata["user_agent"] == "facebookexternalua"
    assert metadata["stored_at"].startswith(today)
    # The raw body is recoverable byte for byte: everything before the appended metadata member.
    assert document.startswith(body[:-1] + b',"metadata":')


async def test_a_burst_is_archived_in_few_objects_and_every_webhook_is_found_byte_for_byte(edge: RunningEdge) -> None:
    specs = [
        InboundSpec(kind="text", wa_id=f"1650555{i:04d}", text=f"burst {i}\n{{}}", wamid=f"wamid.BURST{i}")
        for i in range(60)
    ]
    bodies = {spec.wamid: webhook_body(spec) for spec in specs}
    # Pretty-printed, as some senders do: the documents hold newlines; the index still finds them.
    bodies[specs[0].wamid] = orjson.dumps(orjson.loads(bodies[specs[0].wamid]), option=orjson.OPT_INDENT_2)
    statuses = await asyncio.gather(*(post_meta(edge, body) for body in bodies.values()))
    assert statuses == [200] * len(bodies)

    today = datetime.now(UTC).strftime("%Y-%m-%d")
    async with s3.client(edge.settings) as client:
        objects = [
            o async for o in client.list_objects(edge.settings.s3_bucket_webhooks, prefix="acme/", recursive=True)
        ]
        found = [w async for w in archive.find(client, edge.settings.s3_bucket_webhooks, "acme", today)]
        one = [
            w
            async for w in archive.find(
                client, edge.settings.s3_bucket_webhooks, "acme", today, message_id=specs[7].wamid
            )
        ]
    assert len(objects) < len(bodies) / 2, f"{len(objects)} objects for {len(bodies)} webhooks: not batched"
    assert sorted(w.ids[0] for w in found) == sorted(bodies)
    for webhook in found:
        body = bodies[webhook.ids[0]]
        assert webhook.key.startswith(f"acme/{today}/") and webhook.key.endswith(f"-{webhook.ids[0]}.json")
        assert webhook.document.startswith(body.rstrip()[:-1] + b',"metadata":'), "the raw body, byte for byte"
        assert orjson.loads(webhook.document)["metadata"]["tenant_id"] == "acme"
    [reply] = one
    assert reply.ids == (specs[7].wamid,) and reply.batch.startswith(f"acme/{today}/")


@pytest.mark.parametrize("json_style", ["utf8", "meta_escaped"])
async def test_signature_over_non_ascii_raw_bytes(edge: RunningEdge, json_style: str) -> None:
    spec = InboundSpec(kind="text", text="Olá, São Paulo! 你好 👋 — price €5/unit")
    payload = build_webhook(
        waba_id="1", display_phone_number="15550783881", phone_number_id=PHONE_NUMBER_ID,
        messages=[build_message(spec)],
    )  # fmt: skip
    body = encode_webhook(payload, json_style)  # type: ignore[arg-type]
    assert await post_meta(edge, body) == 200
    [queued] = await edge.queued(INBOUND_WHATSAPP_MESSAGES)
    assert orjson.loads(queued.body)["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] == spec.text
    # The same message re-serialised differently must not verify with the original signature.
    reserialised = orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2)
    status = await post_meta(edge, reserialised, secret=None, **{"X-Hub-Signature-256": sign_webhook(APP_SECRET, body)})
    assert status == 401


async def test_unsigned_and_wrongly_signed_webhooks_are_refused(edge: RunningEdge) -> None:
    body = webhook_body(InboundSpec(kind="text"))
    assert await post_meta(edge, body, secret=None) == 401
    assert await post_meta(edge, body, secret="not-the-app-secret") == 401
    assert await edge.queued(INBOUND_WHATSAPP_MESSAGES) == []


async def test_disabled_tenant_gets_403_and_unknown_number_404(edge: RunningEdge, edge_settings: Settings) -> None:
    assert await post_meta(edge, webhook_body(InboundSpec(kind="text"), phone_number_id="999000")) == 404
    await save_tenants(edge_settings, make_tenant().model_copy(update={"active": False}))
    # A fresh edge process: the in-process tenant cache of the running one lives a few seconds.
    await _flush_tenant_cache(edge_settings)
    async for fresh in serve_edge(edge_settings):
        assert await post_meta(fresh, webhook_body(InboundSpec(kind="text"))) == 403
    assert await edge.queued(INBOUND_WHATSAPP_MESSAGES) == []


@pytest.mark.parametrize("phone_number_id", ["10654\u00000352242922", "\u202e\u0007", "9" * 70_000])
async def test_a_number_no_tenant_could_own_is_unknown_not_a_server_error(
    edge: RunningEdge, phone_number_id: str
) -> None:
    """PostgreSQL refuses a NUL in text: such an id must not reach it (a 503 makes Meta retry for days)."""
    assert await post_meta(edge, webhook_body(InboundSpec(kind="text"), phone_number_id=phone_number_id)) == 404


async def _flush_tenant_cache(settings: Settings) -> None:

    client = redis_client.client(settings)
    try:
        keys = [k async for k in client.scan_iter(match=settings.redis_key("tenant:*"))]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def test_body_over_the_cap_is_413_and_a_3_mb_batch_of_1000_updates_is_accepted(edge: RunningEdge) -> None:
    filler = "x" * 2_900
    specs = [InboundSpec(kind="text", wa_id=f"1650555{i:04d}", text=f"{i} {filler}") for i in range(1000)]
    body = webhook_body(*specs)
    assert 2.9e6 < len(body) < edge.settings.webhook_max_body_bytes
    assert await post_meta(edge, body) == 200
    [queued] = await edge.queued(INBOUND_WHATSAPP_MESSAGES)
    changes = orjson.loads(queued.body)["entry"][0]["changes"]
    assert sum(len(c["value"]["messages"]) for c in changes) == 1000

    too_big = b'{"object":"whatsapp_business_account","entry":[],"pad":"' + b"y" * (5 * 1024 * 1024) + b'"}'
    assert await post_meta(edge, too_big) == 413


async def test_tenant_over_its_rate_limit_gets_429(edge_settings: Settings) -> None:
    await save_tenants(edge_settings, make_tenant(rate_limit_per_minute=2))
    async for edge in serve_edge(edge_settings):
        statuses = [await post_meta(edge, webhook_body(InboundSpec(kind="text"))) for _ in range(3)]
        assert statuses == [200, 200, 429]
        assert len(await edge.queued(INBOUND_WHATSAPP_MESSAGES)) == 2


@pytest.mark.parametrize(
    "body",
    [b"this is not json {", b'{"object":"page","entry":[]}', b'{"object":"whatsapp_business_account"}'],
    ids=["not-json", "not-whatsapp", "no-entries"],
)
async def test_signed_but_malformed_body_is_quarantined_not_refused(edge: RunningEdge, body: bytes) -> None:
    assert await post_meta(edge, body) == 200, "Meta would retry a refusal for 7 days"
    assert await edge.queued(INBOUND_WHATSAPP_MESSAGES) == []
    quarantined = await archived(edge.settings, "quarantine/acme/")
    assert list(quarantined.values()) == [body]
    # Unsigned garbage is simply refused.
    assert await post_meta(edge, body, secret="someone-else") == 401


async def test_rabbitmq_unreachable_answers_503_and_leaves_nothing_half_done(edge_settings: Settings) -> None:
    from pydantic import SecretStr

    from tests.integration.edge_fixtures import free_port

    await save_tenants(edge_settings, make_tenant())
    # A RabbitMQ that is not there: a closed port on loopback, not the shared broker stopped.
    cut_off = edge_settings.model_copy(
        update={"rabbitmq_url": SecretStr(f"amqp://guest:guest@127.0.0.1:{free_port()}/")}
    )
    async for edge in serve_edge(cut_off):
        assert await post_meta(edge, webhook_body(InboundSpec(kind="text", wamid="wamid.LOST?"))) == 503
        async with edge.session.get(edge.ops_url + "/readyz") as response:
            assert response.status == 503
            assert (await response.json())["dependencies"]["rabbitmq"] is False
        async with edge.session.get(edge.ops_url + "/metrics") as response:
            metrics = await response.text()
        assert "wabridge_webhook_queue_unavailable 1.0" in metrics
        assert 'wabridge_webhook_requests_total{endpoint="meta",outcome="queue_unavailable"}' in metrics
    async for healthy_edge in serve_edge(edge_settings):
        assert await healthy_edge.queued(INBOUND_WHATSAPP_MESSAGES) == []
    assert await archived(edge_settings, "acme/") == {}, "a refused webhook must not look accepted in the archive"


async def test_s3_unreachable_still_queues_and_counts_what_was_not_archived(edge_settings: Settings) -> None:
    """The queue is the durable copy: an archive S3 will not take is counted and logged, not a refusal."""
    from tests.integration.edge_fixtures import free_port

    await save_tenants(edge_settings, make_tenant())
    no_s3 = edge_settings.model_copy(update={"s3_endpoint": f"http://127.0.0.1:{free_port()}"})
    async for edge in serve_edge(no_s3):
        assert await post_meta(edge, webhook_body(InboundSpec(kind="text", wamid="wamid.NOS3"))) == 200
        [queued] = await edge.queued(INBOUND_WHATSAPP_MESSAGES)
        assert b"wamid.NOS3" in queued.body
        async with edge.session.get(edge.ops_url + "/metrics") as response:
            metrics = await response.text()
        assert 'wabridge_webhook_archive_failures_total{tenant="acme"} 1.0' in metrics


def genesys_signature(body: bytes, secret: str = GENESYS_WEBHOOK_SECRET, *, hex_digest: bool = False) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return "sha256=" + (digest.hex() if hex_digest else base64.b64encode(digest).decode())


def agent_message(message_id: str = "genesys-msg-1") -> bytes:
    return orjson.dumps(
        {
            "id": message_id,
            "channel": {
                "id": INTEGRATION_ID, "platform": "Open", "type": "Private", "messageId": message_id,
                "to": {"id": "16505551234", "idType": "Phone"},
                "from": {"id": "agent-1", "idType": "Opaque", "nickname": "Agent Smith"},
                "time": "2026-11-24T10:00:00.000Z",
            },
            "type": "Text", "text": "How can I help?", "direction": "Outbound",
        }
    )  # fmt: skip


async def post_genesys(edge: RunningEdge, body: bytes, signature: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if signature:
        headers["X-Hub-Signature-256"] = signature
    async with edge.session.post(edge.url + "/webhook/genesys", data=body, headers=headers) as response:
        await response.read()
        return response.status


async def test_genesys_webhook_signatures_and_dedupe(edge: RunningEdge) -> None:
    body = agent_message()
    assert await post_genesys(edge, body, None) == 401
    assert await post_genesys(edge, body, genesys_signature(body, "wrong")) == 401
    assert await post_genesys(edge, body, genesys_signature(body)) == 200
    # Genesys retries after a timeout: the same message id is accepted once.
    assert await post_genesys(edge, body, genesys_signature(body, hex_digest=True)) == 200
    other = agent_message("genesys-msg-2")
    assert await post_genesys(edge, other, genesys_signature(other, hex_digest=True)) == 200
    queued = await edge.queued(GENESYS_OUTBOUND_EVENTS)
    assert [orjson.loads(m.body)["id"] for m in queued] == ["genesys-msg-1", "genesys-msg-2"]
    assert queued[0].headers["tenant_id"] == "acme"


async def test_genesys_receipts_of_one_message_are_each_taken_once(edge: RunningEdge) -> None:
    """Genesys names a receipt by the id of the message it is about: a Delivered and a later Failed
    of the same message are two events; a retry of either is one."""

    def receipt(status: str) -> bytes:
        body = orjson.loads(agent_message("genesys-msg-7"))
        body.update({"type": "Receipt", "status": status, "isFinalReceipt": status == "Failed"})
        body.pop("text")
        return orjson.dumps(body)

    for status in ("Delivered", "Delivered", "Failed", "Failed"):
        raw = receipt(status)
        assert await post_genesys(edge, raw, genesys_signature(raw)) == 200
    queued = await edge.queued(GENESYS_OUTBOUND_EVENTS)
    assert [orjson.loads(m.body)["status"] for m in queued] == ["Delivered", "Failed"]


async def test_health_endpoints(edge: RunningEdge) -> None:
    # The public webhook port serves /webhook/* only; probes and metrics are on the operations port.
    for path in ("/healthz", "/readyz", "/metrics", "/"):
        async with edge.session.get(edge.url + path) as response:
            assert response.status == 404, path
    async with edge.session.get(edge.ops_url + "/healthz") as response:
        assert response.status == 200
    async with edge.session.get(edge.ops_url + "/readyz") as response:
        assert response.status == 200
        assert (await response.json())["dependencies"] == {"rabbitmq": True, "redis": True, "postgres": True}
    await post_meta(edge, webhook_body(InboundSpec(kind="text")))
    async with edge.session.get(edge.ops_url + "/metrics") as response:
        metrics = await response.text()
    assert 'wabridge_webhook_requests_total{endpoint="meta",outcome="queued"}' in metrics
    assert "wabridge_webhook_latency_seconds_bucket" in metrics


async def test_a_tenant_whose_credentials_cannot_be_decrypted_is_refused_alone(edge_settings: Settings) -> None:
    """Its Genesys webhooks get 503 (Genesys retries them until an operator fixes the key); every
    other tenant's are taken as usual."""
    broken = make_tenant("globex", phone_number_id="206540352242999")
    broken = broken.model_copy(update={"config": broken.config.model_copy(update={"genesys_integration_id": "int-2"})})
    await save_tenants(edge_settings, make_tenant(), broken)
    conn = await asyncpg.connect(edge_settings.postgres_dsn.get_secret_value())
    try:
        await conn.execute(
            f'UPDATE "{edge_settings.postgres_schema}".tenant_credentials'
            " SET credentials = jsonb_set(credentials, '{genesys_webhook_secret}', '\"not-a-fernet-token\"')"
            " WHERE tenant_id = 'globex'"
        )
    finally:
        await conn.close()
    async for edge in serve_edge(edge_settings):
        good = agent_message("genesys-msg-good")
        assert await post_genesys(edge, good, genesys_signature(good)) == 200
        bad = orjson.loads(agent_message("genesys-msg-bad"))
        bad["channel"]["id"] = "int-2"
        raw = orjson.dumps(bad)
        assert await post_genesys(edge, raw, genesys_signature(raw)) == 503
        assert await post_genesys(edge, good, genesys_signature(good)) == 200  # still: the good one is fine
