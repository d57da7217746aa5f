"""The whole bridge, per test: real edge, bridge and worker processes, both simulators, the stack.

Each test gets its own topics, queues, buckets, schema and Redis prefix (``provisioned``), two
tenants wired to the simulators (each with its own number, Meta token, Genesys client and
integration), and ``wabridge webhook``, ``wabridge bridge`` and ``wabridge worker`` as subprocesses
on free ports. The simulators run in the test's event loop so the test can read what Genesys
received and script faults.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from pydantic import SecretStr

from tests.integration.edge_fixtures import free_port, save_tenants, settings_env
from wabridge.connectors import kafka, rabbitmq
from wabridge.settings import Settings
from wabridge.simulators import (
    GenesysClient,
    GenesysIntegration,
    GenesysSimConfig,
    GenesysSimulator,
    MetaPhoneNumber,
    MetaSimConfig,
    MetaSimulator,
)
from wabridge.simulators.customer import CustomerDriver, InboundSpec
from wabridge.simulators.meta import SentMessage
from wabridge.simulators.meta_templates import MetaTemplate
from wabridge.streams import internal_auth
from wabridge.streams.app import changelog_topic_names
from wabridge.streams.topics import DEAD_LETTER_SUFFIX, QUEUES
from wabridge.streams.worker import build_worker
from wabridge.tenants import PhoneNumber, Tenant, TenantConfig, TenantSecrets


@dataclass(frozen=True)
class BridgeTenant:
    id: str
    phone_number_id: str
    display_phone_number: str
    client_id: str
    integration_id: str

    @property
    def waba_id(self) -> str:
        return "1" + self.phone_number_id[1:]  # the WhatsApp Business Account of the number

    @property
    def app_secret(self) -> str:
        return f"fake-app-secret-{self.id}"

    @property
    def whatsapp_token(self) -> str:
        return f"fake-whatsapp-token-{self.id}"

    @property
    def client_secret(self) -> str:
        return f"fake-genesys-secret-{self.id}"

    @property
    def webhook_secret(self) -> str:
        return f"fake-genesys-webhook-secret-{self.id}"

    def tenant(self, meta_url: str, genesys_url: str) -> Tenant:
        return Tenant(
            id=self.id,
            name=f"{self.id} test business",
            phone_numbers=(
                PhoneNumber(
                    phone_number_id=self.phone_number_id,
                    display_phone_number=self.display_phone_number,
                    waba_id=self.waba_id,
                ),
            ),
            config=TenantConfig(
                genesys_client_id=self.client_id,
                genesys_integration_id=self.integration_id,
                genesys_api_url=genesys_url,
                genesys_login_url=genesys_url,
                meta_graph_url=meta_url,
            ),
            secrets=TenantSecrets(
                meta_app_secret=SecretStr(self.app_secret),
                meta_verify_token=SecretStr(f"fake-verify-{self.id}"),
                meta_access_token=SecretStr(self.whatsapp_token),
                genesys_client_secret=SecretStr(self.client_secret),
                genesys_webhook_secret=SecretStr(self.webhook_secret),
            ),
        )


# The message templates each tenant's WhatsApp Business Account holds at Meta (the simulator's registry).
TEMPLATES = (
    MetaTemplate(
        waba_id="-",
        name="appointment_reminder",
        category="UTILITY",
        components=({"type": "BODY", "text": "Hi {{1}}, see you {{2}}."},),
    ),
    MetaTemplate(
        waba_id="-", name="spring_sale", category="MARKETING", components=({"type": "BODY", "text": "Sale, {{1}}!"},)
    ),
    MetaTemplate(waba_id="-", name="welcome", category="UTILITY", components=({"type": "BODY", "text": "Hi {{1}}"},)),
    MetaTemplate(
        waba_id="-",
        name="login_code",
        category="AUTHENTICATION",
        components=({"type": "BODY", "text": "{{1}} is your code."},),
    ),
    MetaTemplate(
        waba_id="-",
        name="order_shipped",
        category="UTILITY",
        components=(
            {"type": "HEADER", "format": "IMAGE"},
            {"type": "BODY", "text": "Hi {{1}}, order {{2}} is on its way."},
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "URL", "text": "Track", "url": "https://example.com/track/{{1}}"},
                    {"type": "QUICK_REPLY", "text": "Stop updates"},
                ],
            },
        ),
    ),
)

ACME = BridgeTenant("acme", "106540352242922", "15550783881", "acme-client", "integration-acme")
GLOBEX = BridgeTenant("globex", "206540352242999", "15550783999", "globex-client", "integration-globex")
TENANTS = (ACME, GLOBEX)


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    def start(self) -> None:
        log = self.log_dir / f"{self.name}.{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "wabridge", *self.argv], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def stop(self, timeout: float = 30) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(
            f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) for log in self.logs
        )


@dataclass
class Pipeline:
    settings: Settings
    meta: MetaSimulator
    genesys: GenesysSimulator
    http: aiohttp.ClientSession
    processes: dict[str, Process]

    @property
    def customers(self) -> CustomerDriver:
        return CustomerDriver(self.meta.url, self.http)

    async def send(self, tenant: BridgeTenant, specs: list[InboundSpec], **options: Any) -> list[str]:
        """Customers send ``specs`` through the Meta simulator to the edge; returns the wamids."""
        result = await self.customers.send(tenant.phone_number_id, specs, **options)
        # Each POST's attempts (HTTP statuses); the edge must have taken every webhook.
        assert all(attempts and attempts[-1] == 200 for attempts in result["posts"]), result
        return [str(wamid) for wamid in result["wamids"]]

    def arrived(self, tenant: BridgeTenant) -> list[Any]:
        """What Genesys accepted for ``tenant`` (messages and structured responses), in arrival order."""
        return [a for a in self.genesys.accepted(tenant.integration_id) if a.kind in ("message", "structured_response")]

    def sent_to(self, tenant: BridgeTenant, customer: str) -> list[SentMessage]:
        """What the Meta simulator took from the tenant's number for ``customer`` (phone or BSUID), in order."""
        return [m for m in self.meta.sent_messages(tenant.phone_number_id) if m.to == customer]

    def receipts(self, tenant: BridgeTenant, message_id: str, status: str | None = None) -> list[dict[str, Any]]:
        """The receipts Genesys took for the agent's message ``message_id`` (of ``status``, if given)."""
        return [
            a.body
            for a in self.genesys.accepted(tenant.integration_id, kind="receipt")
            if a.body["id"] == message_id and status in (None, a.body["status"])
        ]

    def arrived_ids(self, tenant: BridgeTenant) -> list[str]:
        return [a.body["channel"]["messageId"] for a in self.arrived(tenant)]

    async def wait_arrived(self, tenant: BridgeTenant, wamids: list[str], timeout_s: float = 60.0) -> None:
        def missing() -> list[str]:
            return sorted(set(wamids) - set(self.arrived_ids(tenant)))

        try:
            await wait_for(lambda: _async(not missing()), timeout_s, f"{len(wamids)} messages of {tenant.id}", self)
        except AssertionError as exc:
            gone = missing()
            try:
                dead = await self.dead_lettered()
            except Exception as failure:  # only for the message
                dead = {"unknown": repr(failure)}
            raise AssertionError(
                f"{len(gone)} missing at Genesys, first {gone[:3]}; {self.states()}; dead-lettered {dead}; {exc}"
            ) from None

    async def dead_lettered(self) -> dict[str, int]:
        """Messages waiting in each dead-letter queue, by queue."""
        connection = await rabbitmq.connect(self.settings)
        try:
            channel = await connection.channel()
            counts = {}
            for base in QUEUES:
                name = self.settings.queue(base) + DEAD_LETTER_SUFFIX
                queue = await channel.declare_queue(name, passive=True)
                counts[name] = int(queue.declaration_result.message_count or 0)
            return counts
        finally:
            await connection.close()

    def states(self) -> str:
        """Each process: running, or the code it exited with."""
        return ", ".join(
            f"{name} {'not started' if p.proc is None else p.proc.poll() if p.proc.poll() is not None else 'running'}"
            for name, p in self.processes.items()
        )

    def tail(self) -> str:
        return "\n".join(process.tail() for process in self.processes.values())


async def _async(value: bool) -> bool:
    return value


async def wait_for(
    condition: Callable[[], Awaitable[bool]], timeout_s: float, what: str, pipeline: Pipeline | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            logs = f"\n{pipeline.tail()}" if pipeline is not None else ""
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}{logs}")
        await asyncio.sleep(0.2)


@pytest.fixture
def pipeline_settings(provisioned: Settings, tmp_path: Path) -> Settings:
    return provisioned.model_copy(
        update={
            "kafka_idempotent": False,
            # Short group timeouts: joins and rebalances on Tansu take seconds (see tests/state).
            "kafka_session_timeout_s": 6.0,
            "kafka_heartbeat_interval_s": 0.5,
            "kafka_rebalance_timeout_s": 5.0,
            "kafka_commit_interval_s": 0.5,
            "webhook_port": free_port(),
            "webhook_ops_port": free_port(),
            "worker_port": free_port(),
            "bridge_metrics_port": free_port(),
            "state_dir": tmp_path / "state",
            "log_level": "INFO",
        }
    )


def _sim_configs(settings: Settings, genesys_rate_limit: int) -> tuple[MetaSimConfig, GenesysSimConfig]:
    edge = f"http://{settings.webhook_host}:{settings.webhook_port}"
    meta = MetaSimConfig(
        phone_numbers=[
            MetaPhoneNumber(
                phone_number_id=t.phone_number_id,
                display_phone_number=t.display_phone_number,
                waba_id=t.waba_id,
                access_token=SecretStr(t.whatsapp_token),
                app_secret=SecretStr(t.app_secret),
                webhook_url=f"{edge}/webhook/meta",
            )
            for t in TENANTS
        ],
        templates=[template.model_copy(update={"waba_id": t.waba_id}) for t in TENANTS for template in TEMPLATES],
    )
    genesys = GenesysSimConfig(
        clients=[GenesysClient(client_id=t.client_id, client_secret=SecretStr(t.client_secret)) for t in TENANTS],
        integrations=[
            GenesysIntegration(
                integration_id=t.integration_id,
                outbound_webhook_url=f"{edge}/webhook/genesys",
                outbound_webhook_secret=SecretStr(t.webhook_secret),
            )
            for t in TENANTS
        ],
        rate_limit_per_minute=genesys_rate_limit,
        outbound_retry_delay_s=0.2,
    )
    return meta, genesys


@pytest.fixture
async def pipeline(pipeline_settings: Settings, tmp_path: Path) -> AsyncIterator[Pipeline]:
    settings = pipeline_settings
    meta_config, genesys_config = _sim_configs(settings, genesys_rate_limit=0)
    async with (
        MetaSimulator(meta_config, seed=11).serve() as meta,
        GenesysSimulator(genesys_config, seed=11).serve() as genesys,
        aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30), headers=internal_auth.authorization(settings)
        ) as http,
    ):
        await save_tenants(settings, *(t.tenant(meta.url, genesys.url) for t in TENANTS))
        # The worker fetches agent attachments from the Genesys simulator: plain http on loopback.
        env = {**settings_env(settings), "WABRIDGE_GENESYS_ATTACHMENT_INSECURE_ORIGINS": genesys.url}
        log_dir = tmp_path / "logs"
        log_dir.mkdir()
        processes = {
            name: Process(name, [name], env, log_dir) for name in ("webhook", "bridge", "worker")
        }  # fmt: skip
        for process in processes.values():
            process.start()
        running = Pipeline(settings, meta, genesys, http, processes)
        try:
            await wait_for(lambda: stack_ready(http, settings), 90, "the edge and the worker to be ready", running)
            yield running
        finally:
            for process in processes.values():
                process.kill()
            if os.environ.get("WABRIDGE_TEST_SHOW_LOGS"):
                print(running.tail())
            await kafka.delete_topics(settings, changelog_topic_names(build_worker(settings)))


async def stack_ready(http: aiohttp.ClientSession, settings: Settings) -> bool:
    try:
        async with http.get(f"http://127.0.0.1:{settings.webhook_ops_port}/readyz") as edge:
            if edge.status != 200:
                return False
        async with http.get(f"http://127.0.0.1:{settings.worker_port}/router/") as router:
            if router.status != 200:
                return False
            routes = await router.json()
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False
    return any(any(topics.values()) for topics in routes.values())


async def pg_rows(settings: Settings, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(
        settings.postgres_dsn.get_secret_value(), server_settings={"search_path": settings.postgres_schema}
    )
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()
