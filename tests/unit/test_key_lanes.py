"""The key-ordered lanes in process, without a broker: order per key, concurrency across keys,
acks in offset order per partition, back-pressure, and a handler's bug stopping the stream."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from faust.types import TP

from wabridge.streams.lanes import KeyLanes, LaneHandlerError


@dataclass(eq=False)
class FakeMessage:
    tp: TP
    offset: int
    topic: str = "wa-inbound"

    @property
    def partition(self) -> int:
        return self.tp.partition


@dataclass(eq=False)
class FakeEvent:
    """What the lanes read of a Faust event: key, message position, ack."""

    key: str
    message: FakeMessage
    acks: list[tuple[int, int]] = field(repr=False, default_factory=list)

    def ack(self) -> None:
        self.acks.append((self.message.partition, self.message.offset))


def events(keys_by_partition: dict[int, list[str]], acks: list[tuple[int, int]]) -> list[FakeEvent]:
    made = []
    for partition, keys in keys_by_partition.items():
        for offset, key in enumerate(keys):
            made.append(FakeEvent(key, FakeMessage(TP("wa-inbound", partition), offset), acks))
    return made


async def test_one_key_in_order_keys_at_once_acks_in_offset_order() -> None:
    rng = random.Random(7)
    acks: list[tuple[int, int]] = []
    keys = [f"t:c{rng.randrange(12)}" for _ in range(200)]
    batch = events({0: keys[:100], 1: keys[100:]}, acks)
    handled: dict[str, list[int]] = {}
    running = 0
    most_at_once = 0

    async def handle(event: Any) -> None:
        nonlocal running, most_at_once
        running += 1
        most_at_once = max(most_at_once, running)
        await asyncio.sleep(rng.random() / 500)
        handled.setdefault(event.key, []).append(event.message.partition * 1000 + event.message.offset)
        running -= 1

    lanes = KeyLanes(handle, max_pending=1000, max_concurrency=64)
    for event in batch:
        lanes.submit(event)
    await lanes.drain()

    for key, positions in handled.items():
        assert positions == sorted(positions), f"{key} handled out of order"
    assert sum(len(p) for p in handled.values()) == 200
    assert most_at_once > 1, "different keys must run at the same time"
    for partition in (0, 1):
        assert [o for p, o in acks if p == partition] == list(range(100)), "acks must follow offsets"
    assert lanes.pending == 0 and lanes.lanes == 0


async def test_a_done_event_waits_for_an_older_one_of_its_partition_before_its_ack() -> None:
    acks: list[tuple[int, int]] = []
    slow, fast = events({0: ["t:slow", "t:fast"]}, acks)
    release = asyncio.Event()

    async def handle(event: Any) -> None:
        if event.key == "t:slow":
            await release.wait()

    lanes = KeyLanes(handle, max_pending=10, max_concurrency=10)
    lanes.submit(slow)
    lanes.submit(fast)
    await asyncio.sleep(0.01)
    assert acks == [], "offset 1 is done, but acking it alone would let a commit pass offset 0"
    assert lanes.pending == 2
    release.set()
    await lanes.drain()
    assert acks == [(0, 0), (0, 1)]


async def test_taking_more_than_max_pending_waits_until_events_are_acked() -> None:
    acks: list[tuple[int, int]] = []
    batch = events({0: [f"t:c{i}" for i in range(6)]}, acks)
    gate = asyncio.Event()

    async def handle(event: Any) -> None:
        await gate.wait()

    lanes = KeyLanes(handle, max_pending=4, max_concurrency=10)
    for event in batch[:4]:
        await lanes.wait_for_room()
        lanes.submit(event)
    blocked = asyncio.ensure_future(lanes.wait_for_room())
    await asyncio.sleep(0.01)
    assert not blocked.done(), "at max_pending the stream must not be read"
    gate.set()
    await asyncio.wait_for(blocked, 1)
    for event in batch[4:]:
        lanes.submit(event)
    await lanes.drain()
    assert [o for _, o in acks] == list(range(6))


async def test_a_handler_that_raises_stops_the_stream_and_leaves_its_event_unacked() -> None:
    acks: list[tuple[int, int]] = []
    batch = events({0: ["t:a", "t:bug", "t:a", "t:c"]}, acks)

    async def handle(event: Any) -> None:
        if event.key == "t:bug":
            raise RuntimeError("a bug")

    lanes = KeyLanes(handle, max_pending=10, max_concurrency=10)
    for event in batch:
        lanes.submit(event)
    with pytest.raises(LaneHandlerError) as raised:
        await lanes.drain()
    assert raised.value.offset == 1 and raised.value.key == "t:bug"
    await lanes.close(grace_s=1)
    assert acks == [(0, 0)], "nothing at or after the failed event may be acked"
    with pytest.raises(LaneHandlerError):
        lanes.submit(batch[0])
