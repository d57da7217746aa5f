"""A worker's stream-health metrics, from Faust's monitor hooks, and its consumer lag.

Faust calls its app's monitor (``faust.sensors.Monitor``) at every record, event, send, commit and
rebalance. ``StreamMonitor`` keeps Faust's own bookkeeping and exports the low-frequency facts:

* ``wabridge_consumer_commit_seconds``: how long each offset commit took;
* ``wabridge_rebalances_total``, ``wabridge_rebalancing`` (1 while one is in progress) and
  ``wabridge_rebalance_seconds`` (from its start to its end, table recovery included);
* ``wabridge_produce_errors_total``: records the worker's producer could not send.

*Choice:* not Faust's Prometheus sensor (``faust.sensors.prometheus``). It also counts at every
record and event, and it builds each event's stream label with a regular expression and looks up
its labelled metrics anew each time: measured with py-spy at 100 msg/s it took 5.6 % of the
worker's CPU. Records per stage are counted once per record by the stage framework instead
(``wabridge_stage_records_total``), and the per-record counts it would add are the broker's own
figures (the lag below, and the topics' offsets).

``wabridge_consumer_lag{topic,partition}``: for each partition this worker consumes, the log's end
minus the group's committed offset, asked of the broker every ``LAG_INTERVAL_S``. Faust's
end-offset bookkeeping moves only when records are fetched, so a stalled or paused consumer (the
very case a lag alert is for) would look caught up. Changelog partitions are left out: they are
read only while a table recovers and have no committed offset.

Every label comes from a fixed set: the deployment's topic names and partition numbers.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
from faust.sensors import Monitor
from faust.types import AppT
from prometheus_client import Counter, Gauge, Histogram

from wabridge.observability import ThrottledLog
from wabridge.streams.app import changelog_topic_names

log = logging.getLogger(__name__)

# How often the lag is asked of the broker: one ListOffsets and one empty fetch per broker.
LAG_INTERVAL_S = 5.0

LAG = Gauge(
    "wabridge_consumer_lag",
    "Records in a partition this worker consumes that are not yet committed (log end - committed offset)",
    ["topic", "partition"],
)
COMMIT_SECONDS = Histogram(
    "wabridge_consumer_commit_seconds",
    "How long the worker's offset commits took",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
REBALANCES = Counter("wabridge_rebalances_total", "Consumer group rebalances this worker took part in")
REBALANCING = Gauge("wabridge_rebalancing", "1 while this worker is in a rebalance (table recovery included)")
REBALANCE_SECONDS = Histogram(
    "wabridge_rebalance_seconds",
    "From a rebalance's start to its end, table recovery included",
    buckets=(0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)
PRODUCE_ERRORS = Counter("wabridge_produce_errors_total", "Records the worker's producer could not send")

_failures = ThrottledLog(log, period_s=60.0)


class StreamMonitor(Monitor):
    """Faust's monitor, exporting commits, rebalances and send errors to Prometheus."""

    def on_commit_completed(self, consumer: Any, state: Any) -> None:
        super().on_commit_completed(consumer, state)
        COMMIT_SECONDS.observe(self.secs_since(state))

    def on_rebalance_start(self, app: AppT) -> dict[str, Any]:
        REBALANCES.inc()
        REBALANCING.set(1)
        state: dict[str, Any] = super().on_rebalance_start(app)
        return state

    def on_rebalance_end(self, app: AppT, state: dict[str, Any]) -> None:
        super().on_rebalance_end(app, state)
        REBALANCING.set(0)
        REBALANCE_SECONDS.observe(state["latency_end"])

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        super().on_send_error(producer, exc, state)
        PRODUCE_ERRORS.inc()


def install(app: faust.App) -> None:
    """Make ``app``'s monitor a ``StreamMonitor`` and keep its consumer lag current."""
    app.monitor = StreamMonitor()

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
