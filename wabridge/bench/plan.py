"""What a benchmark run sends, and when: a pure schedule computed before the first POST.

Every message has a wamid that names the run, the customer and the customer's sequence number
(``wamid.bench.{run}.{customer}.{seq}``), so whatever reaches Genesys can be matched back and its
per-customer order checked. Message ``i`` is sent at ``i / rate`` seconds by customer
``i % customers``; customer ``c`` belongs to tenant ``c % tenants``. A webhook carries up to
``batch_size`` messages of one tenant and goes out when its last message is due (Meta batches what
arrived meanwhile). A share of webhooks is delivered a second time, byte for byte, shortly after
the first delivery: Meta's duplicate deliveries, which the pipeline must deliver once.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

WAMID_PREFIX = "wamid.bench."
_RUN_ID = re.compile(r"^[a-z0-9]{1,24}$")
# A duplicate delivery follows its original after this many seconds (uniform).
DUPLICATE_DELAY_S = (0.05, 1.0)


@dataclass(frozen=True, slots=True)
class PlannedMessage:
    wamid: str
    customer: int
    tenant: int
    seq: int  # the customer's n-th message, from 0
    at_s: float  # when the customer sent it, from the start of the run (the Meta timestamp)
    media: bool


@dataclass(frozen=True, slots=True)
class PlannedPost:
    """One webhook POST: new messages, or a second delivery of an earlier post's exact body."""

    index: int  # position of the original delivery among the new posts
    at_s: float
    tenant: int
    messages: tuple[PlannedMessage, ...]
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class LoadShape:
    """The options that decide what is sent: rate, duration, customers, tenants and the mix."""

    rate: float
    duration_s: float
    customers: int = 100
    tenants: int = 1
    batch_size: int = 1
    media_share: float = 0.0
    duplicate_share: float = 0.0
    seed: int = 1

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.duration_s <= 0:
            raise ValueError("rate and duration must be positive")
        if self.tenants < 1 or self.customers < self.tenants:
            raise ValueError("need at least one tenant and at least one customer per tenant")
        if self.batch_size < 1:
            raise ValueError("batch size is at least 1")
        if not (0 <= self.media_share <= 1 and 0 <= self.duplicate_share <= 1):
            raise ValueError("shares are between 0 and 1")

    @property
    def message_count(self) -> int:
        return max(1, round(self.rate * self.duration_s))


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.match(run_id):
        raise ValueError("a run id is 1-24 lowercase letters or digits")
    return run_id


def bench_wamid(run_id: str, customer: int, seq: int) -> str:
    return f"{WAMID_PREFIX}{run_id}.{customer}.{seq}"


def run_prefix(run_id: str) -> str:
    """Every wamid of the run starts with this (the Genesys read-back filters on it)."""
    return f"{WAMID_PREFIX}{run_id}."


def parse_bench_wamid(wamid: str) -> tuple[str, int, int] | None:
    """``(run_id, customer, seq)`` of a benchmark wamid; None for any other id."""
    if not wamid.startswith(WAMID_PREFIX):
        return None
    parts = wamid[len(WAMID_PREFIX) :].split(".")
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return parts[0], int(parts[1]), int(parts[2])


def customer_wa_id(customer: int) -> str:
    """A plausible, distinct WhatsApp number per benchmark customer."""
    return f"1999{customer:07d}"


def tenant_of(customer: int, tenants: int) -> int:
    return customer % tenants


def plan_messages(run_id: str, shape: LoadShape) -> list[PlannedMessage]:
    """Every new message of the run, in the order customers send them."""
    check_run_id(run_id)
    sequences = [0] * shape.customers
    messages = []
    for i in range(shape.message_count):
        customer = i % shape.customers
        seq = sequences[customer]
        sequences[customer] += 1
        # An exact share, spread evenly: message i is media when the running count of media ticks over.
        media = math.floor((i + 1) * shape.media_share) > math.floor(i * shape.media_share)
        messages.append(
            PlannedMessage(
                wamid=bench_wamid(run_id, customer, seq),
                customer=customer,
                tenant=tenant_of(customer, shape.tenants),
                seq=seq,
                at_s=i / shape.rate,
                media=media,
            )
        )
    return messages


def plan_posts(messages: list[PlannedMessage], shape: LoadShape) -> list[PlannedPost]:
    """The webhook POSTs, in the order they are due (duplicates included)."""
    open_batches: dict[int, list[PlannedMessage]] = {}
    posts: list[PlannedPost] = []

    def close(tenant: int) -> None:
        batch = open_batches.pop(tenant)
        posts.append(PlannedPost(index=len(posts), at_s=batch[-1].at_s, tenant=tenant, messages=tuple(batch)))

    for message in messages:
        batch = open_batches.setdefault(message.tenant, [])
        batch.append(message)
        if len(batch) == shape.batch_size:
            close(message.tenant)
    for tenant in sorted(open_batches, key=lambda t: open_batches[t][-1].at_s):
        close(tenant)

    rng = random.Random(shape.seed)
    duplicates = [
        PlannedPost(
            index=post.index,
            at_s=post.at_s + rng.uniform(*DUPLICATE_DELAY_S),
            tenant=post.tenant,
            messages=post.messages,
            duplicate=True,
        )
        for post in posts
        if rng.random() < shape.duplicate_share
    ]
    return sorted([*posts, *duplicates], key=lambda post: post.at_s)
