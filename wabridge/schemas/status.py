"""Delivery status of one message, ranked so that tracking only ever moves forward.

WhatsApp reports statuses out of order and may skip ``delivered`` (reference: "Status updates").
Genesys receipts arrive late and may be retried. Whatever order they come in, the tracked status is
the highest-ranked one seen, and ``failed`` is terminal: once failed, a message stays failed.
"""

from __future__ import annotations

from enum import StrEnum


class MessageStatus(StrEnum):
    """Lifecycle of a tracked message (inbound: ``received`` onwards; outbound: ``accepted`` onwards)."""

    RECEIVED = "received"  # inbound: taken from the webhook, not yet at the agent
    ACCEPTED = "accepted"  # outbound: Meta answered the send with a wamid (accepted, not sent)
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    PLAYED = "played"  # voice message played by the customer
    FAILED = "failed"  # terminal

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def is_terminal(self) -> bool:
        return self is MessageStatus.FAILED


# received and accepted are the same step (the first one) of the two directions. failed outranks
# everything: an explicit failure from Meta or Genesys is never hidden by an earlier success.
_RANK: dict[MessageStatus, int] = {
    MessageStatus.RECEIVED: 0,
    MessageStatus.ACCEPTED: 0,
    MessageStatus.SENT: 1,
    MessageStatus.DELIVERED: 2,
    MessageStatus.READ: 3,
    MessageStatus.PLAYED: 4,
    MessageStatus.FAILED: 100,
}

# The values Meta sends in ``statuses[].status``.
META_STATUSES: frozenset[MessageStatus] = frozenset(
    {MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.PLAYED, MessageStatus.FAILED}
)


def advance(current: MessageStatus | None, new: MessageStatus) -> MessageStatus:
    """The status after ``new`` arrives: never backwards, never out of ``failed``.

    Equal ranks keep ``current`` (a duplicate, or received/accepted), so the answer only changes
    when ``new`` is strictly further along.
    """
    if current is None:
        return new
    if current.is_terminal:
        return current
    return new if new.rank > current.rank else current


def is_advance(current: MessageStatus | None, new: MessageStatus) -> bool:
    """Whether recording ``new`` changes the tracked status (worth a write, a receipt, a metric)."""
    return advance(current, new) is not current
