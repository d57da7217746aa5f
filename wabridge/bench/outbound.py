"""``wabridge bench --mode outbound``: agents' messages through the running stack to the customers.

Each planned message is an agent's ``Text`` (Genesys's outbound webhook, signed with the tenant's
webhook secret) posted to the edge's ``/webhook/genesys`` on the same open-loop schedule as the
inbound bench; its Genesys message id and text are the run's id for it (``wamid.bench.{run}.{c}.{n}``),
so what the Meta simulator took can be matched back. Duplicate deliveries are Genesys's retries of
the same body. First every customer writes once (through the Meta simulator and the edge), so each
has a conversation and an open 24-hour window; the run waits until those reached Genesys.

Arrivals are the Meta simulator's accepted sends (``GET /__sim/sent``), timed by when Meta took
them; the accounting (lost, duplicates, order per customer, end-to-end latency, throughput) is the
inbound bench's. Each send also comes back as Meta's status webhooks (sent, delivered, read), which
go through the whole inbound pipeline and end as receipts at Genesys: that work is part of what
an outbound message costs, and of the processes' CPU in the report.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import aiohttp
import orjson

from wabridge.bench.accounting import Arrival
from wabridge.bench.genesys_sim import ArrivalWatch
from wabridge.bench.load import WebhookLoad, wall_and_loop_clock
from wabridge.bench.plan import (
    PlannedMessage,
    bench_wamid,
    customer_wa_id,
    plan_messages,
    plan_posts,
    run_prefix,
    tenant_of,
)
from wabridge.bench.report import Progress
from wabridge.bench.run import BenchOptions, BenchResult, StackUrls, measure, prepared_stack
from wabridge.bench.tenants import BenchSetupError, BenchTenant
from wabridge.settings import Settings
from wabridge.simulators.agent import build_agent_text, sign_outbound
from wabridge.simulators.customer import CustomerDriver, InboundSpec

# How long the customers' first messages may take to reach Genesys before the run gives up.
WARM_UP_TIMEOUT_S = 120.0
# Customers per warm-up webhook (one tenant's customers, batched as Meta batches).
WARM_UP_BATCH = 50


class AgentLoad(WebhookLoad):
    """The plan's messages as agents' texts, posted as Genesys posts its outbound webhook."""

    async def _post(self, tenant: BenchTenant, body: bytes) -> int | None:
        if tenant.genesys_webhook_secret is None:
            raise BenchSetupError(f"tenant {tenant.tenant_id} has no Genesys webhook secret")
        signature = sign_outbound(tenant.genesys_webhook_secret.get_secret_value(), body)
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
        try:
            async with self._session.post(
                self._edge_url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=self._timeout_s)
            ) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, TimeoutError):
            return None

    def _webhook_body(self, tenant: BenchTenant, messages: Sequence[PlannedMessage]) -> bytes:
        [message] = messages  # one agent message per webhook: Genesys posts them one by one
        body = build_agent_text(
            integration_id=tenant.integration_id,
            to_id=customer_wa_id(message.customer),
            text=message.wamid,
            message_id=message.wamid,
        )
        return orjson.dumps(body)


class MetaSentWatch:
    """The run's texts the Meta simulator took, per business number, in the order it took them."""

    def __init__(self, session: aiohttp.ClientSession, meta_url: str, tenants: Sequence[BenchTenant], prefix: str):
        self._session = session
        self._url = f"{meta_url}/__sim/sent"
        self._numbers = list(dict.fromkeys(tenant.phone_number_id for tenant in tenants))
        self._next = dict.fromkeys(self._numbers, 0)
        self._prefix = prefix
        self.arrivals: list[Arrival] = []
        self.seen: set[str] = set()
        self.refused: set[str] = set()  # accepted, then a failed status (e.g. the number's throughput)

    async def start_here(self) -> None:
        """Skip what was sent before this run."""
        for number in self._numbers:
            _, self._next[number] = await self._read(number, since=0)

    async def poll(self) -> int:
        new = 0
        for number in self._numbers:
            items, self._next[number] = await self._read(number, since=self._next[number])
            for item in items:
                text = _text_of(item)
                if not text.startswith(self._prefix):
                    continue
                accepted_at = datetime.fromisoformat(item["accepted_at"]).timestamp()
                self.arrivals.append(Arrival(message_id=text, from_id=item["to"], arrived_at=accepted_at))
                self.seen.add(text)
                new += 1
        return new

    async def count_refused(self) -> int:
        """Sends of this run that Meta reported failed afterwards (read once, at the end)."""
        for number in self._numbers:
            items, _ = await self._read(number, since=0)
            for item in items:
                text = _text_of(item)
                if text.startswith(self._prefix) and any(s["status"] == "failed" for s in item["statuses"]):
                    self.refused.add(text)
        return len(self.refused)

    async def _read(self, number: str, *, since: int) -> tuple[list[dict[str, Any]], int]:
        """The number's sends from position ``since`` on, and the position after the last."""
        params = {"phone_number_id": number, "since": str(since)}
        async with self._session.get(self._url, params=params) as response:
            if response.status != 200:
                raise BenchSetupError(f"GET {self._url} answered {response.status}: {await response.text()}")
            body = orjson.loads(await response.read())
        return body["sent"], int(body["next"])


def _text_of(sent: dict[str, Any]) -> str:
    """The body of a text the Meta simulator took ("" for any other type)."""
    if sent.get("type") != "text":
        return ""
    return str((sent.get("body") or {}).get("text", {}).get("body", ""))


async def customers_write_first(
    session: aiohttp.ClientSession, options: BenchOptions, tenants: Sequence[BenchTenant], urls: StackUrls
) -> None:
    """Every customer of the run writes once (opening their window); wait until all reached Genesys."""
    warm_up = f"{options.run_id}w"
    shape = options.shape
    watch = ArrivalWatch(session, urls.genesys, run_prefix(warm_up))
    by_tenant: dict[int, list[int]] = {}
    for customer in range(shape.customers):
        by_tenant.setdefault(tenant_of(customer, shape.tenants), []).append(customer)
    # Through the Meta simulator, so that Meta, too, knows each customer's window is open.
    driver = CustomerDriver(urls.meta, session)
    for index, customers in by_tenant.items():
        tenant = tenants[index]
        for start in range(0, len(customers), WARM_UP_BATCH):
            batch = customers[start : start + WARM_UP_BATCH]
            specs = [InboundSpec(kind="text", wa_id=customer_wa_id(c), wamid=bench_wamid(warm_up, c, 0)) for c in batch]
            sent = await driver.send(tenant.phone_number_id, specs, batch=True)
            if any(attempts[-1:] != [200] for attempts in sent["posts"]):
                raise BenchSetupError(f"the edge refused the customers' first messages ({sent['posts']})")
    deadline = time.monotonic() + WARM_UP_TIMEOUT_S
    while len(watch.seen) < shape.customers:
        if time.monotonic() > deadline:
            raise BenchSetupError(
                f"only {len(watch.seen)} of {shape.customers} customers' first messages reached Genesys "
                f"in {WARM_UP_TIMEOUT_S:g} s: is the pipeline running?"
            )
        await watch.poll()
        await asyncio.sleep(0.5)


async def run_outbound_bench(settings: Settings, options: BenchOptions, progress: Progress) -> BenchResult:
    if options.shape.batch_size != 1:
        raise BenchSetupError("--mode outbound posts one agent message per webhook (Genesys does): no --batch-size")
    if options.shape.media_share > 0:
        raise BenchSetupError("--mode outbound sends agents' texts: no --media-share")
    # The Genesys latency applies to the receipts the outbound stage posts back.
    async with prepared_stack(settings, options, ("edge", "genesys", "meta")) as stack:
        await customers_write_first(stack.session, options, stack.tenants, stack.urls)
        watch = MetaSentWatch(stack.session, stack.urls.meta, stack.tenants, run_prefix(options.run_id))
        await watch.start_here()
        posts = plan_posts(plan_messages(options.run_id, options.shape), options.shape)
        wall_start, start = wall_and_loop_clock()
        edge = f"{stack.urls.edge}/webhook/genesys"
        load = AgentLoad(stack.session, edge, stack.tenants, posts, wall_start=wall_start, timeout_s=options.timeout_s)
        result = await measure(settings, options, stack.tenants, progress, load, watch, start=start, mode="outbound")
        return dataclasses.replace(result, refused_by_meta=await watch.count_refused())
