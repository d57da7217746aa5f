"""What a run prints: a progress line while it runs, then a table, or the same figures as JSON.

The JSON keys the issue fixes (``rate``, ``duration_s``, ``accepted``, ``ack_p50_ms``, ``ack_p99_ms``,
``e2e_p50_ms``, ``e2e_p99_ms``, ``throughput_msgs_s``, ``lost``, ``duplicates``, ``out_of_order``)
are always there; the others add detail under names that say what they are.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from wabridge.bench.edge_load import EdgeResult
    from wabridge.bench.latency import LatencySummary
    from wabridge.bench.processes import ProcessUsage
    from wabridge.bench.run import BenchResult, FindMaxResult, FindMaxStep
    from wabridge.bench.state_load import StateResult

_BAR_WIDTH = 28
# Without a terminal (CI logs, a test's pipe) the progress is a line every this many seconds.
_PLAIN_EVERY_S = 5.0


class Progress:
    """A progress bar redrawn in place on a terminal, or an occasional plain line elsewhere."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        self._stream = stream or sys.stderr
        self._enabled = enabled
        self._tty = self._stream.isatty()
        self._last_plain = 0.0
        self._drawn = False

    def show(self, phase: str, fraction: float, detail: str) -> None:
        if not self._enabled:
            return
        filled = round(_BAR_WIDTH * min(max(fraction, 0.0), 1.0))
        line = f"{phase:9} [{'#' * filled}{'-' * (_BAR_WIDTH - filled)}] {detail}"
        if self._tty:
            self._stream.write("\r\x1b[2K" + line)
            self._drawn = True
        elif time.monotonic() - self._last_plain >= _PLAIN_EVERY_S:
            self._stream.write(line + "\n")
            self._last_plain = time.monotonic()
        self._stream.flush()

    def finish(self) -> None:
        if self._enabled and self._tty and self._drawn:
            self._stream.write("\n")
            self._stream.flush()
        self._drawn = False


def _latency(prefix: str, summary: LatencySummary) -> dict[str, float]:
    return {
        f"{prefix}_p50_ms": round(summary.p50_ms, 3),
        f"{prefix}_p99_ms": round(summary.p99_ms, 3),
        f"{prefix}_p999_ms": round(summary.p999_ms, 3),
        f"{prefix}_max_ms": round(summary.max_ms, 3),
    }


def _processes(usage: dict[str, ProcessUsage]) -> dict[str, dict[str, Any]]:
    return {name: asdict(item) for name, item in usage.items()}


def result_json(result: BenchResult) -> dict[str, Any]:
    options, shape, counts = result.options, result.options.shape, result.accounting
    return {
        "mode": result.mode,
        "run_id": options.run_id,
        "rate": shape.rate,
        "duration_s": shape.duration_s,
        "customers": shape.customers,
        "tenants": list(result.tenants),
        "batch_size": shape.batch_size,
        "media_share": shape.media_share,
        "duplicate_share": shape.duplicate_share,
        "genesys_latency_ms": options.genesys_latency_ms,
        "genesys_rate_limit_per_minute": options.genesys_rate_limit,
        "sent": counts.sent,
        "posts": result.posts,
        "duplicate_posts": result.duplicate_posts,
        "accepted": counts.accepted,
        "edge_statuses": result.statuses,
        "arrived": counts.arrived,
        "lost": counts.lost,
        "duplicates": counts.duplicates,
        "out_of_order": counts.out_of_order,
        "unexpected": counts.unexpected,
        "misrouted": counts.misrouted,
        "arrived_unaccepted": counts.arrived_unaccepted,
        "refused_by_meta": result.refused_by_meta,
        **_latency("ack", result.ack),
        **_latency("e2e", result.e2e),
        "throughput_msgs_s": round(counts.throughput_msgs_s, 2),
        "late_sends": result.pacing.late,
        "max_lag_ms": round(result.pacing.max_lag_ms, 3),
        "customer_waits": result.customer_waits,
        "send_phase_s": round(result.send_phase_s, 3),
        "drained": result.drained,
        "drain_s": round(result.drain_s, 3),
        "lost_examples": list(counts.lost_examples),
        "duplicate_examples": list(counts.duplicate_examples),
        "out_of_order_examples": list(counts.out_of_order_examples),
        "processes": _processes(result.processes),
    }


def find_max_json(found: FindMaxResult) -> dict[str, Any]:
    return {
        "mode": "find-max",
        "max_rate": found.max_rate,
        "hold_s": found.hold_s,
        "e2e_p99_limit_ms": found.e2e_p99_limit_ms,
        "steps": [{**result_json(step.result), "held": step.held} for step in found.steps],
    }


def state_json(result: StateResult) -> dict[str, Any]:
    return {
        "mode": "state",
        "rate": result.rate,
        "duration_s": result.duration_s,
        "customers": result.customers,
        "tenants": list(result.tenants),
        "requests": result.requests,
        "ok": result.ok,
        "statuses": result.statuses,
        "sources": result.sources,
        **_latency("latency", result.latency),
        "throughput_req_s": round(result.throughput_req_s, 2),
        "late_sends": result.pacing.late,
        "max_lag_ms": round(result.pacing.max_lag_ms, 3),
        "processes": _processes(result.processes),
    }


def edge_json(result: EdgeResult) -> dict[str, Any]:
    shape, counts = result.shape, result.accounting
    return {
        "mode": "edge",
        "run_id": result.run_id,
        "rate": shape.rate,
        "duration_s": shape.duration_s,
        "customers": shape.customers,
        "tenants": list(result.tenants),
        "batch_size": shape.batch_size,
        "duplicate_share": shape.duplicate_share,
        "sent": counts.sent,
        "posts": result.posts,
        "duplicate_posts": result.duplicate_posts,
        "accepted": counts.accepted,
        "edge_statuses": result.statuses,
        "accepted_posts": result.accepted_posts,
        "queued_posts": result.queued_posts,
        "queued": counts.arrived,
        "lost": counts.lost,
        "lost_examples": list(counts.lost_examples),
        "duplicates": counts.duplicates,
        "out_of_order": counts.out_of_order,
        "out_of_order_examples": list(counts.out_of_order_examples),
        "misrouted": counts.misrouted,
        **_latency("ack", result.ack),
        "throughput_msgs_s": round(counts.throughput_msgs_s, 2),
        "late_sends": result.pacing.late,
        "max_lag_ms": round(result.pacing.max_lag_ms, 3),
        "processes": _processes(result.processes),
    }


def _rows(rows: list[tuple[str, str]]) -> list[str]:
    width = max(len(label) for label, _ in rows)
    return [f"  {label:<{width}}  {value}" for label, value in rows]


def _latency_cell(summary: LatencySummary) -> str:
    if summary.count == 0:
        return "no samples"
    return (
        f"p50 {summary.p50_ms:.1f} · p99 {summary.p99_ms:.1f} · p99.9 {summary.p999_ms:.1f} · "
        f"max {summary.max_ms:.1f}  ({summary.count} samples)"
    )


def _process_table(usage: dict[str, ProcessUsage]) -> list[str]:
    if not usage:
        return ["  processes: none recorded (is `wabridge run` running from this directory?)"]
    lines = [f"  {'process':<12} {'pid':>8} {'cpu s':>8} {'cpu %':>7} {'peak RSS MB':>12} {'lifetime peak MB':>17}"]
    for name, item in usage.items():
        lines.append(
            f"  {name:<12} {item.pid:>8} {item.cpu_s:>8.2f} {item.cpu_percent:>7.1f} "
            f"{item.peak_rss_mb:>12.1f} {item.lifetime_peak_rss_mb:>17.1f}"
        )
    return lines


def render_result(result: BenchResult) -> str:
    options, shape, counts = result.options, result.options.shape, result.accounting
    latency = "unchanged" if options.genesys_latency_ms is None else f"+{options.genesys_latency_ms:g} ms"
    limit = {None: "unchanged", 0: "off"}.get(options.genesys_rate_limit, f"{options.genesys_rate_limit}/min")
    outbound = result.mode == "outbound"
    what = "agents' messages to WhatsApp" if outbound else f"batch {shape.batch_size} · media {shape.media_share:.0%}"
    header = (
        f"wabridge bench{' --mode outbound' if outbound else ''} · run {options.run_id} · "
        f"{shape.rate:g} msg/s for {shape.duration_s:g} s · {shape.customers} customers · "
        f"tenants {', '.join(result.tenants)} · {what} · duplicate deliveries {shape.duplicate_share:.0%} · "
        f"Genesys latency {latency}, rate limit {limit}"
    )
    statuses = ", ".join(f"{status}: {count}" for status, count in sorted(result.statuses.items()))
    drain = f"complete in {result.drain_s:.1f} s" if result.drained else f"gave up after {result.drain_s:.1f} s"
    sender, peer = ("Genesys", "Meta") if outbound else ("Meta", "Genesys")
    rows = [
        ("messages sent", f"{counts.sent} in {result.posts} webhooks (+{result.duplicate_posts} duplicate deliveries)"),
        ("edge answers", statuses or "none"),
        (f"accepted (acked to {sender})", str(counts.accepted)),
        (f"arrived at {peer}", str(counts.arrived)),
        ("lost", str(counts.lost) + (f"  e.g. {', '.join(counts.lost_examples)}" if counts.lost else "")),
        (f"duplicates at {peer}", str(counts.duplicates)),
        ("out of order", str(counts.out_of_order)),
        ("unexpected · misrouted", f"{counts.unexpected} · {counts.misrouted}"),
        ("ack latency ms", _latency_cell(result.ack)),
        ("end-to-end ms", _latency_cell(result.e2e)),
        ("throughput", f"{counts.throughput_msgs_s:.1f} msg/s delivered ({shape.rate:g} offered)"),
        (
            "generator lag",
            f"{result.pacing.late} late sends (max {result.pacing.max_lag_ms:.1f} ms) · "
            f"{result.customer_waits} waits for a customer's previous webhook",
        ),
        ("drain", drain),
    ]
    if outbound:
        rows.insert(4, ("failed by Meta afterwards", str(result.refused_by_meta)))
    return "\n".join([header, *_rows(rows), *_process_table(result.processes)])


def render_step(step: FindMaxStep) -> str:
    result, counts = step.result, step.result.accounting
    verdict = "held" if step.held else "did not hold"
    return (
        f"rate {result.options.shape.rate:g} msg/s: {verdict} · accepted {counts.accepted}/{counts.sent} · "
        f"lost {counts.lost} · e2e p99 {result.e2e.p99_ms:.1f} ms · "
        f"throughput {counts.throughput_msgs_s:.1f} msg/s · late sends {result.pacing.late}"
    )


def render_find_max(found: FindMaxResult) -> str:
    lines = [render_step(step) for step in found.steps]
    if found.max_rate is None:
        lines.append("no rate held: even the lowest tried lost messages or missed the e2e p99 limit")
    else:
        lines.append(
            f"highest rate held for {found.hold_s:g} s with e2e p99 <= {found.e2e_p99_limit_ms:g} ms "
            f"and nothing lost: {found.max_rate:g} msg/s"
        )
    return "\n".join(lines)


def render_state(result: StateResult) -> str:
    header = (
        f"wabridge bench --mode state · GET /state/mapping/… · {result.rate:g} req/s for {result.duration_s:g} s · "
        f"{result.customers} customers · tenants {', '.join(result.tenants)}"
    )
    rows = [
        ("requests", f"{result.requests} ({result.ok} answered 200)"),
        ("statuses", ", ".join(f"{status}: {count}" for status, count in sorted(result.statuses.items())) or "none"),
        ("answered from", ", ".join(f"{source}: {count}" for source, count in sorted(result.sources.items())) or "-"),
        ("latency ms", _latency_cell(result.latency)),
        ("throughput", f"{result.throughput_req_s:.1f} req/s answered 200 ({result.rate:g} offered)"),
        ("generator lag", f"{result.pacing.late} late sends (max {result.pacing.max_lag_ms:.1f} ms)"),
    ]
    return "\n".join([header, *_rows(rows), *_process_table(result.processes)])


def render_edge(result: EdgeResult) -> str:
    shape, counts = result.shape, result.accounting
    header = (
        f"wabridge bench --mode edge · run {result.run_id} · {shape.rate:g} msg/s for {shape.duration_s:g} s · "
        f"{shape.customers} customers · tenants {', '.join(result.tenants)} · batch {shape.batch_size} · "
        f"duplicate deliveries {shape.duplicate_share:.0%}"
    )
    statuses = ", ".join(f"{status}: {count}" for status, count in sorted(result.statuses.items()))
    rows = [
        ("messages sent", f"{counts.sent} in {result.posts} webhooks (+{result.duplicate_posts} duplicate deliveries)"),
        ("edge answers", statuses or "none"),
        ("accepted (acked to Meta)", f"{counts.accepted} messages in {result.accepted_posts} webhooks"),
        ("in the inbound queue", f"{counts.arrived} messages in {result.queued_posts} webhooks"),
        ("lost", str(counts.lost) + (f"  e.g. {', '.join(counts.lost_examples)}" if counts.lost else "")),
        ("queued twice", f"{counts.duplicates} (Meta's duplicate deliveries; the pipeline drops them on wamid)"),
        ("out of order", str(counts.out_of_order)),
        ("ack latency ms", _latency_cell(result.ack)),
        ("throughput", f"{counts.throughput_msgs_s:.1f} msg/s taken in by the edge ({shape.rate:g} offered)"),
        (
            "generator lag",
            f"{result.pacing.late} late sends (max {result.pacing.max_lag_ms:.1f} ms)",
        ),
    ]
    return "\n".join([header, *_rows(rows), *_process_table(result.processes)])
