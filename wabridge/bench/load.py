"""The open-loop generator: sends start on the clock, whatever the answers so far.

A closed-loop generator (send, wait, send) slows down with the system under test and so hides its
latency. Here every send has a due time from the plan; the ticker launches it then, however many
are still waiting for an answer, up to ``max_in_flight``. Latency is measured from the *due* time,
so a send that had to wait for a free slot is charged that wait. A send that starts more than
``LATE_AFTER_S`` after its due time is counted as late: the generator could not keep its schedule
(``generator lag`` in the report), which tells the reader when the figures are the harness's limit.

One rule bends the schedule: the webhooks of one customer are never in flight at the same time,
so the order the edge acknowledged them in is the order they were sent in, and any order violation
at Genesys is the pipeline's. A webhook whose customer's previous one is unanswered waits for that
answer (counted in ``customer_waits``; it is rare unless there are few customers and slow acks).
A duplicate delivery waits for its original's answer, as Meta's re-delivery does.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from wabridge.bench.accounting import SentMessage
from wabridge.bench.latency import LatencyHistogram
from wabridge.bench.plan import PlannedMessage, PlannedPost, customer_wa_id
from wabridge.bench.tenants import BenchTenant
from wabridge.simulators.customer import InboundSpec, build_message, build_webhook, encode_webhook, post_webhook

LATE_AFTER_S = 0.010

Launch = Callable[[int, float], Coroutine[Any, Any, None]]


@dataclass
class Pacing:
    """How well the generator kept to its schedule."""

    scheduled: int = 0
    started: int = 0
    late: int = 0
    max_lag_ms: float = 0.0


async def open_loop(
    offsets_s: Sequence[float], launch: Launch, *, start: float, max_in_flight: int, pacing: Pacing | None = None
) -> Pacing:
    """Launch ``launch(i, due)`` for each offset at ``start + offset`` (loop clock); wait for all of them."""
    loop = asyncio.get_running_loop()
    pacing = pacing or Pacing()
    pacing.scheduled = len(offsets_s)
    slots = asyncio.Semaphore(max_in_flight)
    running: set[asyncio.Task[None]] = set()

    async def guarded(work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        finally:
            slots.release()

    for index, offset in enumerate(offsets_s):
        due = start + offset
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        lag = loop.time() - due
        if lag > LATE_AFTER_S:
            pacing.late += 1
            pacing.max_lag_ms = max(pacing.max_lag_ms, lag * 1000)
        task = asyncio.create_task(guarded(launch(index, due)))
        pacing.started += 1
        running.add(task)
        task.add_done_callback(running.discard)
    if running:
        await asyncio.gather(*running)
    return pacing


class WebhookLoad:
    """Signed Meta webhooks for a plan of posts, and what the edge answered."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        edge_url: str,
        tenants: Sequence[BenchTenant],
        posts: Sequence[PlannedPost],
        *,
        wall_start: float,
        timeout_s: float,
    ) -> None:
        self._session = session
        self._edge_url = edge_url
        self._tenants = tenants
        self._posts = posts
        self.posts = posts
        self._wall_start = wall_start
        self._timeout_s = timeout_s
        self._duplicated = {post.index for post in posts if post.duplicate}
        self._bodies: dict[int, bytes] = {}
        self._answered: dict[int, asyncio.Future[None]] = {}
        self._customer_turn: dict[int, asyncio.Future[None]] = {}
        self.ack = LatencyHistogram()
        self.statuses: Counter[str] = Counter()
        self.accepted: set[str] = set()
        self.post_count = len(posts)
        self.posts_answered = 0
        self.duplicate_posts = sum(1 for post in posts if post.duplicate)
        self.customer_waits = 0

    @property
    def offsets_s(self) -> list[float]:
        return [post.at_s for post in self._posts]

    def launch(self, index: int, due: float) -> Coroutine[Any, Any, None]:
        """Called by the ticker in schedule order: takes the customers' turns before the POST runs."""
        post = self._posts[index]
        loop = asyncio.get_running_loop()
        if post.duplicate:
            return self._send(post, due, [self._answered[post.index]], None)
        answered: asyncio.Future[None] = loop.create_future()
        if post.index in self._duplicated:
            self._answered[post.index] = answered
        customers = dict.fromkeys(message.customer for message in post.messages)
        previous = [self._customer_turn[c] for c in customers if c in self._customer_turn]
        for customer in customers:
            self._customer_turn[customer] = answered
        return self._send(post, due, previous, answered)

    async def _send(
        self,
        post: PlannedPost,
        due: float,
        wait_for: list[asyncio.Future[None]],
        answered: asyncio.Future[None] | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            pending = [future for future in wait_for if not future.done()]
            if pending:
                if not post.duplicate:
                    self.customer_waits += 1
                await asyncio.gather(*pending)
            tenant = self._tenants[post.tenant]
            if post.duplicate:
                body = self._bodies.pop(post.index)
            else:
                body = self._webhook_body(tenant, post.messages)
                if post.index in self._duplicated:
                    self._bodies[post.index] = body
            status = await self._post(tenant, body)
            self.posts_answered += 1
            if status is None:
                self.statuses["no answer"] += 1
                return
            self.ack.record_ms((loop.time() - due) * 1000)
            self.statuses[str(status)] += 1
            if 200 <= status < 300:
                self.accepted.update(message.wamid for message in post.messages)
        finally:
            if answered is not None and not answered.done():
                answered.set_result(None)

    async def _post(self, tenant: BenchTenant, body: bytes) -> int | None:
        """POST one webhook to the edge as Meta does; its HTTP status (None: no answer in time)."""
        secret = tenant.app_secret.get_secret_value()
        return await post_webhook(self._session, self._edge_url, secret, body, timeout_s=self._timeout_s)

    def _webhook_body(self, tenant: BenchTenant, messages: Sequence[PlannedMessage]) -> bytes:
        built = []
        for message in messages:
            spec = InboundSpec(
                kind="image" if message.media else "text",
                wa_id=customer_wa_id(message.customer),
                name=f"Bench Customer {message.customer}",
                text=f"bench message {message.seq} from customer {message.customer}",
                wamid=message.wamid,
                timestamp=int(self._wall_start + message.at_s),
            )
            media = tenant.media[message.seq % len(tenant.media)] if message.media else None
            built.append(build_message(spec, media))
        return encode_webhook(
            build_webhook(
                waba_id=tenant.waba_id,
                display_phone_number=tenant.display_phone_number,
                phone_number_id=tenant.phone_number_id,
                messages=built,
            )
        )

    def sent_messages(self) -> list[SentMessage]:
        """Every new message of the plan, for the accounting."""
        return [
            SentMessage(
                wamid=message.wamid,
                customer=str(message.customer),
                from_id=customer_wa_id(message.customer),
                seq=message.seq,
                sent_at=self._wall_start + message.at_s,
                accepted=message.wamid in self.accepted,
            )
            for post in self._posts
            if not post.duplicate
            for message in post.messages
        ]


def wall_and_loop_clock() -> tuple[float, float]:
    """The same instant on the wall clock (for the Meta timestamps) and the loop's monotonic clock."""
    loop = asyncio.get_running_loop()
    return time.time(), loop.time()
