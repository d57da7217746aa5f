"""``wabridge bench --mode edge``: the webhook edge alone, accepted and durable.

The edge's figure without the rest of the pipeline on the same cores: run only the edge
(``wabridge run --only webhook``), so nothing consumes the inbound queue. The bench sends the same
open-loop signed webhooks as the default mode, then reads the queue back. Every webhook the edge
answered 2xx must be there: a message acknowledged to Meta and missing from the queue is *lost*,
and a customer's messages must be queued in the order the edge acknowledged them. The queue must
be empty before the run (so everything in it afterwards is the run's), and the bench empties it
again by consuming what it counted.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import aio_pika
import aiohttp
import orjson
from aio_pika.abc import AbstractQueue

from wabridge.bench.accounting import Accounting, Arrival, account
from wabridge.bench.latency import LatencySummary
from wabridge.bench.load import Pacing, WebhookLoad, open_loop, wall_and_loop_clock
from wabridge.bench.plan import LoadShape, plan_messages, plan_posts, run_prefix
from wabridge.bench.processes import ProcessSampler, ProcessUsage
from wabridge.bench.report import Progress
from wabridge.bench.run import POLL_INTERVAL_S, StackUrls, require_healthy
from wabridge.bench.tenants import BenchSetupError, BenchTenant, load_tenants, provision_bench_tenants
from wabridge.connectors import rabbitmq
from wabridge.settings import Settings
from wabridge.streams.topics import INBOUND_WHATSAPP_MESSAGES

# Reading the queue back: no message for this long means the queue is drained.
READ_IDLE_S = 2.0


@dataclass(frozen=True)
class EdgeResult:
    run_id: str
    shape: LoadShape
    tenants: tuple[str, ...]
    posts: int
    duplicate_posts: int
    statuses: dict[str, int]
    accepted_posts: int
    queued_posts: int
    ack: LatencySummary
    # "arrived" here means: found in the inbound queue; throughput is the rate the edge took them in.
    accounting: Accounting
    pacing: Pacing
    processes: dict[str, ProcessUsage]


async def run_edge_bench(
    settings: Settings,
    shape: LoadShape,
    progress: Progress,
    *,
    run_id: str,
    tenant_ids: tuple[str, ...] = (),
    max_in_flight: int = 1000,
    timeout_s: float = 10.0,
) -> EdgeResult:
    urls = StackUrls.of(settings)
    connector = aiohttp.TCPConnector(limit=max_in_flight)
    async with aiohttp.ClientSession(connector=connector) as session:
        needed = {"webhook edge": urls.edge_ops}
        if shape.tenants > 1 and not tenant_ids:
            needed["Meta simulator"] = urls.meta
        await require_healthy(session, needed)
        if tenant_ids:
            tenants = await load_tenants(settings, tenant_ids)
        else:
            tenants = await provision_bench_tenants(settings, session, shape.tenants)
        connection = await rabbitmq.connect(settings)
        try:
            channel = await connection.channel()
            queue = await _idle_inbound_queue(channel, settings)
            return await _measure(
                settings, session, queue, shape, run_id, tenants, urls, progress, max_in_flight, timeout_s
            )
        finally:
            await connection.close()


async def _idle_inbound_queue(channel: aio_pika.abc.AbstractChannel, settings: Settings) -> AbstractQueue:
    name = settings.queue(INBOUND_WHATSAPP_MESSAGES)
    queue = await channel.declare_queue(name, passive=True)
    declared = queue.declaration_result
    if declared.consumer_count:
        raise BenchSetupError(
            f"the queue {name} has a consumer (the bridge): --mode edge measures the edge alone; "
            "run `wabridge run --only webhook` instead of the whole stack"
        )
    if declared.message_count:
        raise BenchSetupError(
            f"the queue {name} holds {declared.message_count} messages already: --mode edge counts what the run "
            "queued, so it needs the queue empty (let the bridge drain it first)"
        )
    return queue


async def _measure(
    settings: Settings,
    session: aiohttp.ClientSession,
    queue: AbstractQueue,
    shape: LoadShape,
    run_id: str,
    tenants: list[BenchTenant],
    urls: StackUrls,
    progress: Progress,
    max_in_flight: int,
    timeout_s: float,
) -> EdgeResult:
    loop = asyncio.get_running_loop()
    posts = plan_posts(plan_messages(run_id, shape), shape)
    sampler = ProcessSampler.for_stack(settings.state_dir)
    wall_start, start = wall_and_loop_clock()
    load = WebhookLoad(session, f"{urls.edge}/webhook/meta", tenants, posts, wall_start=wall_start, timeout_s=timeout_s)
    pacing = Pacing()
    stop = asyncio.Event()

    async def observe() -> None:
        while not stop.is_set():
            sampler.sample()
            progress.show(
                "sending",
                (loop.time() - start) / shape.duration_s,
                f"posts {load.posts_answered}/{load.post_count} · accepted {len(load.accepted)} · late {pacing.late}",
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_INTERVAL_S)

    sampler.start()
    observer = asyncio.create_task(observe())
    try:
        await open_loop(load.offsets_s, load.launch, start=start, max_in_flight=max_in_flight, pacing=pacing)
    finally:
        stop.set()
        await observer
    usage = sampler.finish()
    accepted_posts = sum(count for status, count in load.statuses.items() if status.startswith("2"))
    try:
        queued_posts, arrivals = await _read_back(queue, run_prefix(run_id), progress, accepted_posts)
    finally:
        progress.finish()
    return EdgeResult(
        run_id=run_id,
        shape=shape,
        tenants=tuple(tenant.tenant_id for tenant in tenants),
        posts=sum(1 for post in posts if not post.duplicate),
        duplicate_posts=load.duplicate_posts,
        statuses=dict(load.statuses),
        accepted_posts=accepted_posts,
        queued_posts=queued_posts,
        ack=load.ack.summary(),
        accounting=account(load.sent_messages(), arrivals),
        pacing=pacing,
        processes=usage,
    )


async def _read_back(queue: AbstractQueue, prefix: str, progress: Progress, expected: int) -> tuple[int, list[Arrival]]:
    """Consume (and ack) the queue until it stays empty; the run's messages in queue order."""
    arrivals: list[Arrival] = []
    posts = 0
    with contextlib.suppress(TimeoutError):
        async with queue.iterator(timeout=READ_IDLE_S) as messages:
            async for message in messages:
                posts += 1
                received_at = float(str((message.headers or {}).get("received_at", 0.0)))
                arrivals += [
                    Arrival(message_id=wamid, from_id=from_id, arrived_at=received_at)
                    for wamid, from_id in _messages_of(message.body)
                    if wamid.startswith(prefix)
                ]
                await message.ack()
                if posts % 500 == 0:
                    progress.show("reading the queue", posts / max(1, expected), f"{posts} webhooks queued")
    return posts, arrivals


def _messages_of(body: bytes) -> list[tuple[str, str]]:
    """``(wamid, from)`` of each message in a webhook body, in order."""
    payload = orjson.loads(body)
    return [
        (str(message.get("id", "")), str(message.get("from", "")))
        for entry in payload.get("entry", [])
        for change in entry.get("changes", [])
        for message in change.get("value", {}).get("messages", [])
    ]
