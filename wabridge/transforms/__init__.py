"""Pure transforms between WhatsApp and Genesys shapes: no I/O, deterministic, tested alone."""

from wabridge.transforms.inbound import (
    AGENT_TEXT_LIMIT,
    MissingAttachmentError,
    split_text,
    to_open_message,
    to_open_messages,
    to_structured_response,
)
from wabridge.transforms.receipts import parse_outbound_webhook, reason_code, to_open_receipt

__all__ = [
    "AGENT_TEXT_LIMIT",
    "MissingAttachmentError",
    "parse_outbound_webhook",
    "reason_code",
    "split_text",
    "to_open_message",
    "to_open_messages",
    "to_open_receipt",
    "to_structured_response",
]
