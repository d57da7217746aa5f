"""The PostgreSQL side of the worker's state: a group-commit sink and a coalesced activity writer.

Why a group commit: every PostgreSQL write that must be durable before its event is acked (a new
mapping, a tracking row) would otherwise cost a transaction with its own WAL flush per message.
Lanes instead hand their write to :class:`GroupCommitSink` and await it; the sink collects what
arrives within ``max_delay_s`` (or ``max_batch`` items), runs it as one multi-row statement per
kind in one transaction, and resolves every waiting lane at once. Many lanes' writes share one
round trip and one commit; each lane still only acks after its own write is committed.

Why coalesce ``last_activity_at``: it changes on every message but nothing waits for it. The table
holds the exact value; PostgreSQL gets the latest value per customer once a second
(:class:`ActivityCoalescer`), so the hot path has no round trip for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg

from wabridge.errors import TransientError
from wabridge.failures import classify, describe

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

# Runs a batch of one kind on a connection inside the sink's transaction; one result per item, in order.
BatchWriter = Callable[[asyncpg.Connection, Sequence[Any]], Awaitable[Sequence[Any]]]


@dataclass(frozen=True, slots=True)
class WriteKind(Generic[Item, Result]):
    """A kind of write the sink batches: its name (for logs) and its multi-row writer."""

    name: str
    write: BatchWriter


@dataclass(slots=True)
class _Queued:
    kind: WriteKind[Any, Any]
    item: Any
    future: asyncio.Future[Any]


class GroupCommitSink:
    """Batches writes from many lanes into one transaction; each caller awaits its own result."""

    def __init__(self, pool: asyncpg.Pool, *, max_delay_s: float = 0.005, max_batch: int = 500) -> None:
        self._pool = pool
        self._max_delay_s = max_delay_s
        self._max_batch = max_batch
        self._queue: list[_Queued] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0

    async def write(self, kind: WriteKind[Item, Result], item: Item) -> Result:
        """Queue ``item`` and wait until it is committed. Raises TransientError or PermanentError."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="group-commit-sink")
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(kind, item, future))
        self._wakeup.set()
        return await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for queued in self._queue:
            if not queued.future.done():
                queued.future.set_exception(TransientError("sink closed"))
        self._queue.clear()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            # Let the other lanes that run in this same tick (or within the delay) join the batch.
            if len(self._queue) < self._max_batch:
                await asyncio.sleep(self._max_delay_s)
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            if not self._queue:
                self._wakeup.clear()
            batch = [q for q in batch if not q.future.cancelled()]
            if batch:
                await self._commit(batch)

    async def _commit(self, batch: list[_Queued]) -> None:
        started = time.perf_counter()
        try:
            results = await self._in_transaction(batch)
        except Exception as exc:  # noqa: BLE001 - each item is retried alone below, none is lost
            if len(batch) == 1:
                _settle(batch[0].future, exc=classify(exc))
                return
            # One bad item aborts the whole transaction: retry each alone so only it fails.
            log.warning("group commit of %d writes failed (%s); retrying them one by one", len(batch), exc)
            for queued in batch:
                await self._commit([queued])
            return
        for queued, result in zip(batch, results, strict=True):
            _settle(queued.future, result=result)
        self.batches += 1
        self.items += len(batch)
        log.debug("group commit: %d writes in %.1f ms", len(batch), (time.perf_counter() - started) * 1000)

    async def _in_transaction(self, batch: list[_Queued]) -> list[Any]:
        by_kind: dict[str, list[int]] = {}
        for index, queued in enumerate(batch):
            by_kind.setdefault(queued.kind.name, []).append(index)
        results: list[Any] = [None] * len(batch)
        async with self._pool.acquire() as conn, conn.transaction():
            for indexes in by_kind.values():
                kind = batch[indexes[0]].kind
                written = await kind.write(conn, [batch[i].item for i in indexes])
                for i, result in zip(indexes, written, strict=True):
                    results[i] = result
        return results


def _settle(future: asyncio.Future[Any], *, result: Any = None, exc: BaseException | None = None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


class ActivityCoalescer:
    """Keeps the latest ``last_activity_at`` per mapping and writes them all once per flush."""

    def __init__(self, pool_factory: Callable[[], Awaitable[asyncpg.Pool]]) -> None:
        self._pool_factory = pool_factory
        self._latest: dict[tuple[str, str], float] = {}

    def touch(self, tenant_id: str, customer_id: str, at: float) -> None:
        key = (tenant_id, customer_id)
        if at > self._latest.get(key, 0.0):
            self._latest[key] = at

    @property
    def pending(self) -> int:
        return len(self._latest)

    async def flush(self) -> int:
        """Write what accumulated; on failure keep it for the next flush (it is only a timestamp)."""
        if not self._latest:
            return 0
        taken, self._latest = self._latest, {}
        tenants, customers, stamps = [], [], []
        for (tenant_id, customer_id), at in taken.items():
            tenants.append(tenant_id)
            customers.append(customer_id)
            stamps.append(at)
        try:
            pool = await self._pool_factory()
            await pool.execute(
                """
                UPDATE conversation_mappings AS m
                SET last_activity_at = GREATEST(m.last_activity_at, to_timestamp(v.at))
                FROM unnest($1::text[], $2::text[], $3::float8[]) AS v(tenant_id, customer_id, at)
                WHERE m.tenant_id = v.tenant_id AND m.customer_id = v.customer_id
                """,
                tenants,
                customers,
                stamps,
            )
        except Exception as exc:  # noqa: BLE001 - a timer that raises stops the worker (CrashingSupervisor)
            decided = classify(exc)
            if isinstance(decided, TransientError):
                log.warning("could not write last_activity_at of %d mappings, keeping them: %s", len(taken), exc)
                for key, at in taken.items():
                    if at > self._latest.get(key, 0.0):
                        self._latest[key] = at
            else:
                log.error("last_activity_at of %d mappings not written, dropped: %s", len(taken), describe(exc))
            return 0
        return len(taken)
