"""The Meta simulator over real HTTP: signed inbound webhooks, media, sends and status webhooks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from typing import Any

import aiohttp
import orjson
import pytest

from tests.simulators.conftest import (
    ACCESS_TOKEN,
    APP_SECRET,
    OTHER_ACCESS_TOKEN,
    OTHER_PHONE_NUMBER_ID,
    PHONE_NUMBER_ID,
    Received,
    WebhookReceiver,
    eventually,
)
from wabridge.simulators import MESSAGE_KINDS, CustomerDriver, InboundSpec, MetaSimulator
from wabridge.simulators.meta_config import MetaPhoneNumber
from wabridge.simulators.meta_templates import MetaTemplate

GRAPH = "v26.0"
WABA_ID = MetaPhoneNumber.model_fields["waba_id"].default
BSUID = "US.13491208655302741918"
MAGIC = {
    "image": (b"\xff\xd8\xff", "image/jpeg"),
    "sticker": (b"RIFF", "image/webp"),
    "audio": (b"OggS", "audio/ogg"),
    "voice": (b"OggS", "audio/ogg"),
    "video": (b"\x00\x00\x00\x1cftyp", "video/mp4"),
    "document": (b"%PDF-", "application/pdf"),
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def signature_verifies(secret: str, webhook: Received) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), webhook.raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(webhook.headers["X-Hub-Signature-256"], expected)


def messages_of(webhook: Received) -> list[dict[str, Any]]:
    body = orjson.loads(webhook.raw)
    return [m for entry in body["entry"] for change in entry["changes"] for m in change["value"].get("messages", [])]


async def download(http: aiohttp.ClientSession, meta: MetaSimulator, media_id: str, token: str = ACCESS_TOKEN) -> bytes:
    async with http.get(
        f"{meta.url}/{GRAPH}/{media_id}", headers=bearer(token), params={"phone_number_id": PHONE_NUMBER_ID}
    ) as response:
        assert response.status == 200, await response.text()
        info = await response.json()
    async with http.get(info["url"], headers=bearer(token)) as response:
        assert response.status == 200
        data = await response.read()
    assert base64.b64encode(hashlib.sha256(data).digest()).decode() == info["sha256"]
    assert int(info["file_size"]) == len(data)
    return data


async def test_every_message_kind_is_signed_and_media_is_real(
    meta: MetaSimulator, receiver: WebhookReceiver, http: aiohttp.ClientSession
) -> None:
    specs = [InboundSpec(kind=kind) for kind in MESSAGE_KINDS]
    result = await CustomerDriver(meta.url, http).send(PHONE_NUMBER_ID, specs)
    assert result["posts"] == [[200]] * len(MESSAGE_KINDS)
    assert len(receiver.received) == len(MESSAGE_KINDS)
    for spec, webhook in zip(specs, receiver.received, strict=True):
        assert signature_verifies(APP_SECRET, webhook), spec.kind
        (message,) = messages_of(webhook)
        value = orjson.loads(webhook.raw)["entry"][0]["changes"][0]["value"]
        assert value["metadata"]["phone_number_id"] == PHONE_NUMBER_ID
        assert ("contacts" in value) is (message["type"] != "system")
        if spec.kind in MAGIC:
            magic, mime = MAGIC[spec.kind]
            payload = message[message["type"]]
            assert payload["mime_type"] == mime
            assert (await download(http, meta, payload["id"])).startswith(magic), spec.kind
    by_kind = {spec.kind: messages_of(webhook)[0] for spec, webhook in zip(specs, receiver.received, strict=True)}
    assert by_kind["voice"]["audio"]["voice"] is True and by_kind["audio"]["audio"]["voice"] is False
    assert "emoji" in by_kind["reaction"]["reaction"] and "emoji" not in by_kind["unreaction"]["reaction"]
    assert by_kind["unsupported"]["errors"][0]["code"] == 131051
    assert json.loads(by_kind["flow_reply"]["interactive"]["nfm_reply"]["response_json"])["flow_token"]
    assert by_kind["system_number_change"]["system"]["type"] == "user_changed_number"


async def test_non_ascii_text_is_raw_utf8_and_the_signature_is_over_those_bytes(
    meta: MetaSimulator, receiver: WebhookReceiver, http: aiohttp.ClientSession
) -> None:
    text = "Olá 👋 — naïve café / 日本"
    driver = CustomerDriver(meta.url, http)
    await driver.send(PHONE_NUMBER_ID, [InboundSpec(kind="text", text=text)])
    await driver.send(PHONE_NUMBER_ID, [InboundSpec(kind="text", text=text)], json_style="meta_escaped")
    raw_utf8, escaped = receiver.received
    assert text.encode() in raw_utf8.raw
    assert b"\\u00e1" in escaped.raw and b"\\/" in escaped.raw and text.encode() not in escaped.raw
    for webhook in (raw_utf8, escaped):
        assert signature_verifies(APP_SECRET, webhook)
        assert messages_of(webhook)[0]["text"]["body"] == text
        # Re-serialising the parsed JSON gives other bytes, so verifying over them would fail.
        reserialised = Received(webhook.path, webhook.headers, json.dumps(orjson.loads(webhook.raw)).encode())
        assert not signature_verifies(APP_SECRET, reserialised)
    assert not signature_verifies("another-tenant-secret", raw_utf8)


async def test_batched_duplicated_and_bsuid_only(
    meta: MetaSimulator, receiver: WebhookReceiver, http: aiohttp.ClientSession
) -> None:
    specs = [
        InboundSpec(kind="text", wa_id="16505550001", text="a1"),
        InboundSpec(kind="image", wa_id="16505550002"),
        InboundSpec(kind="text", wa_id="16505550001", text="a2", reply_to="wamid.prev", forwarded=True),
        InboundSpec(
            kind="text", bsuid_only=True, user_id="US.13491208655302741918", username="sheena", ad_referral=True
        ),
    ]
    result = await CustomerDriver(meta.url, http).send(PHONE_NUMBER_ID, specs, batch=True, duplicate=True)
    assert result["posts"] == [[200], [200]]
    first, second = receiver.received
    assert first.raw == second.raw and first.headers["X-Hub-Signature-256"] == second.headers["X-Hub-Signature-256"]
    changes = orjson.loads(first.raw)["entry"][0]["changes"]
    assert [[m["id"] for m in c["value"]["messages"]] for c in changes] == [
        [result["wamids"][0], result["wamids"][2]],
        [result["wamids"][1]],
        [result["wamids"][3]],
    ]
    assert changes[0]["value"]["messages"][1]["context"] == {
        "from": "16505550001",
        "id": "wamid.prev",
        "forwarded": True,
    }
    bsuid_change = changes[2]["value"]
    assert "from" not in bsuid_change["messages"][0] and "wa_id" not in bsuid_change["contacts"][0]
    assert bsuid_change["messages"][0]["from_user_id"] == bsuid_change["contacts"][0]["user_id"]
    assert bsuid_change["messages"][0]["referral"]["source_type"] == "ad"


async def test_media_access_is_per_tenant(meta: MetaSimulator, http: aiohttp.ClientSession) -> None:
    result = await CustomerDriver(meta.url, http).send(PHONE_NUMBER_ID, [InboundSpec(kind="document")])
    (media_id,) = result["media_ids"]
    async with http.get(f"{meta.url}/{GRAPH}/{media_id}", headers=bearer("garbage")) as response:
        assert response.status == 401 and (await response.json())["error"]["code"] == 190
    for token, params in ((OTHER_ACCESS_TOKEN, {}), (ACCESS_TOKEN, {"phone_number_id": OTHER_PHONE_NUMBER_ID})):
        async with http.get(f"{meta.url}/{GRAPH}/{media_id}", headers=bearer(token), params=params) as response:
            error = (await response.json())["error"]
            assert (response.status, error["code"], error["error_subcode"]) == (400, 100, 33)
    async with http.get(f"{meta.url}/{GRAPH}/999", headers=bearer(ACCESS_TOKEN)) as response:
        assert response.status == 400
    async with http.get(f"{meta.url}/{GRAPH}/{media_id}", headers=bearer(ACCESS_TOKEN)) as response:
        url = (await response.json())["url"]
    async with http.get(url) as response:
        assert response.status == 401  # the media URL needs the Bearer token too
    async with http.get(url, headers=bearer(OTHER_ACCESS_TOKEN)) as response:
        assert response.status == 403


async def test_media_urls_expire_and_a_fresh_url_works(meta: MetaSimulator, http: aiohttp.ClientSession) -> None:
    meta.update(media_url_ttl_s=0.3)
    result = await CustomerDriver(meta.url, http).send(PHONE_NUMBER_ID, [InboundSpec(kind="image")])
    media_id = result["media_ids"][0]
    async with http.get(f"{meta.url}/{GRAPH}/{media_id}", headers=bearer(ACCESS_TOKEN)) as response:
        url = (await response.json())["url"]
    statuses: list[int] = []

    async def fetch() -> None:
        async with http.get(url, headers=bearer(ACCESS_TOKEN)) as response:
            statuses.append(response.status)

    await fetch()
    assert statuses == [200]
    while statuses[-1] == 200:
        await fetch()
        await asyncio.sleep(0.02)  # polling until the URL's TTL has passed
        assert len(statuses) < 10_000
    assert statuses[-1] == 404
    assert (await download(http, meta, media_id)).startswith(b"\xff\xd8")  # re-query the id: works again


async def test_a_media_url_can_be_made_to_404_once(meta: MetaSimulator, http: aiohttp.ClientSession) -> None:
    media_id = (await CustomerDriver(meta.url, http).send(PHONE_NUMBER_ID, [InboundSpec(kind="sticker")]))["media_ids"][
        0
    ]
    async with http.post(f"{meta.url}/__sim/media/{media_id}/fail-next-downloads", json={"count": 1}) as response:
        assert response.status == 204
    async with http.get(f"{meta.url}/{GRAPH}/{media_id}", headers=bearer(ACCESS_TOKEN)) as response:
        url = (await response.json())["url"]
    async with http.get(url, headers=bearer(ACCESS_TOKEN)) as response:
        assert response.status == 404
    async with http.get(url, headers=bearer(ACCESS_TOKEN)) as response:
        assert response.status == 200 and (await response.read()).startswith(b"RIFF")


async def send(
    http: aiohttp.ClientSession, meta: MetaSimulator, body: dict[str, Any], token: str = ACCESS_TOKEN
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        f"{meta.url}/{GRAPH}/{PHONE_NUMBER_ID}/messages",
        headers=bearer(token),
        json={"messaging_product": "whatsapp", "recipient_type": "individual", **body},
    ) as response:
        return response.status, await response.json()


def statuses_for(receiver: WebhookReceiver, wamid: str) -> list[dict[str, Any]]:
    found = []
    for webhook in receiver.received:
        for entry in orjson.loads(webhook.raw)["entry"]:
            for change in entry["changes"]:
                found += [s for s in change["value"].get("statuses", []) if s["id"] == wamid]
    return found


async def test_a_send_inside_the_window_reports_sent_delivered_read_signed(
    meta: MetaSimulator, receiver: WebhookReceiver, http: aiohttp.ClientSession
) -> None:
    await CustomerDriver(meta.url, http).send(PHONE_NUMBER_ID, [InboundSpec(kind="text", wa_id="16505551234")])
    status, body = await send(http, meta, {"to": "+1 650-555-1234", "type": "text", "text": {"body": "Hi ✓"}})
    assert status == 200
    wamid = body["messages"][0]["id"]
    assert wamid.startswith("wamid.") and body["contacts"] == [{"input": "+1 650-555-1234", "wa_id": "16505551234"}]
    await eventually(lambda: len(statuses_for(receiver, wamid)) == 3)
    assert [s["status"] for s in statuses_for(receiver, wamid)] == ["sent", "delivered", "read"]
    assert all(signature_verifies(APP_SECRET, w) for w in receiver.received)


@pytest.mark.parametrize(
    "message",
    [
        {"type": "image", "image": {"link": "http://127.0.0.1:9/unreachable.jpg"}},
        {"type": "text", "text": {"body": "late"}},
    ],
)
async def test_failures_are_reported_as_status_webhooks(
    meta: MetaSimulator, receiver: WebhookReceiver, http: aiohttp.ClientSession, message: dict[str, Any]
) -> None:
    if message["type"] == "image":
        meta.open_service_window(PHONE_NUMBER_ID, "16505551234")
    status, body = await send(http, meta, {"to": "16505551234", **message})
    assert status == 200  # accepted; the failure comes later, as Meta reports it
    wamid = body["messages"][0]["id"]
    await eventually(lambda: len(statuses_for(receiver, wamid)) == 1)
    (failed,) = statuses_for(receiver, wamid)
    assert failed["status"] == "failed"
    assert failed["errors"][0]["code"] == (131053 if message["type"] == "image" else 131047)


async def test_templates_go_out_after_the_window_closed(
    meta: MetaSimulator, receiver: WebhookReceiver, http: aiohttp.ClientSession
) -> None:
    meta.upsert_template(
        MetaTemplate(waba_id=WABA_ID, name="hello_world", components=({"type": "BODY", "text": "Hi"},))
    )
    meta.open_service_window(PHONE_NUMBER_ID, "16505551234", at=0.0)  # 1970: long closed
    _, text = await send(http, meta, {"to": "16505551234", "type": "text", "text": {"body": "x"}})
    _, template = await send(
        http,
        meta,
        {"to": "16505551234", "type": "template", "template": {"name": "hello_world", "language": {"code": "en_US"}}},
    )
    await eventually(lambda: len(statuses_for(receiver, template["messages"][0]["id"])) == 3)
    assert statuses_for(receiver, text["messages"][0]["id"])[0]["errors"][0]["code"] == 131047


async def test_over_the_number_throughput_fails_with_130429(
    meta: MetaSimulator, receiver: WebhookReceiver, http: aiohttp.ClientSession
) -> None:
    async with http.put(
        f"{meta.url}/__sim/phone-numbers/{PHONE_NUMBER_ID}",
        json={
            "access_token": ACCESS_TOKEN,
            "app_secret": APP_SECRET,
            "webhook_url": f"{receiver.url}/webhooks/meta",
            "messages_per_second": 2,
            "enforce_service_window": False,
        },
    ) as response:
        assert response.status == 204
    wamids = [
        (await send(http, meta, {"to": "1", "type": "text", "text": {"body": str(i)}}))[1]["messages"][0]["id"]
        for i in range(3)
    ]
    await eventually(lambda: all(statuses_for(receiver, wamid) for wamid in wamids))
    codes = [statuses_for(receiver, w)[0].get("errors", [{}])[0].get("code") for w in wamids]
    assert codes.count(130429) == 1 and codes.count(None) == 2


async def test_bad_sends_get_graph_errors(meta: MetaSimulator, http: aiohttp.ClientSession) -> None:
    status, body = await send(http, meta, {"to": "1", "type": "text", "text": {"body": "x"}}, token="nope")
    assert (status, body["error"]["code"]) == (401, 190)
    status, body = await send(http, meta, {"to": "1", "type": "text", "text": {"body": "x"}}, token=OTHER_ACCESS_TOKEN)
    assert (status, body["error"]["error_subcode"]) == (400, 33)
    for bad in (
        {"to": "1", "type": "image", "image": {}},
        {"to": "1", "type": "image", "image": {"id": "404"}},
        {"type": "text", "text": {"body": "x"}},
        {"to": "1", "type": "carousel", "carousel": {}},
    ):
        status, body = await send(http, meta, bad)
        assert (status, body["error"]["code"]) == (400, 100), bad


async def test_mark_read_with_typing_and_upload(meta: MetaSimulator, http: aiohttp.ClientSession) -> None:
    status, body = await send(
        http, meta, {"status": "read", "message_id": "wamid.in-1", "typing_indicator": {"type": "text"}}
    )
    assert (status, body) == (200, {"success": True})
    assert meta.read_marks(PHONE_NUMBER_ID)[0]["typing_indicator"] == {"type": "text"}

    form = aiohttp.FormData()
    form.add_field("messaging_product", "whatsapp")
    form.add_field("type", "application/pdf")
    form.add_field("file", b"%PDF-1.4 tiny", filename="a.pdf", content_type="application/pdf")
    async with http.post(
        f"{meta.url}/{GRAPH}/{PHONE_NUMBER_ID}/media", data=form, headers=bearer(ACCESS_TOKEN)
    ) as response:
        assert response.status == 200
        media_id = (await response.json())["id"]
    assert await download(http, meta, media_id) == b"%PDF-1.4 tiny"
    meta.open_service_window(PHONE_NUMBER_ID, "1")
    status, _ = await send(
        http, meta, {"to": "1", "type": "document", "document": {"id": media_id, "filename": "a.pdf"}}
    )
    assert status == 200


async def test_status_webhooks_are_retried_until_200(
    meta: MetaSimulator, receiver: WebhookReceiver, http: aiohttp.ClientSession
) -> None:
    meta.update(read_after_s=None)
    meta.open_service_window(PHONE_NUMBER_ID, "1")
    receiver.scripted_statuses = [503, 500]
    status, _ = await send(http, meta, {"to": "1", "type": "text", "text": {"body": "x"}})
    assert status == 200
    await eventually(
        lambda: (
            len([w for w in meta.webhook_deliveries() if w.kind == "status"]) == 2
            and all(w.attempts and w.attempts[-1] == 200 for w in meta.webhook_deliveries())
        )
    )
    assert meta.webhook_deliveries()[0].attempts == [503, 500, 200]


async def test_the_request_log_filters_by_phone_number(meta: MetaSimulator, http: aiohttp.ClientSession) -> None:
    await send(http, meta, {"to": "1", "type": "text", "text": {"body": "x"}})
    await send(http, meta, {"to": "1", "type": "text", "text": {"body": "x"}}, token=OTHER_ACCESS_TOKEN)
    async with http.get(f"{meta.url}/__sim/requests", params={"phone_number_id": PHONE_NUMBER_ID}) as response:
        entries = (await response.json())["requests"]
    assert [(e["status"], e["body"]["text"]["body"]) for e in entries] == [(200, "x"), (400, "x")]
    async with http.get(f"{meta.url}/__sim/requests", params={"path": "/nothing"}) as response:
        assert (await response.json())["requests"] == []


# -- Customers known by a business-scoped user id (Meta, "Business-scoped user IDs"; reference
# whatsapp-cloud-api.md, "Checked 2026-12-07"): sends to a BSUID use ``recipient``; a BSUID in
# ``to`` is not delivered; statuses of such sends carry ``recipient_user_id``.


async def test_a_bsuid_is_reached_by_recipient_and_its_statuses_name_the_bsuid(
    meta: MetaSimulator, receiver: WebhookReceiver, http: aiohttp.ClientSession
) -> None:
    driver = CustomerDriver(meta.url, http)
    await driver.send(PHONE_NUMBER_ID, [InboundSpec(kind="text", user_id=BSUID, username="sheena", bsuid_only=True)])
    status, body = await send(http, meta, {"recipient": BSUID, "type": "text", "text": {"body": "Hello"}})
    assert status == 200 and body["contacts"] == [{"input": BSUID, "user_id": BSUID}]
    wamid = body["messages"][0]["id"]
    await eventually(lambda: len(statuses_for(receiver, wamid)) == 3)
    statuses = statuses_for(receiver, wamid)
    assert [s["status"] for s in statuses] == ["sent", "delivered", "read"]
    assert all(s["recipient_user_id"] == BSUID and "recipient_id" not in s for s in statuses)


async def test_a_bsuid_in_to_is_accepted_but_never_delivered(
    meta: MetaSimulator, receiver: WebhookReceiver, http: aiohttp.ClientSession
) -> None:
    meta.open_service_window(PHONE_NUMBER_ID, BSUID)
    status, body = await send(http, meta, {"to": BSUID, "type": "text", "text": {"body": "Hello"}})
    assert status == 200
    wamid = body["messages"][0]["id"]
    await eventually(lambda: len(statuses_for(receiver, wamid)) == 1)
    (failed,) = statuses_for(receiver, wamid)
    assert failed["status"] == "failed" and failed["errors"][0]["code"] == 131026
    assert not any(m.delivered for m in meta.sent_messages(PHONE_NUMBER_ID))


async def test_recipient_takes_only_a_bsuid(meta: MetaSimulator, http: aiohttp.ClientSession) -> None:
    status, body = await send(http, meta, {"recipient": "16505551234", "type": "text", "text": {"body": "x"}})
    assert (status, body["error"]["code"]) == (400, 100)


async def test_a_phone_customer_with_a_bsuid_gets_both_ids_in_statuses(
    meta: MetaSimulator, receiver: WebhookReceiver, http: aiohttp.ClientSession
) -> None:
    await CustomerDriver(meta.url, http).send(
        PHONE_NUMBER_ID, [InboundSpec(kind="text", wa_id="16505551234", user_id=BSUID)]
    )
    _, body = await send(http, meta, {"to": "16505551234", "type": "text", "text": {"body": "x"}})
    wamid = body["messages"][0]["id"]
    await eventually(lambda: len(statuses_for(receiver, wamid)) == 3)
    assert {(s["recipient_id"], s["recipient_user_id"]) for s in statuses_for(receiver, wamid)} == {
        ("16505551234", BSUID)
    }


# -- Templates (Meta, "Message templates" and "Error codes"; reference whatsapp-cloud-api.md,
# "Checked 2026-12-07"): each WABA's registry; what Meta refuses in a template send.

SHIPPING = MetaTemplate(
    waba_id=WABA_ID,
    name="order_shipped",
    language="en_US",
    category="UTILITY",
    components=(
        {"type": "HEADER", "format": "IMAGE"},
        {"type": "BODY", "text": "Hi {{1}}, order {{2}} is on its way."},
        {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Track", "url": "https://example.com/t/{{1}}"}]},
    ),
)
PROMO = MetaTemplate(
    waba_id=WABA_ID, name="spring_sale", category="MARKETING", components=({"type": "BODY", "text": "Sale!"},)
)
CODE = MetaTemplate(
    waba_id=WABA_ID, name="login_code", category="AUTHENTICATION", components=({"type": "BODY", "text": "{{1}}"},)
)


def shipped(name: str = "order_shipped", *, body_params: int = 2) -> dict[str, Any]:
    return {
        "type": "template",
        "template": {
            "name": name,
            "language": {"code": "en_US"},
            "components": [
                {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://example.com/a.jpg"}}]},
                {"type": "body", "parameters": [{"type": "text", "text": str(n)} for n in range(body_params)]},
                {"type": "button", "sub_type": "url", "index": 0, "parameters": [{"type": "text", "text": "A1"}]},
            ],
        },
    }


async def test_the_template_list_is_paged_like_metas(meta: MetaSimulator, http: aiohttp.ClientSession) -> None:
    for template in (SHIPPING, PROMO, CODE):
        meta.upsert_template(template)
    url = f"{meta.url}/{GRAPH}/{WABA_ID}/message_templates"
    names: list[str] = []
    params: dict[str, str] = {"limit": "2"}
    while True:
        async with http.get(url, headers=bearer(ACCESS_TOKEN), params=params) as response:
            assert response.status == 200
            page = await response.json()
        names += [t["name"] for t in page["data"]]
        assert all({"name", "language", "category", "status", "components", "id"} <= set(t) for t in page["data"])
        if "after" not in page["paging"]["cursors"]:
            break
        params["after"] = page["paging"]["cursors"]["after"]
    assert sorted(names) == ["login_code", "order_shipped", "spring_sale"]
    async with http.get(url, headers=bearer(OTHER_ACCESS_TOKEN)) as response:
        assert response.status == 400  # another tenant's token sees no such WABA


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (shipped("ns_1234@order_shipped"), 132001),  # Genesys's namespace@name is not a Meta name
        (shipped("no_such_template"), 132001),
        (shipped(body_params=1), 132000),
        ({"type": "template", "template": {"name": "order_shipped", "language": {"code": "en_US"}}}, 132000),
    ],
)
async def test_template_sends_meta_refuses(
    meta: MetaSimulator, http: aiohttp.ClientSession, message: dict[str, Any], code: int
) -> None:
    meta.upsert_template(SHIPPING)
    status, body = await send(http, meta, {"to": "16505551234", **message})
    assert (status, body["error"]["code"]) == (400, code)


@pytest.mark.parametrize(("status_", "code"), [("PAUSED", 132015), ("DISABLED", 132016), ("PENDING", 132001)])
async def test_a_template_not_approved_is_refused(
    meta: MetaSimulator, http: aiohttp.ClientSession, status_: str, code: int
) -> None:
    meta.upsert_template(SHIPPING.model_copy(update={"status": status_}))
    status, body = await send(http, meta, {"to": "16505551234", **shipped()})
    assert (status, body["error"]["code"]) == (400, code)


async def test_an_authentication_template_needs_a_phone_number(
    meta: MetaSimulator, http: aiohttp.ClientSession
) -> None:
    meta.upsert_template(CODE)
    message = {
        "type": "template",
        "template": {
            "name": "login_code",
            "language": {"code": "en_US"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "123456"}]}],
        },
    }
    status, body = await send(http, meta, {"recipient": BSUID, **message})
    assert (status, body["error"]["code"]) == (400, 131062)
    status, _ = await send(http, meta, {"to": "16505551234", **message})
    assert status == 200


async def test_an_opt_out_stops_marketing_templates_only(
    meta: MetaSimulator, receiver: WebhookReceiver, http: aiohttp.ClientSession
) -> None:
    meta.upsert_template(SHIPPING)
    meta.upsert_template(PROMO)
    meta.opt_out(PHONE_NUMBER_ID, "16505551234")
    _, utility = await send(http, meta, {"to": "16505551234", **shipped()})
    promo_message = {"type": "template", "template": {"name": "spring_sale", "language": {"code": "en_US"}}}
    _, promo = await send(http, meta, {"to": "16505551234", **promo_message})
    await eventually(lambda: len(statuses_for(receiver, promo["messages"][0]["id"])) == 1)
    assert statuses_for(receiver, promo["messages"][0]["id"])[0]["errors"][0]["code"] == 131050
    await eventually(lambda: len(statuses_for(receiver, utility["messages"][0]["id"])) == 3)


async def test_the_marketing_messages_api_takes_marketing_templates_only(
    meta: MetaSimulator, http: aiohttp.ClientSession
) -> None:
    meta.upsert_template(SHIPPING)
    meta.upsert_template(PROMO)
    url = f"{meta.url}/{GRAPH}/{PHONE_NUMBER_ID}/marketing_messages"
    promo = {"type": "template", "template": {"name": "spring_sale", "language": {"code": "en_US"}}}
    for message, expected in ((promo, 200), (shipped(), 400)):
        body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "16505551234", **message}
        async with http.post(url, headers=bearer(ACCESS_TOKEN), json=body) as response:
            assert response.status == expected
    [sent] = [m for m in meta.sent_messages(PHONE_NUMBER_ID) if m.type == "template"]
    assert sent.endpoint == "marketing_messages"


async def test_a_template_change_is_told_on_the_wabas_webhook(
    meta: MetaSimulator, receiver: WebhookReceiver, http: aiohttp.ClientSession
) -> None:
    meta.upsert_template(SHIPPING)
    await meta.change_template(WABA_ID, "order_shipped", "en_US", status="PAUSED")
    await meta.change_template(WABA_ID, "order_shipped", "en_US", category="MARKETING")
    await eventually(lambda: len(receiver.received) == 2)
    assert all(signature_verifies(APP_SECRET, w) for w in receiver.received)
    changes = [orjson.loads(w.raw)["entry"][0] for w in receiver.received]
    assert [e["id"] for e in changes] == [WABA_ID, WABA_ID]
    (paused,), (recategorised,) = (e["changes"] for e in changes)
    assert paused["field"] == "message_template_status_update"
    assert paused["value"]["event"] == "PAUSED" and paused["value"]["message_template_name"] == "order_shipped"
    assert "metadata" not in paused["value"]  # a WABA's change names no phone number
    assert recategorised["field"] == "template_category_update"
    assert (recategorised["value"]["previous_category"], recategorised["value"]["new_category"]) == (
        "UTILITY",
        "MARKETING",
    )
    status, body = await send(http, meta, {"to": "16505551234", **shipped()})
    assert (status, body["error"]["code"]) == (400, 132015)  # paused: refused
