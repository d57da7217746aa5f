"""A worker's stream-health metrics: Faust's Prometheus sensor, and what it leaves out.

Faust's sensor (``faust.sensors.prometheus``) is the app's monitor, its metrics named
``wabridge_faust_*``: records received per topic, events per agent stream, consumer commit latency
and producer send latency (millisecond histograms), table operations, assignment latency and the
rebalances in progress. Added here:

* ``wabridge_consumer_lag{topic,partition}``: for each partition this worker consumes, the log's
  end minus the group's committed offset, asked of the broker every ``LAG_INTERVAL_S``. Faust's own
  end-offset gauge moves only when records are fetched, so a stalled or paused consumer (the very
  case a lag alert is for) would look caught up. Changelog partitions are left out: they are read
  only while a table recovers and have no committed offset.
* ``wabridge_rebalances_total``: rebalances begun. Faust's ``total_rebalances`` is a gauge that
  goes back down when a rebalance ends, so it cannot say how many there were.

Every label comes from a fixed set: the deployment's topic names and partition numbers, Faust's
agent and table names.
"""

from __future__ import annotations

import logging

import faust
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.types import AppT
from prometheus_client import REGISTRY, Counter, Gauge

from wabridge.observability import ThrottledLog
from wabridge.streams.app import changelog_topic_names

log = logging.getLogger(__name__)

# How often the lag is asked of the broker: one ListOffsets and one empty fetch per broker.
LAG_INTERVAL_S = 5.0
SENSOR_PREFIX = "wabridge_faust"

LAG = Gauge(
    "wabridge_consumer_lag",
    "Records in a partition this worker consumes that are not yet committed (log end - committed offset)",
    ["topic", "partition"],
)
REBALANCES = Counter("wabridge_rebalances_total", "Consumer group rebalances this worker took part in")

_sensor_metrics: FaustMetrics | None = None
_failures = ThrottledLog(log, period_s=60.0)


def _faust_metrics() -> FaustMetrics:
    # One set per process: the default registry refuses a metric name twice, and tests build
    # several apps in one process.
    global _sensor_metrics
    if _sensor_metrics is None:
        _sensor_metrics = FaustMetrics.create(registry=REGISTRY, app_name=SENSOR_PREFIX)
    return _sensor_metrics


class WorkerMonitor(PrometheusMonitor):
    """Faust's Prometheus monitor, counting rebalances as well."""

    def on_rebalance_start(self, app: AppT) -> dict:  # type: ignore[type-arg]  # Faust's signature
        REBALANCES.inc()
        return super().on_rebalance_start(app)


def install(app: faust.App) -> None:
    """Make ``app``'s monitor the Prometheus one and keep its consumer lag current."""
    app.monitor = WorkerMonitor(metrics=_faust_metrics())

    @app.timer(LAG_INTERVAL_S)  # type: ignore[untyped-decorator]  # Faust's decorators are untyped
    async def refresh_consumer_lag() -> None:
        try:
            await update_lag(app)
        except Exception as exc:  # noqa: BLE001 - a timer that raises stops the worker; next round tries again
            _failures.log("consumer lag not refreshed (kept the last values): %s", exc)


async def update_lag(app: faust.App) -> None:
    """Set ``wabridge_consumer_lag`` for every non-changelog partition assigned to ``app``."""
    consumer = app.consumer
    changelogs = set(changelog_topic_names(app))
    partitions = sorted(tp for tp in consumer.assignment() if tp.topic not in changelogs)
    if not partitions:
        LAG.clear()
        return
    ends = await consumer.highwaters(*partitions)
    # Faust's record of the group's committed offsets: read from the broker at assignment, then
    # advanced by every commit of this worker (Consumer._committed_offset, faust-streaming 0.15).
    committed = {tp: consumer._committed_offset.get(tp) for tp in partitions}  # type: ignore[attr-defined]
    never = [tp for tp, offset in committed.items() if offset is None]
    earliest = await consumer.earliest_offsets(*never) if never else {}
    LAG.clear()
    for tp in partitions:
        start = committed[tp]
        if start is None:
            start = earliest.get(tp, 0)
        LAG.labels(tp.topic, str(tp.partition)).set(max(0, ends[tp] - start))
