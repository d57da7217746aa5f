"""The Genesys simulator over real HTTP: OAuth, inbound API, attachments, faults, inspection."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from tests.simulators.conftest import (
    CLIENT_ID,
    INTEGRATION_ID,
    OTHER_INTEGRATION_ID,
    TokenFactory,
    WebhookReceiver,
    basic_auth,
    eventually,
)
from tests.simulators.test_genesys_validation import REFERENCE_MESSAGE, REFERENCE_RECEIPT, _with
from wabridge.simulators import GenesysClient, GenesysSimulator
from wabridge.simulators.media_samples import jpeg_8x8_gray


def inbound_url(genesys: GenesysSimulator, kind: str = "message", integration: str = INTEGRATION_ID) -> str:
    return f"{genesys.url}/api/v2/conversations/messages/{integration}/inbound/open/{kind}"


async def post(
    http: aiohttp.ClientSession, url: str, body: Any, token: str | None, **kwargs: Any
) -> tuple[int, dict[str, Any], Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.post(url, json=body, headers=headers, **kwargs) as response:
        return response.status, dict(response.headers), await response.json()


def message_from(customer: str, text: str = "hi") -> dict[str, Any]:
    return {
        "channel": {
            "from": {"id": customer, "idType": "Phone"},
            "time": "2025-06-08T21:39:43.000Z",
            "messageId": f"wamid.{customer}.{text}",
        },
        "text": text,
    }


async def test_oauth_issues_tokens_only_for_the_right_secret(
    genesys: GenesysSimulator, http: aiohttp.ClientSession
) -> None:
    url = f"{genesys.url}/oauth/token"
    form = {"grant_type": "client_credentials"}
    async with http.post(url, data=form, headers=basic_auth(CLIENT_ID, "wrong")) as response:
        assert response.status == 401
        assert (await response.json())["error"] == "invalid_client"
    async with http.post(
        url, data={"grant_type": "password"}, headers=basic_auth(CLIENT_ID, "client-secret-a")
    ) as response:
        assert response.status == 400
    async with http.post(url, data=form, headers=basic_auth(CLIENT_ID, "client-secret-a")) as response:
        body = await response.json()
    assert response.status == 200
    assert body["token_type"] == "bearer" and body["expires_in"] == 86_400 and body["access_token"]


async def test_missing_bad_expired_and_revoked_tokens_get_401(
    genesys: GenesysSimulator, http: aiohttp.ClientSession, get_token: TokenFactory
) -> None:
    url = inbound_url(genesys)
    status, _, body = await post(http, url, message_from("1"), None)
    assert (status, body["code"]) == (401, "authentication.required")
    status, _, body = await post(http, url, message_from("1"), "not-a-token")
    assert (status, body["code"]) == (401, "bad.credentials")

    token = await get_token()
    assert (await post(http, url, message_from("1"), token))[0] == 200
    async with http.post(f"{genesys.url}/__sim/clients/{CLIENT_ID}/revoke") as response:
        assert (await response.json())["revoked"] == 1
    assert (await post(http, url, message_from("1"), token))[0] == 401

    genesys.upsert_client(GenesysClient(client_id="short-lived", client_secret="s", token_ttl_s=1))  # type: ignore[arg-type]
    short = await get_token("short-lived", "s")
    assert (await post(http, url, message_from("1"), short))[0] == 200
    statuses: list[int] = []

    async def expired() -> None:
        statuses.append((await post(http, url, message_from("1"), short))[0])

    deadline = time.monotonic() + 3
    while not statuses or statuses[-1] != 401:
        assert time.monotonic() < deadline, "the token never expired"
        await expired()
        await asyncio.sleep(0.05)


async def test_documented_shapes_are_accepted_with_a_stable_conversation_id(
    genesys: GenesysSimulator, http: aiohttp.ClientSession, get_token: TokenFactory
) -> None:
    token = await get_token()
    url = inbound_url(genesys) + "?prefetchConversationId=true"
    status, _, first = await post(http, url, message_from("16505551234", "one"), token)
    assert status == 200
    assert re.fullmatch(r"[0-9a-f]{32}", first["id"])
    assert first["text"] == "one" and first["channel"]["from"]["id"] == "16505551234"
    _, _, second = await post(http, url, message_from("16505551234", "two"), token)
    _, _, other_customer = await post(http, url, message_from("16505559999"), token)
    assert first["conversationId"] == second["conversationId"] != other_customer["conversationId"]
    assert first["id"] != second["id"]

    _, _, without_prefetch = await post(http, inbound_url(genesys), message_from("16505551234"), token)
    assert "conversationId" not in without_prefetch

    receipt_status, _, receipt = await post(http, inbound_url(genesys, "receipt"), REFERENCE_RECEIPT, token)
    assert receipt_status == 200 and receipt["status"] == "Delivered"
    failed = _with(REFERENCE_RECEIPT, "status", "Failed") | {"reasons": [{"code": "MessageExpired", "message": "x"}]}
    assert (await post(http, inbound_url(genesys, "receipt"), failed, token))[0] == 200
    typing = {
        "channel": {"from": {"id": "16505551234", "idType": "Phone"}, "time": "2025-06-08T21:39:43Z"},
        "events": [{"eventType": "Typing"}],
    }
    assert (await post(http, inbound_url(genesys, "event"), typing, token))[0] == 200
    structured = {
        "channel": typing["channel"],
        "originatingMessageId": "m1",
        "buttonResponse": {"type": "Button", "text": "Yes", "payload": "yes"},
    }
    status, _, answer = await post(http, inbound_url(genesys, "structured/response"), structured, token)
    assert status == 200 and answer["content"][0]["buttonResponse"]["payload"] == "yes"
    assert [item.kind for item in genesys.accepted(INTEGRATION_ID)] == [
        "message",
        "message",
        "message",
        "message",
        "receipt",
        "receipt",
        "event",
        "structured_response",
    ]


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        ("message", _with(REFERENCE_MESSAGE, "content[0].attachment.mediaType", "image/jpeg"), "mediaType"),
        ("message", _with(REFERENCE_MESSAGE, "content[0].attachment.mime", ...), "mime"),
        ("message", _with(REFERENCE_MESSAGE, "metadata", {"nested": {"a": "b"}}), "metadata"),
        ("message", _with(REFERENCE_MESSAGE, "channel.from.idType", "MSISDN"), "idType"),
        ("receipt", _with(REFERENCE_RECEIPT, "status", "Read"), "status"),
        ("receipt", _with(REFERENCE_RECEIPT, "reasons", [{"code": "Expired"}]), "reasons[0].code"),
    ],
)
async def test_invalid_bodies_get_a_genesys_400_and_are_not_accepted(
    genesys: GenesysSimulator, http: aiohttp.ClientSession, get_token: TokenFactory, kind: str, body: Any, field: str
) -> None:
    status, _, error = await post(http, inbound_url(genesys, kind), body, await get_token())
    assert status == 400
    assert error["code"] == "bad.request" and error["status"] == 400 and error["contextId"]
    assert field in error["message"]
    assert genesys.accepted() == []


async def test_an_integration_of_another_org_or_unknown_is_404(
    genesys: GenesysSimulator, http: aiohttp.ClientSession, get_token: TokenFactory
) -> None:
    other_org_token = await get_token("client-other-org", "s")
    assert (await post(http, inbound_url(genesys), message_from("1"), other_org_token))[0] == 404
    token = await get_token()
    assert (await post(http, inbound_url(genesys, integration="nope"), message_from("1"), token))[0] == 404


async def test_attachments_are_fetched_and_checked(
    genesys: GenesysSimulator, http: aiohttp.ClientSession, get_token: TokenFactory, receiver: WebhookReceiver
) -> None:
    jpeg = jpeg_8x8_gray()
    receiver.files["small.jpg"] = (jpeg, "image/jpeg")
    receiver.files["huge.pdf"] = (b"%PDF" + bytes(25 * 1024 * 1024), "application/pdf")
    body = _with(
        REFERENCE_MESSAGE,
        "content",
        [
            {"attachment": {"mediaType": "Image", "url": f"{receiver.url}/files/small.jpg", "mime": "image/jpeg"}},
            {"attachment": {"mediaType": "File", "url": f"{receiver.url}/files/huge.pdf", "mime": "application/pdf"}},
            {"attachment": {"mediaType": "File", "url": f"{receiver.url}/files/gone.pdf", "mime": "application/pdf"}},
            {"attachment": {"mediaType": "File", "url": "http://127.0.0.1:9/closed", "mime": "application/pdf"}},
        ],
    )
    assert (await post(http, inbound_url(genesys), body, await get_token()))[0] == 200
    await eventually(
        lambda: all(fetch.done for fetch in genesys.attachment_fetches()) and len(genesys.attachment_fetches()) == 4
    )
    small, huge, gone, closed = genesys.attachment_fetches(INTEGRATION_ID)
    assert small.reachable and small.error is None and small.size_bytes == len(jpeg)
    assert small.content_type == "image/jpeg"
    assert huge.reachable and huge.error == "InvalidMediaContentLength"
    assert not gone.reachable and gone.status == 404
    assert not closed.reachable and closed.error is not None and closed.error.startswith("unreachable")


async def test_the_default_rate_limit_is_300_per_minute_per_client_and_can_be_switched_off(
    genesys: GenesysSimulator, http: aiohttp.ClientSession, get_token: TokenFactory
) -> None:
    token = await get_token()
    url = inbound_url(genesys)
    statuses = [(await post(http, url, message_from(str(i)), token))[0] for i in range(300)]
    assert statuses == [200] * 300
    status, headers, body = await post(http, url, message_from("301"), token)
    assert status == 429
    retry_after = int(headers["Retry-After"])
    assert 55 <= retry_after <= 60
    assert body == {
        "message": f"Rate limit exceeded the maximum. Retry the request in [{retry_after}] seconds",
        "code": "too.many.requests.retry.after",
        "status": 429,
    }
    # Another client is not limited by this one's usage.
    assert (await post(http, url, message_from("x"), await get_token("client-other-org", "s")))[0] == 404
    async with http.patch(f"{genesys.url}/__sim/config", json={"rate_limit_per_minute": 0}) as response:
        assert response.status == 204
    assert (await post(http, url, message_from("302"), token))[0] == 200


async def test_faults_apply_per_integration_and_per_client(
    genesys: GenesysSimulator, http: aiohttp.ClientSession, get_token: TokenFactory
) -> None:
    token = await get_token()
    genesys.upsert_client(GenesysClient(client_id="client-b", client_secret="b"))  # type: ignore[arg-type]
    token_b = await get_token("client-b", "b")
    async with http.put(
        f"{genesys.url}/__sim/faults/integration/{INTEGRATION_ID}", json={"error_rate": 1.0, "error_status": 502}
    ) as response:
        assert response.status == 204
    assert (await post(http, inbound_url(genesys), message_from("1"), token))[0] == 502
    assert (await post(http, inbound_url(genesys, integration=OTHER_INTEGRATION_ID), message_from("1"), token))[
        0
    ] == 200
    async with http.delete(f"{genesys.url}/__sim/faults/integration/{INTEGRATION_ID}") as response:
        assert response.status == 204

    async with http.put(
        f"{genesys.url}/__sim/faults/client/{CLIENT_ID}", json={"throttle_rate": 1.0, "throttle_retry_after_s": 7}
    ) as response:
        assert response.status == 204
    status, headers, _ = await post(http, inbound_url(genesys), message_from("1"), token)
    assert (status, headers["Retry-After"]) == (429, "7")
    assert (await post(http, inbound_url(genesys), message_from("1"), token_b))[0] == 200

    async with http.put(
        f"{genesys.url}/__sim/faults/client/client-b", json={"latency": {"kind": "fixed", "ms": 200}}
    ) as response:
        assert response.status == 204
    started = time.perf_counter()
    assert (await post(http, inbound_url(genesys), message_from("1"), token_b))[0] == 200
    assert time.perf_counter() - started >= 0.2


@pytest.mark.parametrize(("mode", "processed"), [("before", False), ("after", True)])
async def test_timeouts_leave_the_client_waiting(
    genesys: GenesysSimulator, http: aiohttp.ClientSession, get_token: TokenFactory, mode: str, processed: bool
) -> None:
    token = await get_token()
    async with http.put(
        f"{genesys.url}/__sim/faults/integration/{INTEGRATION_ID}",
        json={"timeout_rate": 1.0, "timeout_hold_s": 5, "timeout_mode": mode},
    ) as response:
        assert response.status == 204
    with pytest.raises(TimeoutError):
        await post(http, inbound_url(genesys), message_from("1"), token, timeout=aiohttp.ClientTimeout(total=0.3))
    assert (len(genesys.accepted(INTEGRATION_ID)) == 1) is processed


async def test_the_request_log_filters_and_clears(
    genesys: GenesysSimulator, http: aiohttp.ClientSession, get_token: TokenFactory
) -> None:
    token = await get_token()
    await post(http, inbound_url(genesys), message_from("1", "héllo"), token)
    await post(http, inbound_url(genesys, integration=OTHER_INTEGRATION_ID), message_from("2"), token)
    await post(http, inbound_url(genesys, "receipt"), _with(REFERENCE_RECEIPT, "status", "Read"), token)
    async with http.get(f"{genesys.url}/__sim/requests", params={"integration": INTEGRATION_ID}) as response:
        entries = (await response.json())["requests"]
    assert [(e["method"], e["path"].rsplit("/", 1)[-1], e["status"]) for e in entries] == [
        ("POST", "message", 200),
        ("POST", "receipt", 400),
    ]
    first = entries[0]
    assert first["body"]["text"] == "héllo"
    assert first["headers"]["Authorization"] == f"Bearer {token}"
    assert re.search(r"\.\d{6}\+00:00$", first["received_at"])
    assert (
        datetime.fromisoformat(first["received_at"]).microsecond
        == round(first["received_at_epoch"] % 1 * 1e6) % 1_000_000
    )
    async with http.get(f"{genesys.url}/__sim/requests", params={"path": "/oauth"}) as response:
        assert [e["path"] for e in (await response.json())["requests"]] == ["/oauth/token"]
    async with http.delete(f"{genesys.url}/__sim/requests") as response:
        assert response.status == 204
    async with http.get(f"{genesys.url}/__sim/requests") as response:
        assert (await response.json())["requests"] == []


async def test_tenants_are_registered_at_runtime_through_the_admin_api(
    genesys: GenesysSimulator, http: aiohttp.ClientSession
) -> None:
    async with http.put(f"{genesys.url}/__sim/clients/tenant-c", json={"client_secret": "c-secret"}) as response:
        assert response.status == 204
    async with http.put(f"{genesys.url}/__sim/integrations/integration-c", json={}) as response:
        assert response.status == 204
    async with http.put(f"{genesys.url}/__sim/clients/bad", json={"token_ttl_s": "soon"}) as response:
        assert response.status == 400
    async with http.post(
        f"{genesys.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic_auth("tenant-c", "c-secret"),
    ) as response:
        token = (await response.json())["access_token"]
    status, _, _ = await post(http, inbound_url(genesys, integration="integration-c"), message_from("1"), token)
    assert status == 200
    async with http.get(f"{genesys.url}/__sim/config") as response:
        config = await response.json()
    assert "c-secret" not in str(config)  # secrets never print
    async with http.delete(f"{genesys.url}/__sim/integrations/integration-c") as response:
        assert response.status == 204
    status, _, _ = await post(http, inbound_url(genesys, integration="integration-c"), message_from("1"), token)
    assert status == 404
