"""The agent side of Genesys: outbound webhooks (agent text, attachments, typing) as Genesys sends them.

``build_*`` are pure and give the ``OpenNormalizedMessage`` bodies; ``deliver_outbound`` signs and posts
one with Genesys's retry policy; ``AgentDriver`` asks a running Genesys simulator to do both (the
simulator hosts the attachments and records every delivery), which is what the CLI uses.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from wabridge.simulators.hosting import SimulatorRequestError


@dataclass(frozen=True, slots=True)
class AgentAttachment:
    """An attachment already hosted at ``url`` (the Genesys simulator serves the bytes)."""

    media_type: str  # Image | Video | Audio | File
    url: str
    mime: str
    filename: str
    size_bytes: int
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def content_attachment(self) -> dict[str, Any]:
        """As Genesys's ``ContentAttachment`` (a template's media header carries one)."""
        return {
            "id": self.id,
            "mediaType": self.media_type,
            "url": self.url,
            "mime": self.mime,
            "filename": self.filename,
            "contentSizeBytes": self.size_bytes,
        }


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _channel(integration_id: str, to_id: str, to_id_type: str, nickname: str, message_id: str) -> dict[str, Any]:
    return {
        "id": integration_id,
        "platform": "Open",
        "type": "Private",
        "messageId": message_id,
        "to": {"id": to_id, "idType": to_id_type},
        "from": {"id": integration_id, "idType": "Opaque", "nickname": nickname},
        "time": _now_iso(),
    }


def build_agent_text(
    *,
    integration_id: str,
    to_id: str,
    text: str,
    attachments: list[AgentAttachment] | None = None,
    to_id_type: str = "Phone",
    nickname: str = "Sim Agent",
    message_id: str | None = None,
) -> dict[str, Any]:
    """An agent's ``Text`` message, optionally with attachments."""
    message_id = message_id or uuid.uuid4().hex
    body: dict[str, Any] = {
        "id": message_id,
        "channel": _channel(integration_id, to_id, to_id_type, nickname, message_id),
        "type": "Text",
        "text": text,
        "direction": "Outbound",
        "originatingEntity": "Human",
    }
    if attachments:
        body["content"] = [
            {
                "contentType": "Attachment",
                "attachment": {
                    "id": attachment.id,
                    "mediaType": attachment.media_type,
                    "url": attachment.url,
                    "mime": attachment.mime,
                    "filename": attachment.filename,
                    "contentSizeBytes": attachment.size_bytes,
                },
            }
            for attachment in attachments
        ]
    return body


def build_agent_structured(
    *,
    integration_id: str,
    to_id: str,
    content: list[dict[str, Any]],
    text: str | None = None,
    to_id_type: str = "Phone",
    nickname: str = "Sim Agent",
    message_id: str | None = None,
) -> dict[str, Any]:
    """An agent's ``Structured`` message: quick replies, a list picker or a notification template
    (``content`` items in Genesys's ``ConversationMessageContent`` shape)."""
    message_id = message_id or uuid.uuid4().hex
    body: dict[str, Any] = {
        "id": message_id,
        "channel": _channel(integration_id, to_id, to_id_type, nickname, message_id),
        "type": "Structured",
        "content": content,
        "direction": "Outbound",
        "originatingEntity": "Human",
    }
    if text is not None:
        body["text"] = text
    return body


def quick_replies(*choices: str) -> list[dict[str, Any]]:
    """``QuickReply`` content items, one per choice (its payload a slug of the text)."""
    items = [{"text": c, "payload": c.lower().replace(" ", "-"), "action": "Message"} for c in choices]
    return [{"contentType": "QuickReply", "quickReply": item} for item in items]


def list_picker(
    sections: dict[str, list[str]], *, title: str | None = None, button_label: str | None = None
) -> list[dict[str, Any]]:
    """One ``ListPicker`` content item: section title -> item titles, with the prompt the agent
    wrote (``receivedMessage``: title, buttonLabel) when given."""
    picker: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "sections": [
            {"title": name, "items": [{"id": f"{name}-{n}", "title": item} for n, item in enumerate(items)]}
            for name, items in sections.items()
        ],
    }
    prompt = {key: value for key, value in (("title", title), ("buttonLabel", button_label)) if value}
    if prompt:
        picker["receivedMessage"] = prompt
    return [{"contentType": "ListPicker", "listPicker": picker}]


def notification(
    name: str,
    language: str,
    *parameters: str,
    text: str | None = None,
    header_text: tuple[str, ...] = (),
    header_media: dict[str, Any] | None = None,
    buttons: tuple[dict[str, Any], ...] = (),
) -> list[dict[str, Any]]:
    """A ``Notification`` content item (``ContentNotificationTemplate``): the template ``name``
    (Genesys names WhatsApp's ``namespace@name``) with body parameters in order, and optionally a
    Text header's parameters or a Media header (a ``ContentAttachment``), and buttons
    (``NotificationTemplateButton``: type QuickReply | Url | PhoneNumber, index, payload, parameters)."""
    body: dict[str, Any] = {"parameters": [{"name": str(n), "text": p} for n, p in enumerate(parameters, start=1)]}
    if text is not None:
        body["text"] = text
    template: dict[str, Any] = {"id": name, "language": language, "body": body}
    if header_media is not None:
        template["header"] = {"type": "Media", "media": header_media}
    elif header_text:
        template["header"] = {"type": "Text", "parameters": [{"name": "1", "text": p} for p in header_text]}
    if buttons:
        template["buttons"] = list(buttons)
    return [{"contentType": "Notification", "template": template}]


def build_inbound_receipt(
    *,
    integration_id: str,
    genesys_message_id: str,
    wamid: str | None,
    to_id: str,
    to_id_type: str = "Phone",
    nickname: str = "Sim Agent",
    status: str = "Delivered",
) -> dict[str, Any]:
    """The ``Receipt`` Genesys posts once a customer's (inbound) message reached the agent."""
    channel = _channel(integration_id, to_id, to_id_type, nickname, wamid or genesys_message_id)
    return {
        "id": genesys_message_id,
        "channel": channel,
        "type": "Receipt",
        "status": status,
        "direction": "Inbound",
        "isFinalReceipt": True,
    }


def build_agent_typing(
    *,
    integration_id: str,
    to_id: str,
    to_id_type: str = "Phone",
    nickname: str = "Sim Agent",
    duration_ms: int = 5000,
) -> dict[str, Any]:
    """A typing ``Event`` (the agent started typing)."""
    message_id = uuid.uuid4().hex
    return {
        "id": message_id,
        "channel": _channel(integration_id, to_id, to_id_type, nickname, message_id),
        "type": "Event",
        "events": [{"eventType": "Typing", "typing": {"type": "On", "duration": duration_ms}}],
        "direction": "Outbound",
    }


def sign_outbound(secret: str, raw_body: bytes) -> str:
    """``X-Hub-Signature-256`` as Genesys sends it: ``sha256=<base64 HMAC-SHA256(secret, body)>``."""
    digest = hmac.new(secret.encode(), raw_body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


@dataclass(slots=True)
class DeliveryAttempt:
    started_at: float
    status: int | None  # None: no HTTP answer (timeout or connection error)
    error: str | None = None


@dataclass(slots=True)
class OutboundDelivery:
    message_id: str
    integration_id: str
    url: str
    body: dict[str, Any]
    attempts: list[DeliveryAttempt] = field(default_factory=list)
    delivered: bool = False
    finished: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _is_retryable(status: int | None) -> bool:
    return status is None or status == 429 or status >= 500


async def deliver_outbound(
    session: aiohttp.ClientSession,
    delivery: OutboundDelivery,
    *,
    secret: str,
    timeout_s: float = 10.0,
    retries: int = 5,
    retry_delay_s: float = 5.0,
) -> OutboundDelivery:
    """Post ``delivery.body`` the way Genesys does: wait ``timeout_s``, retry on timeout, 429 and 5xx.

    The same bytes are sent on every attempt (same message id), so the receiver can dedupe.
    """
    raw = orjson.dumps(delivery.body)
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign_outbound(secret, raw)}
    for attempt_number in range(retries + 1):
        if attempt_number:
            await asyncio.sleep(retry_delay_s)
        attempt = DeliveryAttempt(started_at=time.time(), status=None)
        delivery.attempts.append(attempt)
        try:
            async with session.post(
                delivery.url, data=raw, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as response:
                attempt.status = response.status
        except TimeoutError:
            attempt.error = "timeout"
        except aiohttp.ClientError as error:
            attempt.error = f"{type(error).__name__}: {error}"
        if not _is_retryable(attempt.status):
            break
    last_status = delivery.attempts[-1].status
    delivery.delivered = last_status is not None and 200 <= last_status < 300
    delivery.finished = True
    return delivery


class AgentDriver:
    """Drive a running Genesys simulator's agent: it builds, signs, hosts attachments and delivers."""

    def __init__(self, genesys_sim_url: str, session: aiohttp.ClientSession) -> None:
        self._base = genesys_sim_url.rstrip("/")
        self._session = session

    async def send_text(
        self,
        integration_id: str,
        to_id: str,
        text: str,
        *,
        attachments: list[str] | None = None,
        wait: bool = True,
        to_id_type: str = "Phone",
    ) -> dict[str, Any]:
        """Send agent text; ``attachments`` are sample kinds (image, video, audio, document);
        ``to_id_type`` Opaque for a customer Genesys knows by a BSUID.

        With ``wait`` the call returns once Genesys's retry policy has finished, with every attempt.
        """
        return await self._post(
            {
                "integration_id": integration_id,
                "to_id": to_id,
                "to_id_type": to_id_type,
                "type": "Text",
                "text": text,
                "attachments": attachments or [],
                "wait": wait,
            }
        )

    async def send_structured(
        self, integration_id: str, to_id: str, content: list[dict[str, Any]], *, text: str | None = None,
        wait: bool = True,
    ) -> dict[str, Any]:  # fmt: skip
        """Send a ``Structured`` agent message (``quick_replies``, ``list_picker``, ``notification``)."""
        payload = {"integration_id": integration_id, "to_id": to_id, "type": "Structured", "content": content}
        return await self._post({**payload, "text": text, "wait": wait})

    async def send_typing(self, integration_id: str, to_id: str, *, wait: bool = True) -> dict[str, Any]:
        return await self._post({"integration_id": integration_id, "to_id": to_id, "type": "Event", "wait": wait})

    async def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        async with self._session.post(f"{self._base}/__sim/agent/messages", json=payload) as response:
            body: dict[str, Any] = await response.json(loads=orjson.loads)
            if response.status >= 400:
                raise SimulatorRequestError(f"Genesys simulator refused the agent message: {body}")
            return body
