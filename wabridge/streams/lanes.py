"""Key-ordered concurrency inside a partition (ARCHITECTURE.md, invariant 3).

A stage agent hands its stream to :func:`run_in_lanes` with the effect for one event. Every key
(``tenant_id:customer_id``) gets a *lane*: its events run strictly one after another, while other
keys' lanes run at the same time. A lane exists only while its key has work; idle lanes go away.

Offsets. Faust commits the contiguous run of acked offsets, but its bookkeeping
(``Consumer._new_offset``) assumes acks arrive roughly in offset order: with a committed offset
``C``, an unfinished ``C`` and an acked ``C+1`` it commits ``C+2``; with no committed offset yet it
commits any acked run, whatever is unfinished below it (``tests/streams/test_offsets.py`` pins
this). Lanes finish out of order by design, so they ack in offset order per partition themselves:
an event that is done waits, still counted as pending, until every older event of its partition
is done. Faust then only ever sees contiguous acks and commits strictly below the oldest
unfinished event.

Bounds. ``max_pending`` caps the events pulled and not yet acked (running, queued in a lane, or
done and waiting for an older event of their partition); at the cap the stream is not read, so
Faust's buffers fill and the consumer pauses the partitions (back-pressure). It is also the most
that a crash makes the group process again. ``max_concurrency`` caps the effects running at once.
A slow key delays the others only once ``max_pending`` events have piled up behind it in its
partition: size it for the longest stall one key may cause (events are small).

Handler contract. ``handler(event)`` returns when the event's effect is done, or when it has
itself routed the event to ``ERROR_EVENTS`` (permanent failure); it retries transient failures
itself (honouring ``TransientError.retry_after``). It must be idempotent: after a crash, events
not yet committed run again. Stage handlers are wrapped in ``StageContext.guarded``, which
classifies whatever escapes them, so a record can never reach the path below. If a handler
raises anyway, that is a bug: the event is not acked, nothing
after it in its partition is acked, no new events are taken, the other lanes get
``failure_grace_s`` to finish (their acks are committed), and :func:`run_in_lanes` raises
:class:`LaneHandlerError`. ``create_app`` makes that crash the worker (``CrashingSupervisor``):
processing the key's next event would break its order, and a restart re-delivers from the
committed offset, which is below the failed event.

Agents that use lanes must run with ``concurrency=1`` (the lanes are the concurrency) and must
not ack events themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, cast

from faust.streams import _current_event
from faust.types import TP

from wabridge.errors import WabridgeError
from wabridge.streams.types import FaustStream, StageEvent, StageStream

log = logging.getLogger(__name__)

Handler = Callable[[StageEvent], Awaitable[None]]


class LaneHandlerError(WabridgeError):
    """A lane's handler raised: a bug, because handlers route their own failures. Stop the worker."""

    def __init__(self, message: str, *, topic: str, partition: int, offset: int, key: Any) -> None:
        super().__init__(message)
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key


def event_key(event: StageEvent) -> Hashable:
    """The default lane key: the record key, ``tenant_id:customer_id`` on every stage topic."""
    key: Hashable = event.key
    return key


@dataclass(slots=True)
class _Pending:
    event: StageEvent
    done: bool = False


class KeyLanes:
    """The lanes of one stream. Use :func:`run_in_lanes`; this class is its engine."""

    def __init__(
        self,
        handler: Handler,
        *,
        max_pending: int,
        max_concurrency: int,
        key_of: Callable[[StageEvent], Hashable] = event_key,
    ) -> None:
        if max_pending < 1 or max_concurrency < 1:
            raise ValueError("max_pending and max_concurrency must be at least 1")
        self._handler = handler
        self._key_of = key_of
        self.max_pending = max_pending
        self._slots = asyncio.Semaphore(max_concurrency)
        # key -> its events not yet handled; the head is running (or waiting for a slot).
        self._lanes: dict[Hashable, deque[_Pending]] = {}
        # partition -> events not yet acked, in offset (= arrival) order.
        self._unacked: dict[TP, deque[_Pending]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending = 0
        self._room = asyncio.Event()
        self._room.set()
        self.failure: LaneHandlerError | None = None
        self._failed = asyncio.Event()

    @property
    def pending(self) -> int:
        """Events taken from the stream and not yet acked."""
        return self._pending

    @property
    def lanes(self) -> int:
        """Keys with work in hand."""
        return len(self._lanes)

    async def wait_for_room(self, n: int = 1) -> None:
        """Block while taking ``n`` more events would exceed ``max_pending`` (back-pressure)."""
        need = min(n, self.max_pending)
        while self._pending + need > self.max_pending and self.failure is None:
            self._room.clear()
            await self._room.wait()
        self._raise_if_failed()

    def submit(self, event: StageEvent) -> None:
        """Queue ``event`` on its key's lane, starting the lane if the key was idle."""
        self._raise_if_failed()
        item = _Pending(event)
        self._pending += 1
        tp = event.message.tp
        unacked = self._unacked.get(tp)
        if unacked is None:
            unacked = self._unacked[tp] = deque()
        unacked.append(item)
        key = self._key_of(event)
        lane = self._lanes.get(key)
        if lane is not None:
            lane.append(item)
            return
        lane = self._lanes[key] = deque((item,))
        task = asyncio.get_running_loop().create_task(self._run_lane(key, lane))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_failed(self) -> None:
        await self._failed.wait()

    async def drain(self) -> None:
        """Wait until every taken event is acked (or a handler failed)."""
        while self._tasks and self.failure is None:
            await asyncio.wait(set(self._tasks))
        self._raise_if_failed()

    async def close(self, grace_s: float) -> None:
        """Give running lanes ``grace_s`` to finish, then cancel them, leaving their events unacked."""
        if self._tasks and grace_s > 0:
            await asyncio.wait(set(self._tasks), timeout=grace_s)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run_lane(self, key: Hashable, lane: deque[_Pending]) -> None:
        item = lane[0]
        try:
            while lane:
                item = lane[0]
                async with self._slots:
                    if self.failure is not None:
                        return
                    # Faust tables find the partition of a write from the task's current event
                    # (a private ContextVar); each lane task has its own context, set per event.
                    _current_event.set(weakref.ref(item.event))
                    await self._handler(item.event)
                lane.popleft()
                self._mark_done(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - not swallowed: it stops the stream, see _fail
            self._fail(exc, item, key)
            return
        # No await between the empty check above and here: a new event for this key either landed
        # in ``lane`` before it (and ran) or finds no lane and starts a new one.
        if self._lanes.get(key) is lane:
            del self._lanes[key]

    def _mark_done(self, item: _Pending) -> None:
        item.done = True
        tp = item.event.message.tp
        unacked = self._unacked[tp]
        acked = 0
        while unacked and unacked[0].done:
            unacked.popleft().event.ack()
            acked += 1
        if not unacked:
            del self._unacked[tp]
        if acked:
            self._pending -= acked
            self._room.set()

    def _fail(self, exc: Exception, item: _Pending, key: Hashable) -> None:
        message = item.event.message
        log.error(
            "lane handler raised on %s[%d]@%d: not acked, stopping the stream",
            message.topic,
            message.partition,
            message.offset,
            exc_info=exc,
        )
        if self.failure is None:
            failure = LaneHandlerError(
                f"handler raised {type(exc).__name__} on {message.topic}[{message.partition}]@{message.offset}",
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                key=key,
            )
            failure.__cause__ = exc
            self.failure = failure
        self._failed.set()
        self._room.set()

    def _raise_if_failed(self) -> None:
        if self.failure is not None:
            raise self.failure


async def run_in_lanes(
    stream: StageStream,
    handler: Handler,
    *,
    max_pending: int = 10_000,
    max_concurrency: int = 256,
    batch_size: int | None = None,
    batch_within_s: float = 0.02,
    failure_grace_s: float = 10.0,
    key_of: Callable[[StageEvent], Hashable] = event_key,
) -> None:
    """Run ``handler`` on every event of ``stream``: one key at a time in order, keys concurrently.

    Call it as the whole body of an agent (``concurrency=1``). ``batch_size`` reads the stream with
    ``take_events(batch_size, batch_within_s)`` instead of event by event (see the measurements in
    ``tests/streams/test_throughput.py``). Returns when the stream ends; raises
    :class:`LaneHandlerError` when a handler raised (see the module's handler contract).
    """
    lanes = KeyLanes(handler, max_pending=max_pending, max_concurrency=max_concurrency, key_of=key_of)
    reader = asyncio.current_task()
    assert reader is not None
    reading = True
    cancelled_by_failure = False

    def _stop_reading(_: asyncio.Task[None]) -> None:
        # Wakes the reader when it waits on the stream (possibly for a long time) as a handler fails.
        nonlocal cancelled_by_failure
        if reading and lanes.failure is not None:
            cancelled_by_failure = True
            reader.cancel()

    watcher = asyncio.get_running_loop().create_task(lanes.wait_failed())
    watcher.add_done_callback(_stop_reading)
    try:
        try:
            if batch_size is None:
                await _feed_events(stream, lanes)
            else:
                await _feed_batches(stream, lanes, batch_size, batch_within_s)
        finally:
            reading = False
        await lanes.drain()
    except (asyncio.CancelledError, LaneHandlerError) as exc:
        if lanes.failure is None:
            # Stopped from outside (shutdown, rebalance): unfinished events stay unacked.
            await lanes.close(grace_s=0)
            raise
        if isinstance(exc, asyncio.CancelledError) and cancelled_by_failure:
            reader.uncancel()
        await lanes.close(grace_s=failure_grace_s)
        raise lanes.failure from lanes.failure.__cause__
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def _feed_events(stream: StageStream, lanes: KeyLanes) -> None:
    events: AsyncIterator[StageEvent] = cast(FaustStream, stream).noack().events().__aiter__()
    while True:
        await lanes.wait_for_room()
        try:
            event = await events.__anext__()
        except StopAsyncIteration:
            return
        lanes.submit(event)


async def _feed_batches(stream: StageStream, lanes: KeyLanes, batch_size: int, within_s: float) -> None:
    # take_events acks every event of a batch when asked for the next one, whatever the stream's
    # ack mode. One extra reference per event turns that ack into a plain decref; the lane's ack
    # is then the final one, the one that marks the offset as committable.
    async for batch in cast(FaustStream, stream).take_events(batch_size, within_s):
        for event in batch:
            event.message.incref()
            lanes.submit(event)
        await lanes.wait_for_room(batch_size)
