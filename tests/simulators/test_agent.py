"""The Genesys agent side: outbound webhooks, their signature and Genesys's retry policy."""

from __future__ import annotations

import base64
import hashlib
import hmac

import aiohttp
import orjson
import pytest
from PureCloudPlatformClientV2 import OpenMessageContent, OpenMessagingChannel, OpenNormalizedMessage

from tests.simulators.conftest import INTEGRATION_ID, OUTBOUND_SECRET, WebhookReceiver
from tests.simulators.test_genesys_validation import sdk_allowed_values
from wabridge.simulators import AgentDriver, GenesysSimulator, SimulatorRequestError


def verifies(secret: str, raw: bytes, header: str) -> bool:
    expected = base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(header, f"sha256={expected}")


async def test_agent_text_with_an_attachment_is_signed_and_its_file_downloadable(
    genesys: GenesysSimulator, receiver: WebhookReceiver, http: aiohttp.ClientSession
) -> None:
    result = await AgentDriver(genesys.url, http).send_text(
        INTEGRATION_ID, "16505551234", "Your order shipped ✓", attachments=["image"]
    )
    assert result["delivered"] is True
    (webhook,) = receiver.received
    assert webhook.path == "/webhooks/genesys"
    assert verifies(OUTBOUND_SECRET, webhook.raw, webhook.headers["X-Hub-Signature-256"])
    body = orjson.loads(webhook.raw)
    assert body["type"] == "Text" and body["direction"] == "Outbound" and body["text"] == "Your order shipped ✓"
    assert body["channel"]["to"] == {"id": "16505551234", "idType": "Phone"}
    assert body["channel"]["id"] == INTEGRATION_ID and body["channel"]["platform"] == "Open"
    attachment = body["content"][0]["attachment"]
    assert body["content"][0]["contentType"] == "Attachment" and attachment["mediaType"] == "Image"
    async with http.get(attachment["url"]) as response:
        data = await response.read()
        assert response.content_type == attachment["mime"] == "image/jpeg"
    assert data[:2] == b"\xff\xd8" and len(data) == attachment["contentSizeBytes"]
    # The outbound shape uses the SDK's enums.
    assert body["type"] in sdk_allowed_values(OpenNormalizedMessage, "type")
    assert body["direction"] in sdk_allowed_values(OpenNormalizedMessage, "direction")
    assert body["channel"]["platform"] in sdk_allowed_values(OpenMessagingChannel, "platform")
    assert body["content"][0]["contentType"] in sdk_allowed_values(OpenMessageContent, "content_type")


async def test_typing_event(genesys: GenesysSimulator, receiver: WebhookReceiver, http: aiohttp.ClientSession) -> None:
    await AgentDriver(genesys.url, http).send_typing(INTEGRATION_ID, "16505551234")
    body = orjson.loads(receiver.received[0].raw)
    assert body["type"] == "Event"
    assert body["events"] == [{"eventType": "Typing", "typing": {"type": "On", "duration": 5000}}]


@pytest.mark.parametrize(
    ("scripted", "attempts", "delivered"),
    [
        ([503, 429, 200], [503, 429, 200], True),
        ([500] * 10, [500] * 6, False),  # first try + 5 retries
        ([400], [400], False),  # a 4xx is not retried
    ],
)
async def test_genesys_retry_policy(
    genesys: GenesysSimulator,
    receiver: WebhookReceiver,
    http: aiohttp.ClientSession,
    scripted: list[int],
    attempts: list[int],
    delivered: bool,
) -> None:
    receiver.scripted_statuses = list(scripted)
    result = await AgentDriver(genesys.url, http).send_text(INTEGRATION_ID, "16505551234", "hello")
    assert [attempt["status"] for attempt in result["attempts"]] == attempts
    assert result["delivered"] is delivered
    raws = {webhook.raw for webhook in receiver.received}
    assert len(raws) == 1  # every retry carries the same message id and bytes


async def test_a_slow_receiver_times_out_and_is_retried(
    genesys: GenesysSimulator, receiver: WebhookReceiver, http: aiohttp.ClientSession
) -> None:
    genesys.update(outbound_timeout_s=0.2, outbound_retries=1)
    receiver.delay_s = 0.5
    result = await AgentDriver(genesys.url, http).send_text(INTEGRATION_ID, "16505551234", "hello")
    assert [(a["status"], a["error"]) for a in result["attempts"]] == [(None, "timeout"), (None, "timeout")]
    assert result["delivered"] is False


async def test_an_integration_without_webhook_is_refused(
    genesys: GenesysSimulator, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(SimulatorRequestError):
        await AgentDriver(genesys.url, http).send_text("integration-b", "1", "hello")
