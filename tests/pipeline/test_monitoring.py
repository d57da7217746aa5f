"""The dashboard and the alerts, tried for real: Debian's Prometheus scrapes the running processes
(edge, bridge, worker) while customers and agents write, loads ``deploy/prometheus/alerts.yml`` as
shipped, and every query of ``deploy/grafana/dashboards/wabridge.json`` returns data. Two faults
the test injects fire their alerts: a record no stage can process (WabridgeStageErrors) and a
tenant whose Genesys OAuth client was deleted (WabridgeGenesysLoginRefused, and WabridgeTenantHeld
pending for its five minutes). promtool checks and unit-tests the rules (``alerts.test.yml``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from tests.integration.edge_fixtures import free_port, settings_env
from tests.pipeline.conftest import ACME, GLOBEX, Pipeline, wait_for
from tests.pipeline.test_poison_records import POISONS, poison, post_signed
from wabridge.settings import Settings
from wabridge.simulators.customer import InboundSpec

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "wabridge.json"
# Grafana's interval variable, as Grafana would fill it for a short range at a 1 s scrape.
RATE_INTERVAL = "1m"


def tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is not installed: `make test` installs Debian's prometheus package"
    return found


def healthcheck(pid: int, env: dict[str, str]) -> int:
    """``wabridge healthcheck --pid PID``'s exit status."""
    argv = [sys.executable, "-m", "wabridge", "healthcheck", "--pid", str(pid)]
    return subprocess.run(argv, env=env, capture_output=True, timeout=30, check=False).returncode


def test_the_health_check_fails_when_the_process_does_not_answer(isolated_settings: Settings, tmp_path: Path) -> None:
    port = free_port()  # nothing listens here
    stand_in = tmp_path / "wabridge"  # a "wabridge worker" that never serves
    stand_in.write_text("import time\ntime.sleep(60)\n")
    silent = subprocess.Popen([sys.executable, str(stand_in), "worker"])
    try:
        env = settings_env(isolated_settings.model_copy(update={"worker_port": port}))
        assert healthcheck(silent.pid, env) == 1
        assert healthcheck(os.getpid(), env) == 0  # pytest is no wabridge process: nothing to probe
    finally:
        silent.kill()
        silent.wait(10)
    # A process that is gone: unhealthy, said in one line rather than a traceback.
    gone = subprocess.run(
        [sys.executable, "-m", "wabridge", "healthcheck", "--pid", str(silent.pid)],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert gone.returncode == 1
    assert gone.stderr.startswith(f"cannot read process {silent.pid}") and "Traceback" not in gone.stderr


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = orjson.loads(DASHBOARD.read_bytes())
    return [
        (panel["title"], target["expr"].replace("$__rate_interval", RATE_INTERVAL))
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    promtool = tool("promtool")
    for argv in (
        [promtool, "check", "rules", str(PROMETHEUS_DIR / "alerts.yml")],
        [promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")],
        [promtool, "test", "rules", str(PROMETHEUS_DIR / "alerts.test.yml")],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=PROMETHEUS_DIR, check=False)
        assert done.returncode == 0, f"{' '.join(argv[1:])}:\n{done.stdout}\n{done.stderr}"


def test_every_alert_has_a_runbook_entry_in_the_readme() -> None:
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    readme = (ROOT / "README.md").read_text()
    names = [rule["alert"] for group in rules["groups"] for rule in group["rules"]]
    assert len(names) >= 10
    for name in names:
        assert f"#### {name}" in readme, f"README has no runbook entry for {name}"


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    async def query(self, http: aiohttp.ClientSession, expr: str) -> list[dict[str, Any]]:
        async with http.get(f"{self.url}/api/v1/query", params={"query": expr}) as response:
            body = await response.json()
        assert body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def alerts(self, http: aiohttp.ClientSession) -> list[dict[str, Any]]:
        async with http.get(f"{self.url}/api/v1/alerts") as response:
            alerts: list[dict[str, Any]] = (await response.json())["data"]["alerts"]
            return alerts

    async def targets_up(self, http: aiohttp.ClientSession) -> dict[str, str]:
        async with http.get(f"{self.url}/api/v1/targets") as response:
            active = (await response.json())["data"]["activeTargets"]
        return {target["labels"]["job"]: target["health"] for target in active}


@pytest.fixture
def prometheus(pipeline: Pipeline, tmp_path: Path) -> Iterator[Prometheus]:
    """Prometheus scraping this test's processes each second, with the shipped rules."""
    settings = pipeline.settings
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(PROMETHEUS_DIR / "alerts.yml")],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{target}"]}]}
            for job, target in (
                ("wabridge-webhook", settings.webhook_ops_port),
                ("wabridge-bridge", settings.bridge_metrics_port),
                ("wabridge-worker", settings.worker_port),
            )
        ],
    }
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            tool("prometheus"),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield Prometheus(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


async def firing(
    prometheus: Prometheus, http: aiohttp.ClientSession, name: str, state: str = "firing"
) -> list[dict[str, str]]:
    """The labels of each alert ``name`` in ``state``."""
    alerts = await prometheus.alerts(http)
    return [a["labels"] for a in alerts if a["labels"]["alertname"] == name and a["state"] == state]


async def test_prometheus_scrapes_the_bridge_under_load_every_panel_has_data_and_faults_fire_alerts(
    pipeline: Pipeline, prometheus: Prometheus
) -> None:
    http = pipeline.http

    async def scraping() -> bool:
        try:
            health = await prometheus.targets_up(http)
        except aiohttp.ClientError:
            return False
        return sorted(health) == ["wabridge-bridge", "wabridge-webhook", "wabridge-worker"] and set(
            health.values()
        ) == {"up"}

    await wait_for(scraping, 60, "Prometheus scraping the three processes", pipeline)
    # The image's HEALTHCHECK finds each process's port from its command line and settings.
    for name, process in pipeline.processes.items():
        assert process.proc is not None
        assert healthcheck(process.proc.pid, settings_env(pipeline.settings)) == 0, name

    # Load: customers of both tenants write (texts and pictures), agents answer.
    customers = [f"1650555{n:04d}" for n in range(20)]
    wamids = {ACME: [], GLOBEX: []}  # type: dict[Any, list[str]]
    for round_ in range(4):
        for tenant in (ACME, GLOBEX):
            specs = [InboundSpec(kind="text", wa_id=c, text=f"round {round_}") for c in customers]
            specs.append(InboundSpec(kind="image", wa_id=customers[round_], text="photo"))
            wamids[tenant] += await pipeline.send(tenant, specs)
    for tenant in (ACME, GLOBEX):
        await pipeline.wait_arrived(tenant, wamids[tenant], timeout_s=120)
        for customer in customers[:5]:
            await pipeline.genesys.send_agent_message(tenant.integration_id, customer, text="on it")

    async def replies_sent() -> bool:
        return len(pipeline.meta.sent_messages(ACME.phone_number_id)) >= 5

    await wait_for(replies_sent, 60, "the agents' replies at Meta", pipeline)

    # Fault 1: a record no stage can process -> error-events -> WabridgeStageErrors.
    wamid, (kind, mutate) = next(iter(POISONS.items()))
    await post_signed(pipeline, poison(kind, wamid, mutate))

    async def stage_errors() -> bool:
        return bool(await firing(prometheus, http, "WabridgeStageErrors"))

    await wait_for(stage_errors, 60, "WabridgeStageErrors firing", pipeline)

    # Fault 2: ACME's OAuth client is deleted in Genesys -> refused logins, ACME held.
    client = pipeline.genesys.clients[ACME.client_id]
    pipeline.genesys.remove_client(ACME.client_id)
    pipeline.genesys.revoke_tokens(ACME.client_id)
    held = await pipeline.send(ACME, [InboundSpec(kind="text", wa_id=customers[0], text="while held")])

    async def login_refused() -> bool:
        alerts = await firing(prometheus, http, "WabridgeGenesysLoginRefused")
        return any(labels.get("tenant") == ACME.id for labels in alerts)

    await wait_for(login_refused, 60, "WabridgeGenesysLoginRefused firing for acme", pipeline)

    async def hold_pending() -> bool:
        alerts = await firing(prometheus, http, "WabridgeTenantHeld", "pending")
        return any(labels.get("tenant") == ACME.id for labels in alerts)

    await wait_for(hold_pending, 30, "WabridgeTenantHeld pending for acme", pipeline)
    [stage_alert] = [a for a in await firing(prometheus, http, "WabridgeStageErrors") if a["stage"] == "prepare"]
    assert stage_alert["severity"] == "warning"

    # Every panel of the dashboard has something to show.
    empty = [(title, expr) for title, expr in dashboard_queries() if not await prometheus.query(http, expr)]
    assert empty == [], "dashboard queries without data:\n" + "\n".join(f"{t}: {e}" for t, e in empty)

    async def error_kept() -> bool:  # the bridge counts error-events every 10 s
        return bool(await prometheus.query(http, "max(wabridge_error_events_records) >= 1"))

    await wait_for(error_kept, 30, "the poison record counted on error-events", pipeline)
    # Nothing else is alerting: healthy parts stay quiet.
    others = {a["labels"]["alertname"] for a in await prometheus.alerts(http)} - {
        "WabridgeStageErrors", "WabridgeGenesysLoginRefused", "WabridgeTenantHeld"
    }  # fmt: skip
    assert others == set()

    pipeline.genesys.upsert_client(client)  # fixed by an operator: the held message arrives
    await pipeline.wait_arrived(ACME, held, timeout_s=60)
