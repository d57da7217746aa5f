"""The Faust app of the workers, built from the one settings object, and the topics it needs.

Everything Faust would otherwise take from its own environment variables (``TOPIC_PARTITIONS``,
``WEB_PORT``, ...) is passed explicitly and ``env={}`` makes Faust ignore ``os.environ``
(STYLE.md §2).

Why the settings are what they are:

* ``processing_guarantee="at_least_once"``: the dev broker (Tansu) has no transactions; every
  effect is idempotent instead (invariant 4).
* Keys are raw ``tenant_id:customer_id`` strings and values raw bytes on every stage topic: agents
  decode and validate the bytes themselves, so a record Faust cannot decode is never skipped
  silently (invariant 2). Tables use the same raw key serializer (Faust's table default is json,
  which would partition ``"t:c"`` with its quotes and send ``table_route`` requests to the wrong
  worker).
* ``Settings.kafka_idempotent`` selects a producer with ``enable_idempotence``: Faust has no
  setting for it outside transactions (``producer_enable_idempotence`` is silently ignored).
* ``topic_allow_declare=False`` and :func:`declare_topics` creating every topic first, with
  ``Settings.kafka_partitions``: Tansu auto-creates any topic it is asked about with 4 partitions,
  so a changelog that Faust declares after the consumer has looked it up gets the wrong count.
  ``topic_disable_leader=True``: no leader-election topic (no ``on_leader`` timers here).
* ``agent_supervisor=CrashingSupervisor``: an agent that raises stops the worker instead of being
  restarted in place. Faust's default (``OneForOneSupervisor``) restarts the agent, which then
  carries on with the next event: the failed one stays unacked until the next rebalance while
  later events of the same customer go ahead of it. Agents route their own failures
  (``run_in_lanes``); what still escapes is a bug, and a restart resumes from the committed offset.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import faust
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP
from mode import CrashingSupervisor

from wabridge.connectors import kafka
from wabridge.errors import ConfigurationError
from wabridge.observability import logging_config
from wabridge.settings import Settings
from wabridge.streams import internal_auth
from wabridge.streams.topics import WORKER_GROUP, stage_topic_names
from wabridge.streams.types import StageTable

log = logging.getLogger(__name__)


class _IdempotentProducer(aiokafka_driver.Producer):
    # Faust enables enable_idempotence only inside transactions (exactly_once); there is no
    # setting for it at at_least_once, so Settings.kafka_idempotent selects this producer.
    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "enable_idempotence": True}


class _ConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Faust hard-codes fetch_max_wait_ms=1500. A broker that does not answer a waiting fetch
        # as soon as data arrives (Tansu holds it ~450 ms, measured) then adds that to every
        # stage hop; Apache Kafka answers at once either way. The attribute is read at start().
        consumer._fetch_max_wait_ms = getattr(self.app, FETCH_MAX_WAIT_ATTRIBUTE, consumer._fetch_max_wait_ms)
        return consumer

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        # Table recovery reads each changelog partition up to here: the log's true end, which Tansu's
        # ListOffsets can understate (kafka.end_offsets). Transactions are not used (at_least_once).
        if self.consumer.in_transaction:
            return await super()._highwaters(partitions)
        return cast(Mapping[TP, int], await kafka.end_offsets(self._ensure_consumer(), partitions))


class _Consumer(aiokafka_driver.Consumer):
    def _new_consumer_thread(self) -> aiokafka_driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class KafkaTransport(aiokafka_driver.Transport):
    Consumer = _Consumer


class IdempotentKafkaTransport(KafkaTransport):
    Producer = _IdempotentProducer


FETCH_MAX_WAIT_ATTRIBUTE = "wabridge_fetch_max_wait_ms"

# Faust picks a transport by URL scheme; this is the plugin hook (``faust.transports``).
_SCHEME = "wabridge-kafka"
_IDEMPOTENT_SCHEME = "wabridge-kafka-idempotent"
TRANSPORTS.aliases.setdefault(_SCHEME, f"{__name__}:KafkaTransport")
TRANSPORTS.aliases.setdefault(_IDEMPOTENT_SCHEME, f"{__name__}:IdempotentKafkaTransport")

# Every key on every stage topic and table: ``tenant_id:customer_id`` as UTF-8 bytes.
KEY_SERIALIZER = "raw"


def worker_url(settings: Settings) -> str:
    """Where other workers reach this worker's web server (``table_route`` forwards here)."""
    return settings.worker_canonical_url or f"http://{settings.worker_host}:{settings.worker_port}"


def create_app(settings: Settings, **options: Any) -> faust.App:
    """The workers' Faust app. ``options`` are for Faust settings this module does not decide."""
    app_id = settings.topic(WORKER_GROUP)
    hosts = [host.strip() for host in settings.kafka_bootstrap.split(",")]
    # Faust's producer comes from the consumer's transport (``broker``), not ``broker_producer``.
    scheme = _IDEMPOTENT_SCHEME if settings.kafka_idempotent else _SCHEME
    datadir = (settings.state_dir / "worker" / f"{app_id}-{settings.worker_port}").resolve()
    app = faust.App(
        app_id,
        env={},
        autodiscover=False,
        broker=[f"{scheme}://{host}" for host in hosts],
        broker_credentials=kafka.faust_credentials(settings),
        processing_guarantee="at_least_once",
        producer_acks=-1,
        topic_partitions=settings.kafka_partitions,
        topic_replication_factor=settings.kafka_replication_factor,
        topic_allow_declare=False,
        topic_disable_leader=True,
        key_serializer=KEY_SERIALIZER,
        value_serializer="raw",
        store="memory://",
        datadir=str(datadir),
        web_enabled=True,
        web_bind=settings.worker_host,
        web_host=settings.worker_host,
        web_port=settings.worker_port,
        # Every route but the probes needs the deployment token, Faust's own table and router
        # views included: they stay available to an operator who holds it.
        web_application_options={"middlewares": [internal_auth.middleware(settings)]},
        canonical_url=worker_url(settings),
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=settings.kafka_heartbeat_interval_s,
        broker_rebalance_timeout=settings.kafka_rebalance_timeout_s,
        broker_commit_interval=settings.kafka_commit_interval_s,
        agent_supervisor=CrashingSupervisor,
        Table=KeyedTable,
        **options,
    )
    setattr(app, FETCH_MAX_WAIT_ATTRIBUTE, settings.kafka_fetch_max_wait_ms)
    return app


def stage_topic(app: faust.App, settings: Settings, name: str) -> faust.TopicT:
    """A stage topic (name from ``streams.topics``): raw ``str`` keys, raw ``bytes`` values."""
    return app.topic(
        settings.topic(name),
        partitions=settings.kafka_partitions,
        key_type=str,
        value_type=bytes,
        key_serializer=KEY_SERIALIZER,
        value_serializer="raw",
    )


class KeyedTable(StageTable):
    """A Faust table whose keys serialise like the stage topics' keys: raw UTF-8 ``str``.

    Faust derives a table's serializers from its types (``str`` keys -> json) and takes no
    serializer argument; a json key would be ``"t:c"`` with quotes, hashed to another partition
    than the stage topic's raw key, and ``table_route`` would ask the wrong worker. The key type
    stays ``str``, so keys read back from the changelog (recovery) equal the live ones. Set as the
    app's ``Table`` class by :func:`create_app`, so every ``app.Table(...)`` gets it.
    """

    def __init__(self, app: Any, **kwargs: Any) -> None:
        kwargs.setdefault("key_type", str)
        super().__init__(app, **kwargs)
        if self.key_type is not str:
            raise ConfigurationError(f"table {self.name!r}: keys are tenant_id:customer_id strings")
        # Before anything builds the changelog topic from it (app.tables.add does).
        self.key_serializer = KEY_SERIALIZER


def create_table(app: faust.App, name: str, *, default: Any = None, help: str | None = None) -> StageTable:
    """A changelog-backed table keyed like the stage topics and co-partitioned with them.

    Values are json (dicts of conversation or message state).
    """
    table = app.Table(name, default=default, partitions=app.conf.topic_partitions, help=help)
    if table.changelog_topic.prepare_key("t:c", None)[0] != b"t:c":
        raise ConfigurationError(f"table {name!r} is not a KeyedTable: create the app with create_app")
    return cast(StageTable, table)


def changelog_topic_names(app: faust.App) -> list[str]:
    return [table.changelog_topic.get_topic_name() for table in app.tables.values()]


async def declare_topics(settings: Settings, app: faust.App | None = None, *, extra: Iterable[str] = ()) -> list[str]:
    """Create the stage topics, ``app``'s changelog topics (compacted) and ``extra``.

    Idempotent. Raises :class:`ConfigurationError` when an existing topic has another partition
    count: co-partitioning (invariant 3) and ``table_route`` both depend on it. Returns the names
    it created.
    """
    changelogs = changelog_topic_names(app) if app else []
    return await kafka.ensure_topics(
        settings, [*stage_topic_names(settings), *changelogs, *extra], compacted=changelogs
    )


class _Worker(faust.Worker):
    """A Faust worker that creates its topics before the app subscribes to them."""

    def __init__(self, app: faust.App, settings: Settings, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._settings = settings

    async def on_first_start(self) -> None:
        Path(self.app.conf.datadir).mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, at start
        await declare_topics(self._settings, cast(faust.App, self.app))
        await super().on_first_start()


def run_worker(app: faust.App, settings: Settings) -> None:
    """Run ``app`` as a worker in this process until it is stopped (SIGTERM/SIGINT) or crashes."""
    worker = _Worker(
        app,
        settings,
        loglevel=settings.log_level,
        logging_config=logging_config(settings.log_level, settings.log_format, "worker"),
        # Faust's banner and progress bars are for a terminal; JSON logs are for a log shipper.
        quiet=settings.log_format == "json",
        workdir=str(Path.cwd()),
    )
    worker.execute_from_commandline()
