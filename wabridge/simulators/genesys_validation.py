"""Genesys Open Messaging request validation, pure: a body in, the list of problems out.

It rejects what ``reference/genesys-open-messaging.md`` says Genesys rejects and no more. The enums
are those of the official SDK's models (``purecloudplatformclientv2``); tests check they stay equal.
Matching is exact-case, as the API documents the values (the SDK's own check is case-insensitive,
so a bridge that passes here also passes there).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

# OpenMessagingFromRecipient.id_type / OpenMessagingToRecipient.id_type
ID_TYPES = ("Email", "Phone", "Opaque")
# OpenContentAttachment.media_type
MEDIA_TYPES = ("Image", "Video", "Audio", "File", "Link")
# OpenInboundNormalizedReceipt.status (no "Read")
RECEIPT_STATUSES = ("Sent", "Delivered", "Failed", "Published", "Removed")
# ConversationReason.code
REASON_CODES = (
    "MessageExpired",
    "RateLimited",
    "MessageNotAllowed",
    "GeneralError",
    "UnsupportedMessage",
    "UnknownMessage",
    "InvalidMessageStructure",
    "InvalidDestination",
    "ServerError",
    "MediaTypeNotAllowed",
    "InvalidMediaContentLength",
    "RecipientOptedOut",
    "DataFiltered",
)
# OpenEvent.event_type
EVENT_TYPES = ("Typing",)
# ContentButtonResponse.type
BUTTON_RESPONSE_TYPES = ("Button", "QuickReply", "DatePicker")


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")

    def object(self, parent: dict[str, Any], key: str, path: str, *, required: bool) -> dict[str, Any] | None:
        value = parent.get(key)
        if value is None:
            if required:
                self.add(path, "is required")
            return None
        if not isinstance(value, dict):
            self.add(path, "must be an object")
            return None
        return value

    def string(self, parent: dict[str, Any], key: str, path: str, *, required: bool) -> str | None:
        value = parent.get(key)
        if value is None:
            if required:
                self.add(path, "is required")
            return None
        if not isinstance(value, str) or (required and not value):
            self.add(path, "must be a non-empty string" if required else "must be a string")
            return None
        return value

    def enum(self, parent: dict[str, Any], key: str, path: str, allowed: tuple[str, ...], *, required: bool) -> None:
        value = self.string(parent, key, path, required=required)
        if value is not None and value not in allowed:
            self.add(path, f"must be one of {', '.join(allowed)}; got {value!r}")

    def timestamp(self, parent: dict[str, Any], key: str, path: str) -> None:
        value = self.string(parent, key, path, required=True)
        if value is None:
            return
        try:
            datetime.fromisoformat(value)
        except ValueError:
            self.add(path, f"must be an ISO-8601 date-time; got {value!r}")


def _recipient(problems: _Problems, channel: dict[str, Any], key: str) -> None:
    recipient = problems.object(channel, key, f"channel.{key}", required=True)
    if recipient is not None:
        problems.string(recipient, "id", f"channel.{key}.id", required=True)
        problems.enum(recipient, "idType", f"channel.{key}.idType", ID_TYPES, required=True)


def _top_level_metadata(problems: _Problems, body: dict[str, Any]) -> None:
    metadata = body.get("metadata")
    if metadata is None:
        return
    if not isinstance(metadata, dict) or not all(isinstance(value, str) for value in metadata.values()):
        problems.add("metadata", "must be a map of string to string")


def _body(body: Any, problems: _Problems) -> dict[str, Any] | None:
    if not isinstance(body, dict):
        problems.add("body", "must be a JSON object")
        return None
    return body


def validate_message(body: Any) -> list[str]:
    """``OpenInboundNormalizedMessage`` for ``/inbound/open/message``."""
    problems = _Problems()
    message = _body(body, problems)
    if message is None:
        return problems.items
    channel = problems.object(message, "channel", "channel", required=True)
    if channel is not None:
        _recipient(problems, channel, "from")
        problems.timestamp(channel, "time", "channel.time")
        problems.string(channel, "messageId", "channel.messageId", required=False)
        problems.object(channel, "metadata", "channel.metadata", required=False)
    text = problems.string(message, "text", "text", required=False)
    content = message.get("content")
    if content is not None and not isinstance(content, list):
        problems.add("content", "must be an array")
        content = None
    if not text and not content:
        problems.add("text", "text or content is required")
    for index, item in enumerate(content or []):
        path = f"content[{index}]"
        if not isinstance(item, dict):
            problems.add(path, "must be an object")
            continue
        attachment = problems.object(item, "attachment", f"{path}.attachment", required=True)
        if attachment is None:
            continue
        problems.enum(attachment, "mediaType", f"{path}.attachment.mediaType", MEDIA_TYPES, required=True)
        problems.string(attachment, "url", f"{path}.attachment.url", required=True)
        problems.string(attachment, "mime", f"{path}.attachment.mime", required=True)
        for optional in ("id", "filename", "sha256", "text"):
            problems.string(attachment, optional, f"{path}.attachment.{optional}", required=False)
    _top_level_metadata(problems, message)
    return problems.items


def validate_receipt(body: Any) -> list[str]:
    """``OpenInboundNormalizedReceipt`` for ``/inbound/open/receipt``."""
    problems = _Problems()
    receipt = _body(body, problems)
    if receipt is None:
        return problems.items
    problems.string(receipt, "id", "id", required=True)
    channel = problems.object(receipt, "channel", "channel", required=True)
    if channel is not None:
        _recipient(problems, channel, "to")
        problems.timestamp(channel, "time", "channel.time")
    problems.enum(receipt, "status", "status", RECEIPT_STATUSES, required=True)
    reasons = receipt.get("reasons")
    if reasons is not None:
        if not isinstance(reasons, list):
            problems.add("reasons", "must be an array")
        else:
            for index, reason in enumerate(reasons):
                if not isinstance(reason, dict):
                    problems.add(f"reasons[{index}]", "must be an object")
                    continue
                problems.enum(reason, "code", f"reasons[{index}].code", REASON_CODES, required=True)
                problems.string(reason, "message", f"reasons[{index}].message", required=False)
    final = receipt.get("isFinalReceipt")
    if final is not None and not isinstance(final, bool):
        problems.add("isFinalReceipt", "must be a boolean")
    _top_level_metadata(problems, receipt)
    return problems.items


def validate_event(body: Any) -> list[str]:
    """``OpenInboundNormalizedEvent`` for ``/inbound/open/event``."""
    problems = _Problems()
    event = _body(body, problems)
    if event is None:
        return problems.items
    channel = problems.object(event, "channel", "channel", required=True)
    if channel is not None:
        _recipient(problems, channel, "from")
        problems.timestamp(channel, "time", "channel.time")
    events = event.get("events")
    if not isinstance(events, list) or not events:
        problems.add("events", "must be a non-empty array")
        return problems.items
    for index, item in enumerate(events):
        if not isinstance(item, dict):
            problems.add(f"events[{index}]", "must be an object")
            continue
        problems.enum(item, "eventType", f"events[{index}].eventType", EVENT_TYPES, required=True)
    return problems.items


def validate_structured_response(body: Any) -> list[str]:
    """``OpenInboundStructuredResponseMessage`` for ``/inbound/open/structured/response``."""
    problems = _Problems()
    response = _body(body, problems)
    if response is None:
        return problems.items
    channel = problems.object(response, "channel", "channel", required=True)
    if channel is not None:
        _recipient(problems, channel, "from")
        problems.timestamp(channel, "time", "channel.time")
        problems.string(channel, "messageId", "channel.messageId", required=False)
    button = problems.object(response, "buttonResponse", "buttonResponse", required=True)
    if button is not None:
        problems.enum(button, "type", "buttonResponse.type", BUTTON_RESPONSE_TYPES, required=True)
        problems.string(button, "text", "buttonResponse.text", required=False)
        problems.string(button, "payload", "buttonResponse.payload", required=False)
    problems.string(response, "originatingMessageId", "originatingMessageId", required=False)
    return problems.items
