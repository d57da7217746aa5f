"""`wabridge bench` against the running stack: its accounting checked on runs whose answers are known.

The slow tests start `wabridge run` as test_run does (unique prefixes, free ports) and run
`wabridge bench --json` as a user would. A clean run must count nothing lost, duplicated or out of
order. A second run has faults placed between the harness and Genesys whose counts are known in
advance; the harness must report exactly those counts. No timing is asserted.

The fast test drives the generator against an in-process stand-in for the edge.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from pydantic import SecretStr

from tests.integration.run_support import clean_up, isolated_run, wait_until_healthy
from wabridge.bench.cli import EXIT_BROKEN_GUARANTEE
from wabridge.bench.load import WebhookLoad, open_loop, wall_and_loop_clock
from wabridge.bench.plan import LoadShape, bench_wamid, customer_wa_id, parse_bench_wamid, plan_messages, plan_posts
from wabridge.bench.tenants import BenchTenant
from wabridge.connectors import postgres
from wabridge.connectors.tenant_directory import LIST_MAX_AGE_S
from wabridge.connectors.webhook import meta_signature_valid
from wabridge.dev.demo import DEMO_TENANT
from wabridge.settings import Settings
from wabridge.tenants import PhoneNumber, SecretBox, Tenant, TenantConfig, TenantSecrets, TenantStore
from wabridge.tenants.crypto import generate_key

BENCH = [sys.executable, "-m", "wabridge", "bench"]
# 20 messages/s for 3 s from 4 customers: 60 messages, 15 per customer (message i is customer i % 4's).
SMALL_RUN = ["--rate", "20", "--duration", "3", "--customers", "4", "--duplicate-share", "0.1", "--json"]
MESSAGES, PER_CUSTOMER = 60, 15


@dataclass(frozen=True)
class RunningStack:
    cwd: Path
    env: dict[str, str]
    settings: Settings  # the same schema, prefixes, ports and secrets key as the processes

    @property
    def genesys_url(self) -> str:
        return f"http://{self.settings.sim_genesys_host}:{self.settings.sim_genesys_port}"


@pytest.fixture(scope="module")
def running_stack(tmp_path_factory: pytest.TempPathFactory, stack_settings: Settings) -> Iterator[RunningStack]:
    cwd = tmp_path_factory.mktemp("bench")
    # The secrets key is known to this test too, so it can add a tenant the processes can read.
    own = isolated_run(secrets_key=SecretStr(generate_key()), log_level="WARNING")
    env, settings = own.env, own.settings
    run = subprocess.Popen(
        [sys.executable, "-m", "wabridge", "run"], cwd=cwd, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until_healthy(cwd, env, timeout_s=120)
        yield RunningStack(cwd, env, settings)
    finally:
        run.send_signal(signal.SIGINT)
        run.wait(timeout=60)
        asyncio.run(clean_up(settings))


def run_bench(stack: RunningStack, *args: str, exit_code: int = 0) -> dict[str, Any]:
    done = subprocess.run(
        [*BENCH, *args], cwd=stack.cwd, env=stack.env, capture_output=True, text=True, timeout=240
    )  # fmt: skip
    assert done.returncode == exit_code, done.stderr[-3000:]
    report: dict[str, Any] = orjson.loads(done.stdout)
    return report


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_clean_run_counts_every_message_once_in_order(running_stack: RunningStack) -> None:
    report = run_bench(running_stack, *SMALL_RUN, "--drain-timeout", "90")

    assert report["sent"] == MESSAGES
    assert report["accepted"] == MESSAGES
    assert report["duplicate_posts"] > 0  # duplicate deliveries did go to the edge
    assert (report["lost"], report["duplicates"], report["out_of_order"]) == (0, 0, 0), report
    assert (report["unexpected"], report["misrouted"]) == (0, 0)
    assert report["arrived"] == MESSAGES
    for key in ("rate", "duration_s", "ack_p50_ms", "ack_p99_ms", "e2e_p50_ms", "e2e_p99_ms", "throughput_msgs_s"):
        assert isinstance(report[key], int | float), key
    assert {"webhook", "bridge", "worker", "bench"} <= set(report["processes"])


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_an_outbound_run_counts_every_agent_message_once_in_order_at_meta(running_stack: RunningStack) -> None:
    report = run_bench(running_stack, "--mode", "outbound", *SMALL_RUN, "--drain-timeout", "90")

    assert report["mode"] == "outbound"
    assert (report["sent"], report["accepted"], report["arrived"]) == (MESSAGES, MESSAGES, MESSAGES), report
    assert report["duplicate_posts"] > 0  # Genesys's retries did go to the edge, and were sent once
    assert (report["lost"], report["duplicates"], report["out_of_order"]) == (0, 0, 0), report
    assert (report["unexpected"], report["misrouted"], report["refused_by_meta"]) == (0, 0, 0)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_known_faults_between_the_harness_and_genesys_are_counted_exactly(running_stack: RunningStack) -> None:
    """Three faults with known counts, none of them made by the harness itself:

    * lost: customers 1 and 3 belong to a tenant whose Genesys integration does not exist, so the
      edge accepts their 30 messages and Genesys never gets them;
    * out of order: before the run, Genesys receives a copy of customer 0's last message (seq 14), so
      that customer's messages 0..13 all arrive after a later one: 14 violations (and 1 duplicate);
    * duplicates: before the run, Genesys also receives a copy of customer 2's first message (1 more
      duplicate, in order); and a message of this run that the harness never sends (1 unexpected).
    """
    stack = running_stack
    run_id = os.urandom(4).hex()
    lost_tenant = "bench-nowhere"
    asyncio.run(_add_tenant_without_genesys(stack.settings, lost_tenant))
    time.sleep(LIST_MAX_AGE_S)  # the running edge routes a number added this long ago (tenant_directory)
    asyncio.run(
        _post_to_genesys(
            stack.genesys_url,
            [
                (bench_wamid(run_id, 0, PER_CUSTOMER - 1), customer_wa_id(0)),
                (bench_wamid(run_id, 2, 0), customer_wa_id(2)),
                (bench_wamid(run_id, 0, 999), customer_wa_id(0)),
            ],
        )
    )

    report = run_bench(
        stack, *SMALL_RUN, "--run-id", run_id, "--tenant", "demo", "--tenant", lost_tenant, "--drain-timeout", "30",
        exit_code=EXIT_BROKEN_GUARANTEE,  # lost, duplicated and reordered messages: scripts see it
    )  # fmt: skip

    assert (report["sent"], report["accepted"]) == (MESSAGES, MESSAGES)
    assert report["lost"] == 2 * PER_CUSTOMER
    assert {parse_bench_wamid(w)[1] for w in report["lost_examples"]} <= {1, 3}  # type: ignore[index]
    assert report["out_of_order"] == PER_CUSTOMER - 1
    assert report["duplicates"] == 2
    assert report["unexpected"] == 1
    assert report["misrouted"] == 0
    assert report["drained"] is False


async def _add_tenant_without_genesys(settings: Settings, tenant_id: str) -> None:
    """A tenant the edge knows, whose Genesys integration the Genesys simulator has never heard of."""
    genesys = f"http://{settings.sim_genesys_host}:{settings.sim_genesys_port}"
    tenant = Tenant(
        id=tenant_id,
        name="a tenant whose messages go nowhere",
        phone_numbers=(PhoneNumber(phone_number_id="199900000099999", display_phone_number="15559999999"),),
        config=TenantConfig(
            genesys_client_id=DEMO_TENANT.genesys_client_id,
            genesys_integration_id="00000000-0000-4000-8000-00000000dead",
            genesys_api_url=genesys,
            genesys_login_url=genesys,
            meta_graph_url=f"http://{settings.sim_meta_host}:{settings.sim_meta_port}",
        ),
        secrets=TenantSecrets(
            meta_app_secret=SecretStr("nowhere-app-secret"),
            meta_verify_token=SecretStr("nowhere-verify-token"),
            meta_access_token=SecretStr("nowhere-access-token"),
            genesys_client_secret=SecretStr(DEMO_TENANT.genesys_client_secret),
            genesys_webhook_secret=SecretStr("nowhere-webhook-secret"),
        ),
    )
    pool = await postgres.connect(settings, min_size=1, max_size=1)
    try:
        await TenantStore(pool, SecretBox.from_settings(settings)).upsert(tenant)
    finally:
        await pool.close()


async def _post_to_genesys(genesys_url: str, messages: list[tuple[str, str]]) -> None:
    """Deliver messages to the demo integration through Genesys's own Open Messaging API."""
    credentials = f"{DEMO_TENANT.genesys_client_id}:{DEMO_TENANT.genesys_client_secret}".encode()
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{genesys_url}/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": "Basic " + base64.b64encode(credentials).decode()},
        ) as response:
            assert response.status == 200, await response.text()
            token = (await response.json())["access_token"]
        url = f"{genesys_url}/api/v2/conversations/messages/{DEMO_TENANT.genesys_integration_id}/inbound/open/message"
        for wamid, wa_id in messages:
            body = {
                "channel": {
                    "messageId": wamid,
                    "time": "2025-01-01T00:00:00.000Z",
                    "from": {"id": wa_id, "idType": "Phone"},
                },
                "text": "placed at Genesys by the test",
            }
            async with session.post(url, json=body, headers={"Authorization": f"Bearer {token}"}) as response:
                assert response.status == 200, await response.text()


# --- the generator alone, against a stand-in edge ---------------------------------------------------


async def test_the_generator_posts_signed_webhooks_once_per_message_and_one_at_a_time_per_customer() -> None:
    """Every message reaches the edge signed, duplicates repeat the exact bytes after the original's
    answer, a customer never has two new webhooks in flight, and only 2xx answers count as accepted."""
    secret = "stand-in-app-secret"
    in_flight: Counter[str] = Counter()
    overlaps: list[str] = []
    bodies: list[bytes] = []
    refused = bench_wamid("gen", 3, 2)

    async def edge(request: web.Request) -> web.Response:
        body = await request.read()
        assert meta_signature_valid(secret, body, request.headers.get("X-Hub-Signature-256"))
        first_delivery = body not in bodies
        bodies.append(body)
        payload = orjson.loads(body)
        values = [change["value"] for entry in payload["entry"] for change in entry["changes"]]
        # A repeated delivery carries messages already answered for: it may overlap newer ones.
        customers = {message["from"] for value in values for message in value["messages"]} if first_delivery else set()
        for customer in customers:
            if in_flight[customer]:
                overlaps.append(customer)
            in_flight[customer] += 1
        await asyncio.sleep(0.03)  # slower than the gap between one customer's webhooks
        for customer in customers:
            in_flight[customer] -= 1
        ids = {message["id"] for value in values for message in value["messages"]}
        return web.Response(status=503 if refused in ids else 200, text="EVENT_RECEIVED")

    app = web.Application()
    app.router.add_post("/webhook/meta", edge)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    shape = LoadShape(rate=200, duration_s=0.5, customers=5, batch_size=2, duplicate_share=0.3, seed=3)
    tenant = BenchTenant(
        tenant_id="stand-in",
        phone_number_id="123",
        display_phone_number="15550001111",
        waba_id="456",
        app_secret=SecretStr(secret),
        integration_id="none",
    )
    try:
        posts = plan_posts(plan_messages("gen", shape), shape)
        async with aiohttp.ClientSession() as session:
            wall, start = wall_and_loop_clock()
            load = WebhookLoad(
                session, f"http://127.0.0.1:{port}/webhook/meta", [tenant], posts, wall_start=wall, timeout_s=5
            )
            pacing = await open_loop(load.offsets_s, load.launch, start=start, max_in_flight=50)
    finally:
        await runner.cleanup()

    sent = load.sent_messages()
    duplicates = [post for post in posts if post.duplicate]
    assert pacing.started == len(posts) == len(bodies)
    assert overlaps == []
    assert len(sent) == shape.message_count == 100
    assert len(bodies) - len(set(bodies)) == len(duplicates) > 0
    assert sum(load.statuses.values()) == len(posts)
    assert {m.wamid for m in sent if not m.accepted} == {
        m.wamid for post in posts if any(x.wamid == refused for x in post.messages) for m in post.messages
    }
    assert load.ack.count == len(posts)
