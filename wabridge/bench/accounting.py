"""What was sent against what reached Genesys: lost, duplicates, order, end-to-end latency. Pure.

Definitions (the report's wording follows them):

* **accepted**: a message the edge answered 2xx for, in at least one delivery (acknowledged to Meta).
* **lost**: accepted, and never seen at Genesys.
* **duplicates**: arrivals at Genesys beyond the first of the same ``channel.messageId``.
* **out of order**: a message whose first arrival came after the first arrival of a *later*
  message (higher sequence number) of the same customer. The generator never has two webhooks of
  one customer in flight at once, so the sequence number is the order the edge acknowledged them in.
* **unexpected**: an arrival that carries this run's wamid prefix but names no message the run sent.
* **misrouted**: an arrival whose ``channel.from.id`` is not the customer who sent the message.
* **end-to-end latency**: from the moment the customer sent the message (the Meta timestamp, kept
  by the harness to the microsecond: the webhook's own ``timestamp`` has whole seconds) to its first
  arrival at Genesys at or after that moment.
* **throughput**: the rate messages came out at Genesys, sustained: first arrivals per second between
  the first and the last first arrival (a pipeline that keeps up shows the offered rate; one that
  falls behind shows the rate it drains at).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SentMessage:
    wamid: str
    customer: str  # who sent it: order is checked per customer
    from_id: str  # what Genesys must see as ``channel.from.id``
    seq: int
    sent_at: float  # wall-clock epoch seconds
    accepted: bool


@dataclass(frozen=True, slots=True)
class Arrival:
    """One message Genesys accepted, in the order it accepted them."""

    message_id: str
    from_id: str
    arrived_at: float  # wall-clock epoch seconds


@dataclass(frozen=True)
class Accounting:
    sent: int
    accepted: int
    arrived: int  # accepted messages seen at Genesys at least once
    lost: int
    duplicates: int
    out_of_order: int
    unexpected: int
    misrouted: int
    arrived_unaccepted: int  # refused or unanswered by the edge, yet delivered (not an error)
    throughput_msgs_s: float
    e2e_ms: list[float] = field(repr=False)
    lost_examples: tuple[str, ...] = ()
    duplicate_examples: tuple[str, ...] = ()
    out_of_order_examples: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """Every accepted message has arrived (what the drain phase waits for)."""
        return self.lost == 0


EXAMPLES = 5


def account(sent: Iterable[SentMessage], arrivals: Sequence[Arrival]) -> Accounting:
    """Compare the run's messages with Genesys's arrivals (given in Genesys's acceptance order)."""
    by_wamid = {message.wamid: message for message in sent}
    arrival_counts: Counter[str] = Counter()
    e2e_ms: list[float] = []
    highest_seq: dict[str, int] = {}
    out_of_order: list[str] = []
    unexpected = misrouted = 0
    first_arrivals: list[float] = []
    for arrival in arrivals:
        message = by_wamid.get(arrival.message_id)
        if message is None:
            unexpected += 1
            continue
        arrival_counts[arrival.message_id] += 1
        if arrival.from_id != message.from_id:
            misrouted += 1
        if arrival_counts[arrival.message_id] > 1:
            continue
        seen = highest_seq.get(message.customer, -1)
        if message.seq < seen:
            out_of_order.append(message.wamid)
        else:
            highest_seq[message.customer] = message.seq
    # Latency is taken from the first arrival at or after the send: an earlier copy is not this send's.
    timed: set[str] = set()
    for arrival in arrivals:
        message = by_wamid.get(arrival.message_id)
        if message is None or arrival.arrived_at < message.sent_at or message.wamid in timed:
            continue
        timed.add(message.wamid)
        e2e_ms.append((arrival.arrived_at - message.sent_at) * 1000)
        first_arrivals.append(arrival.arrived_at)
    accepted = [m for m in by_wamid.values() if m.accepted]
    lost = [m.wamid for m in accepted if arrival_counts[m.wamid] == 0]
    duplicated = [wamid for wamid, count in arrival_counts.items() if count > 1]
    throughput = 0.0
    if len(first_arrivals) > 1 and max(first_arrivals) > min(first_arrivals):
        throughput = (len(first_arrivals) - 1) / (max(first_arrivals) - min(first_arrivals))
    return Accounting(
        sent=len(by_wamid),
        accepted=len(accepted),
        arrived=len(accepted) - len(lost),
        lost=len(lost),
        duplicates=sum(arrival_counts[wamid] - 1 for wamid in duplicated),
        out_of_order=len(out_of_order),
        unexpected=unexpected,
        misrouted=misrouted,
        arrived_unaccepted=sum(1 for m in by_wamid.values() if not m.accepted and arrival_counts[m.wamid] > 0),
        throughput_msgs_s=throughput,
        e2e_ms=e2e_ms,
        lost_examples=tuple(lost[:EXAMPLES]),
        duplicate_examples=tuple(duplicated[:EXAMPLES]),
        out_of_order_examples=tuple(out_of_order[:EXAMPLES]),
    )
