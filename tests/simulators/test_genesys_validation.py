"""The Genesys simulator's validation against the reference and the official SDK's models."""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest
from PureCloudPlatformClientV2 import (
    ApiClient,
    ContentButtonResponse,
    ConversationReason,
    OpenContentAttachment,
    OpenEvent,
    OpenInboundMessageContent,
    OpenInboundMessageMessagingChannel,
    OpenInboundMessagingReceiptChannel,
    OpenInboundNormalizedMessage,
    OpenInboundNormalizedReceipt,
    OpenMessagingFromRecipient,
    OpenMessagingToRecipient,
)

from wabridge.simulators import genesys_validation as validation


def sdk_allowed_values(model: type, attribute: str) -> tuple[str, ...]:
    """The ``allowed_values`` list in the SDK setter of ``model.attribute``."""
    source = inspect.getsource(getattr(model, attribute).fset)
    match = re.search(r"allowed_values = \[(.*?)\]", source)
    assert match, f"{model.__name__}.{attribute} has no enum in this SDK version"
    return tuple(re.findall(r'"([^"]*)"', match.group(1)))


@pytest.mark.parametrize(
    ("ours", "model", "attribute"),
    [
        (validation.ID_TYPES, OpenMessagingFromRecipient, "id_type"),
        (validation.ID_TYPES, OpenMessagingToRecipient, "id_type"),
        (validation.MEDIA_TYPES, OpenContentAttachment, "media_type"),
        (validation.RECEIPT_STATUSES, OpenInboundNormalizedReceipt, "status"),
        (validation.REASON_CODES, ConversationReason, "code"),
        (validation.EVENT_TYPES, OpenEvent, "event_type"),
        (validation.BUTTON_RESPONSE_TYPES, ContentButtonResponse, "type"),
    ],
)
def test_enums_equal_the_official_sdk(ours: tuple[str, ...], model: type, attribute: str) -> None:
    assert sorted(ours) == sorted(sdk_allowed_values(model, attribute))


def test_top_level_metadata_is_a_string_map_in_the_sdk() -> None:
    assert OpenInboundNormalizedMessage().swagger_types["metadata"] == "dict(str, str)"


def _sdk_json(model: Any) -> dict[str, Any]:
    serialised: dict[str, Any] = ApiClient().sanitize_for_serialization(model)
    return serialised


def _sdk_message() -> OpenInboundNormalizedMessage:
    sender = OpenMessagingFromRecipient()
    sender.id, sender.id_type, sender.nickname = "16505551234", "Phone", "Sheena Nelson"
    channel = OpenInboundMessageMessagingChannel()
    channel.pcFrom, channel.time, channel.message_id = sender, "2025-06-08T21:39:43.000Z", "wamid.HBgL1"
    attachment = OpenContentAttachment()
    attachment.media_type, attachment.url, attachment.mime = "Image", "http://127.0.0.1/a.jpg", "image/jpeg"
    attachment.filename, attachment.sha256 = "a.jpg", "abc"
    content = OpenInboundMessageContent()
    content.attachment = attachment
    message = OpenInboundNormalizedMessage()
    message.channel, message.text, message.content = channel, "Taj Mahal", [content]
    message.metadata = {"tenant": "a"}
    return message


def test_a_message_built_with_the_sdk_models_is_accepted() -> None:
    body = _sdk_json(_sdk_message())
    assert body["channel"]["from"]["idType"] == "Phone"  # the SDK serialised to the wire names
    assert validation.validate_message(body) == []


def test_a_receipt_built_with_the_sdk_models_is_accepted() -> None:
    recipient = OpenMessagingToRecipient()
    recipient.id, recipient.id_type = "16505551234", "Phone"
    channel = OpenInboundMessagingReceiptChannel()
    channel.to, channel.time = recipient, "2023-01-21T16:47:08.592Z"
    reason = ConversationReason()
    reason.code, reason.message = "MessageExpired", "131047"
    receipt = OpenInboundNormalizedReceipt()
    receipt.id, receipt.channel, receipt.status = "agent-msg-1", channel, "Failed"
    receipt.reasons, receipt.is_final_receipt = [reason], True
    assert validation.validate_receipt(_sdk_json(receipt)) == []


REFERENCE_MESSAGE: dict[str, Any] = {
    "channel": {
        "messageId": "wamid.HBgL...",
        "time": "2025-06-08T21:39:43.000Z",
        "from": {
            "id": "16505551234",
            "idType": "Phone",
            "nickname": "Sheena Nelson",
            "firstName": "Sheena",
            "lastName": "Nelson",
        },
        "metadata": {"customAttributes": {"waPhoneNumberId": "106540352242922", "waType": "image"}},
    },
    "text": "Taj Mahal",
    "content": [
        {
            "attachment": {
                "mediaType": "Image",
                "url": "https://example/presigned",
                "mime": "image/jpeg",
                "filename": "wamid.HBgL....jpg",
                "sha256": "hash",
                "text": "Taj Mahal",
            }
        }
    ],
}
REFERENCE_RECEIPT: dict[str, Any] = {
    "id": "agent-message-id",
    "channel": {"to": {"id": "16505551234", "idType": "Phone"}, "time": "2023-01-21T16:47:08.592Z"},
    "status": "Delivered",
    "direction": "Outbound",
    "isFinalReceipt": True,
}


def _with(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``body`` with ``path`` (dots; ``[0]`` for lists) set, or removed for ``...``."""
    import copy

    result = copy.deepcopy(body)
    target: Any = result
    keys = [int(k) if k.isdigit() else k for k in re.split(r"\.|\[|\]\.?", path) if k != ""]
    for key in keys[:-1]:
        target = target[key]
    if value is ...:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return result


def test_the_reference_shapes_are_accepted() -> None:
    assert validation.validate_message(REFERENCE_MESSAGE) == []
    assert validation.validate_message(_with(REFERENCE_MESSAGE, "content", ...)) == []  # text only
    assert validation.validate_message(_with(REFERENCE_MESSAGE, "text", ...)) == []  # content only
    assert validation.validate_message(_with(REFERENCE_MESSAGE, "metadata", {"a": "b"})) == []
    assert validation.validate_receipt(REFERENCE_RECEIPT) == []
    for status in ("Delivered", "Failed", "Sent", "Published", "Removed"):
        assert validation.validate_receipt(_with(REFERENCE_RECEIPT, "status", status)) == []
    assert (
        validation.validate_event(
            {
                "channel": REFERENCE_RECEIPT["channel"] | {"from": {"id": "1", "idType": "Phone"}},
                "events": [{"eventType": "Typing"}],
            }
        )
        == []
    )
    assert (
        validation.validate_structured_response(
            {
                "channel": {"from": {"id": "1", "idType": "Phone"}, "time": "2025-06-08T21:39:43Z", "messageId": "w"},
                "buttonResponse": {"type": "QuickReply", "text": "Yes", "payload": "yes"},
                "originatingMessageId": "m",
            }
        )
        == []
    )


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("content[0].attachment.mediaType", "image/jpeg", "mediaType"),  # the known MIME-as-mediaType bug
        ("content[0].attachment.mediaType", "image", "mediaType"),
        ("content[0].attachment.mime", ..., "mime"),
        ("content[0].attachment.url", ..., "url"),
        ("metadata", {"customAttributes": {"a": "b"}}, "metadata"),
        ("metadata", {"count": 1}, "metadata"),
        ("channel.from.idType", "MSISDN", "idType"),
        ("channel.from.idType", ..., "idType"),
        ("channel.from.id", ..., "channel.from.id"),
        ("channel.time", ..., "channel.time"),
        ("channel.time", "yesterday", "channel.time"),
        ("channel", ..., "channel"),
    ],
)
def test_messages_genesys_rejects(path: str, value: Any, field: str) -> None:
    problems = validation.validate_message(_with(REFERENCE_MESSAGE, path, value))
    assert problems and any(field in problem for problem in problems), problems


def test_a_message_without_text_or_content_is_rejected() -> None:
    body = _with(_with(REFERENCE_MESSAGE, "text", ...), "content", ...)
    assert validation.validate_message(body) == ["text: text or content is required"]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("status", "Read"),
        ("status", "delivered"),
        ("status", ...),
        ("reasons", [{"code": "131047"}]),
        ("channel.to.idType", "Msisdn"),
        ("id", ...),
    ],
)
def test_receipts_genesys_rejects(path: str, value: Any) -> None:
    assert validation.validate_receipt(_with(REFERENCE_RECEIPT, path, value))


@pytest.mark.parametrize("value", ["image/jpeg", "Read", "phone", "MSISDN"])
def test_what_the_simulator_rejects_the_sdk_does_not_know_either(value: str) -> None:
    """Every enum value the simulator refuses is unknown to the SDK (or only a case variant of one)."""
    enums = [
        sdk_allowed_values(OpenContentAttachment, "media_type"),
        sdk_allowed_values(OpenInboundNormalizedReceipt, "status"),
        sdk_allowed_values(OpenMessagingFromRecipient, "id_type"),
    ]
    ours = [validation.MEDIA_TYPES, validation.RECEIPT_STATUSES, validation.ID_TYPES]
    for sdk_enum, our_enum in zip(enums, ours, strict=True):
        assert value not in our_enum
        assert value not in sdk_enum
