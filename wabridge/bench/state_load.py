"""``wabridge bench --mode state``: open-loop load on the State API (``GET /state/mapping/{waId}``).

Before the clock starts, every benchmark customer gets a mapping (``POST /state/mapping``, an
idempotent create), so the reads measure lookups that find something. Request ``i`` asks for
customer ``i % customers`` of its tenant; latency runs from the request's due time. The answer's
``source`` (table, redis, postgres) is counted, so the reader sees which tier served the load.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from wabridge.bench.latency import LatencyHistogram, LatencySummary
from wabridge.bench.load import Pacing, open_loop, wall_and_loop_clock
from wabridge.bench.plan import LoadShape, customer_wa_id, tenant_of
from wabridge.bench.processes import ProcessSampler, ProcessUsage
from wabridge.bench.report import Progress
from wabridge.bench.run import POLL_INTERVAL_S, StackUrls, require_healthy
from wabridge.bench.tenants import BenchSetupError, provision_bench_tenants
from wabridge.settings import Settings
from wabridge.streams import internal_auth

_SETUP_CONCURRENCY = 32


@dataclass(frozen=True)
class StateResult:
    rate: float
    duration_s: float
    customers: int
    tenants: tuple[str, ...]
    requests: int
    ok: int
    statuses: dict[str, int]
    sources: dict[str, int]
    latency: LatencySummary
    throughput_req_s: float
    pacing: Pacing
    processes: dict[str, ProcessUsage]


@dataclass
class _Tally:
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    statuses: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)
    answered: int = 0
    last_ok: float = 0.0


async def _create_mappings(
    session: aiohttp.ClientSession,
    worker_url: str,
    tenant_ids: Sequence[str],
    customers: int,
    headers: dict[str, str],
) -> None:
    slots = asyncio.Semaphore(_SETUP_CONCURRENCY)

    async def create(customer: int) -> None:
        body = {"tenantId": tenant_ids[tenant_of(customer, len(tenant_ids))], "waId": customer_wa_id(customer)}
        async with slots, session.post(f"{worker_url}/state/mapping", json=body, headers=headers) as response:
            if response.status not in (200, 201):
                raise BenchSetupError(
                    f"POST /state/mapping for {body} answered {response.status}: {await response.text()}"
                )

    await asyncio.gather(*(create(customer) for customer in range(customers)))


async def run_state_bench(
    settings: Settings,
    shape: LoadShape,
    progress: Progress,
    *,
    tenant_ids: Sequence[str] = (),
    max_in_flight: int = 1000,
    timeout_s: float = 10.0,
) -> StateResult:
    urls = StackUrls.of(settings)
    connector = aiohttp.TCPConnector(limit=max_in_flight)
    async with aiohttp.ClientSession(connector=connector) as session:
        await require_healthy(session, {"worker (State API)": urls.worker})
        if not tenant_ids:
            tenant_ids = [t.tenant_id for t in await provision_bench_tenants(settings, session, shape.tenants)]
        await _create_mappings(session, urls.worker, tenant_ids, shape.customers, internal_auth.authorization(settings))
        return await _measure(
            settings, session, urls.worker, shape, tuple(tenant_ids), progress, max_in_flight, timeout_s
        )


async def _measure(
    settings: Settings,
    session: aiohttp.ClientSession,
    worker_url: str,
    shape: LoadShape,
    tenant_ids: tuple[str, ...],
    progress: Progress,
    max_in_flight: int,
    timeout_s: float,
) -> StateResult:
    loop = asyncio.get_running_loop()
    tally = _Tally()
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    headers = internal_auth.authorization(settings)

    async def read(index: int, due: float) -> None:
        customer = index % shape.customers
        url = f"{worker_url}/state/mapping/{customer_wa_id(customer)}"
        params = {"tenantId": tenant_ids[tenant_of(customer, len(tenant_ids))]}
        try:
            async with session.get(url, params=params, timeout=timeout, headers=headers) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            tally.statuses["no answer"] += 1
            return
        finally:
            tally.answered += 1
        tally.latency.record_ms((loop.time() - due) * 1000)
        tally.statuses[str(status)] += 1
        if status == 200:
            tally.last_ok = loop.time()
            tally.sources[str(orjson.loads(body).get("source", "unknown"))] += 1

    def launch(index: int, due: float) -> Coroutine[Any, Any, None]:
        return read(index, due)

    count = shape.message_count
    offsets = [i / shape.rate for i in range(count)]
    sampler = ProcessSampler.for_stack(settings.state_dir)
    pacing = Pacing()
    stop = asyncio.Event()
    _, start = wall_and_loop_clock()

    async def observe() -> None:
        while not stop.is_set():
            sampler.sample()
            progress.show(
                "reading",
                (loop.time() - start) / shape.duration_s,
                f"requests {tally.answered}/{count} · 200: {tally.statuses['200']} · late {pacing.late}",
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_INTERVAL_S)

    sampler.start()
    observer = asyncio.create_task(observe())
    try:
        await open_loop(offsets, launch, start=start, max_in_flight=max_in_flight, pacing=pacing)
    finally:
        stop.set()
        await observer
        progress.finish()
    ok = tally.statuses["200"]
    elapsed = max(tally.last_ok - start, 1e-9)
    return StateResult(
        rate=shape.rate,
        duration_s=shape.duration_s,
        customers=shape.customers,
        tenants=tenant_ids,
        requests=count,
        ok=ok,
        statuses=dict(tally.statuses),
        sources=dict(tally.sources),
        latency=tally.latency.summary(),
        throughput_req_s=ok / elapsed if ok else 0.0,
        pacing=pacing,
        processes=sampler.finish(),
    )
