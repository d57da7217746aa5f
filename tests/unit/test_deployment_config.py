"""docker-compose.yml cannot drift from the settings object.

The compose file cannot run in CI, so these tests read it: every ``WABRIDGE_*`` name it (or the
example env file, or the Dockerfile) mentions must be a field of :class:`Settings`, every process's
environment must build a valid ``Settings`` with the production choices, and every service a
wabridge process depends on must exist and be waited for properly.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from wabridge import healthcheck
from wabridge.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
EXAMPLE_ENV = ROOT / "deploy" / "example.env"
DOCKERFILE = ROOT / "Dockerfile"

PREFIX = Settings.model_config["env_prefix"]
WABRIDGE_NAME = re.compile(rf"\b{PREFIX}[A-Z0-9_]+\b")
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}
INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")

# The long-running wabridge processes and the port each answers /healthz on inside its container.
PROCESS_HEALTH_PORTS = {"webhook": 3010, "bridge": 3011, "worker": 3005}
# What each process publishes on the host: the edge its webhook port, nothing else of ours.
PUBLISHED = {"webhook": ["3009:3009"]}
# Inside a container a process must listen on every interface to be reachable at all.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104


def setting_env_names() -> set[str]:
    return {f"{PREFIX}{name}".upper() for name in Settings.model_fields}


def unknown_settings(names: set[str]) -> set[str]:
    """The ``WABRIDGE_*`` names that no field of Settings reads."""
    return {name for name in names if name.startswith(PREFIX)} - setting_env_names()


def load_compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text("utf-8"))
    return compose


def example_env() -> dict[str, str]:
    values = {}
    for line in EXAMPLE_ENV.read_text("utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable substitution, for the forms the compose file uses."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if name in env and (env[name] or not (op or "").startswith(":")):
            return env[name]
        if op and op.endswith("-"):
            return arg
        raise KeyError(f"${{{name}}} is not set in {EXAMPLE_ENV.name} and has no default")

    return INTERPOLATION.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


def wabridge_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that run the wabridge image (they set WABRIDGE_* variables)."""
    return {
        name: service
        for name, service in compose["services"].items()
        if any(key.startswith(PREFIX) for key in environment(service))
    }


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def service_settings(compose: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings the process of compose service ``name`` reads, with example.env's values."""
    env = {key: interpolate(value, example_env()) for key, value in environment(compose["services"][name]).items()}
    for key in list(setting_env_names()):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


# --- the check itself can fail -------------------------------------------------------------


def test_an_unknown_wabridge_variable_is_reported() -> None:
    assert unknown_settings({"WABRIDGE_KAFKA_BOOTSTRAP", "WABRIDGE_KAFKA_BOOTSTRAP_SERVERS", "PATH"}) == {
        "WABRIDGE_KAFKA_BOOTSTRAP_SERVERS"
    }


def test_a_missing_dependency_is_reported() -> None:
    compose = {
        "services": {
            "webhook": {"environment": {"WABRIDGE_REDIS_URL": "redis://redis"}, "depends_on": ["redis", "rabbit"]},
            "redis": {},
        }
    }
    missing = {
        (name, dep)
        for name, service in wabridge_services(compose).items()
        for dep in depends_on(service)
        if dep not in compose["services"]
    }
    assert missing == {("webhook", "rabbit")}


# --- the real files ------------------------------------------------------------------------


@pytest.mark.parametrize("path", [COMPOSE_FILE, EXAMPLE_ENV, DOCKERFILE], ids=lambda p: p.name)
def test_every_wabridge_variable_mentioned_is_a_settings_field(path: Path) -> None:
    mentioned = set(WABRIDGE_NAME.findall(path.read_text("utf-8")))
    assert mentioned, f"{path.name} mentions no {PREFIX}* variable at all: is the pattern right?"
    assert unknown_settings(mentioned) == set()


def test_every_environment_key_of_every_service_is_a_settings_field() -> None:
    compose = load_compose()
    for name, service in compose["services"].items():
        assert unknown_settings(set(environment(service))) == set(), name


def test_the_wabridge_processes_are_all_there() -> None:
    services = wabridge_services(load_compose())
    assert set(services) == {"provision", *PROCESS_HEALTH_PORTS}


@pytest.mark.parametrize("name", ["provision", *PROCESS_HEALTH_PORTS])
def test_each_process_environment_builds_the_production_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    compose = load_compose()
    settings = service_settings(compose, name, monkeypatch)

    # Real Kafka: idempotent producer, every service reached by its compose name.
    assert settings.kafka_idempotent is True
    services = set(compose["services"])
    for url in (
        f"kafka://{settings.kafka_bootstrap}",
        settings.postgres_dsn.get_secret_value(),
        settings.redis_url.get_secret_value(),
        settings.rabbitmq_url.get_secret_value(),
        settings.s3_endpoint,
    ):
        assert urlsplit(url).hostname in services, url
    # Listening on every interface, on the ports the healthchecks probe.
    assert settings.webhook_host == ALL_INTERFACES
    assert settings.worker_host == ALL_INTERFACES
    assert settings.webhook_port == 3009
    assert settings.webhook_ops_port == PROCESS_HEALTH_PORTS["webhook"]
    assert settings.webhook_ops_host == ALL_INTERFACES
    assert settings.worker_port == PROCESS_HEALTH_PORTS["worker"]
    assert settings.bridge_metrics_port == PROCESS_HEALTH_PORTS["bridge"]
    # Secrets come from the env file, never from the defaults meant for the embedded stack.
    assert settings.secrets_key is not None
    assert settings.s3_public_endpoint
    defaults = Settings.model_fields
    for field in ("postgres_dsn", "rabbitmq_url", "s3_access_key", "s3_secret_key"):
        assert getattr(settings, field) != defaults[field].default, field


def test_only_the_webhook_port_is_published() -> None:
    for name, service in wabridge_services(load_compose()).items():
        ports = [str(p).split("  #")[0] for p in service.get("ports", [])]
        assert ports == PUBLISHED.get(name, []), name


def test_the_worker_runs_two_replicas() -> None:
    worker = load_compose()["services"]["worker"]
    assert worker["deploy"]["replicas"] == 2
    # Replicas cannot share a fixed container name or a published host port.
    assert "container_name" not in worker
    assert "ports" not in worker


def test_every_dependency_of_a_wabridge_process_is_defined_and_waited_for() -> None:
    compose = load_compose()
    services = compose["services"]
    for name, service in wabridge_services(compose).items():
        deps = depends_on(service)
        assert deps, f"{name} depends on nothing"
        for dep, condition in deps.items():
            assert dep in services, f"{name} depends on {dep}, which is not defined"
            if dep == "provision":
                assert condition == "service_completed_successfully", name
            else:
                assert condition == "service_healthy", f"{name} -> {dep}"
                assert "healthcheck" in services[dep], f"{dep} has no healthcheck for {name} to wait on"
        if name != "provision":
            assert "provision" in deps, f"{name} starts before topics, buckets and queues exist"


def test_the_processes_needed_backends_are_dependencies() -> None:
    services = load_compose()["services"]
    assert {"kafka", "rabbitmq", "postgres", "s3"} <= set(depends_on(services["provision"]))
    assert {"rabbitmq", "redis", "postgres", "s3"} <= set(depends_on(services["webhook"]))
    assert {"rabbitmq", "kafka"} <= set(depends_on(services["bridge"]))
    assert {"kafka", "redis", "postgres", "s3"} <= set(depends_on(services["worker"]))


def test_the_image_health_check_is_the_one_every_process_uses() -> None:
    healthcheck = [line for line in DOCKERFILE.read_text("utf-8").splitlines() if line.startswith("HEALTHCHECK")]
    assert len(healthcheck) == 1 and '["wabridge", "healthcheck"]' in healthcheck[0]
    # No service overrides it with a probe of its own, which could drift from the ports.
    for name in PROCESS_HEALTH_PORTS:
        assert "healthcheck" not in load_compose()["services"][name], name


@pytest.mark.parametrize(("name", "port"), PROCESS_HEALTH_PORTS.items())
def test_the_health_check_probes_each_process_on_its_compose_port(
    name: str, port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = service_settings(load_compose(), name, monkeypatch)
    argv = ["/opt/wabridge/bin/python", "/opt/wabridge/bin/wabridge", name]
    assert healthcheck.process_command(argv) == name
    assert healthcheck.HEALTH_PORTS[name](settings) == port


def test_a_one_shot_command_has_nothing_to_probe() -> None:
    assert healthcheck.process_command(["/opt/wabridge/bin/wabridge", "provision"]) is None
    assert healthcheck.process_command(["/opt/wabridge/bin/wabridge", "tenants", "list"]) is None
    # Only the wabridge command itself counts, not an argument that happens to be a process name.
    assert healthcheck.process_command(["/opt/wabridge/bin/wabridge", "run", "--only", "worker"]) is None
    assert healthcheck.process_command(["python", "-m", "wabridge", "worker"]) == "worker"
    assert healthcheck.process_command(["pytest", "-k", "worker"]) is None


def test_the_image_installs_the_hash_locked_dependencies_in_a_build_stage() -> None:
    text = DOCKERFILE.read_text("utf-8")
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2 and stages[0].endswith(" AS build")
    assert "--require-hashes -r requirements.lock" in text
    assert "COPY --from=build" in text
    assert "USER wabridge" in text


def test_every_image_is_pinned_and_none_is_minio_or_an_unsupported_rabbitmq() -> None:
    for name, service in load_compose()["services"].items():
        image = service.get("image", "")
        if not image or image.startswith("wabridge:"):
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: {image} is not pinned"
        # minio/minio is no longer published (deploy/IMAGES.md); RabbitMQ 3.x is out of support.
        assert not repository.startswith("minio/"), name
        if repository == "rabbitmq":
            assert int(tag.split(".")[0]) >= 4, image


def test_prometheus_and_grafana_are_provisioned_from_deploy() -> None:
    services = load_compose()["services"]
    prometheus_mounts = " ".join(services["prometheus"]["volumes"])
    assert "./deploy/prometheus:/etc/prometheus" in prometheus_mounts
    grafana_mounts = " ".join(services["grafana"]["volumes"])
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning" in grafana_mounts
    assert "./deploy/grafana/dashboards:/etc/grafana/dashboards" in grafana_mounts
    for folder in ("prometheus", "grafana/provisioning", "grafana/dashboards"):
        assert (ROOT / "deploy" / folder).is_dir(), folder
    # The dashboard provider reads where the dashboards are mounted; the data source is Prometheus.
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/wabridge.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"
    datasource = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    # Prometheus scrapes each process on the port its /metrics is served on.
    scrape = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {
        job["job_name"]: job.get("static_configs", [{}])[0].get("targets") or job["dns_sd_configs"][0]
        for job in scrape["scrape_configs"]
    }
    assert targets["wabridge-webhook"] == [f"webhook:{PROCESS_HEALTH_PORTS['webhook']}"]
    assert targets["wabridge-bridge"] == [f"bridge:{PROCESS_HEALTH_PORTS['bridge']}"]
    assert targets["wabridge-worker"] == {"names": ["worker"], "type": "A", "port": 3005, "refresh_interval": "30s"}
    # Neither UI is published beyond the host.
    for name in ("prometheus", "grafana"):
        assert all(str(port).startswith("127.0.0.1:") for port in services[name]["ports"]), name


def test_kafka_runs_kraft_without_auto_created_topics() -> None:
    kafka = load_compose()["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = environment(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "healthcheck" in kafka


def test_the_example_env_holds_no_real_secrets() -> None:
    env = example_env()
    for key in ("POSTGRES_PASSWORD", "RABBITMQ_PASSWORD", "REDIS_PASSWORD", "S3_SECRET_KEY", "GRAFANA_ADMIN_PASSWORD"):
        assert env[key].startswith("change-me"), key
    assert env["WABRIDGE_SECRETS_KEY"].startswith("change-me")
