"""``message_tracking``: one row per message and direction, its status only ever moving forward.

The forward-only rule lives in SQL (``status_rank``, migration 0002) so that it holds atomically
whoever writes (a lane, the State API, another worker during a rebalance): the upsert changes the
row only when the new status outranks the stored one and the stored one is not ``failed``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg

from wabridge.schemas.records import InboundMessage, Quoted
from wabridge.schemas.status import MessageStatus, advance
from wabridge.tables.mirror import WriteKind
from wabridge.transforms.inbound import preview

Direction = Literal["inbound", "outbound"]


@dataclass(frozen=True, slots=True)
class Tracked:
    """One tracking write: a new message (``received``/``accepted``) or a status of a known one."""

    tenant_id: str
    direction: Direction
    message_id: str
    status: MessageStatus
    customer_id: str | None = None
    conversation_id: uuid.UUID | None = None
    meta_message_id: str | None = None
    genesys_message_id: str | None = None
    error: str | None = None  # JSON text
    preview: str | None = None  # what the message said, shortened (a reply to it quotes this)

    @classmethod
    def of_inbound(
        cls, message: InboundMessage, status: MessageStatus, conversation_id: uuid.UUID, error: str | None = None
    ) -> Tracked:
        """A customer's message, tracked under its wamid."""
        return cls(
            tenant_id=message.tenant_id,
            direction="inbound",
            message_id=message.wamid,
            status=status,
            customer_id=message.customer_id,
            conversation_id=conversation_id,
            meta_message_id=message.wamid,
            error=error,
            preview=preview(message),
        )

    @property
    def row_key(self) -> tuple[str, str, str]:
        return (self.tenant_id, self.direction, self.message_id)


async def _track(conn: asyncpg.Connection, items: Sequence[Tracked]) -> list[str]:
    """Upsert many rows in one statement; returns each row's status after the write.

    One multi-row ``ON CONFLICT DO UPDATE`` may not touch a row twice, so writes for the same row
    in one batch are folded first with the same rule the SQL applies (``advance``).
    """
    folded: dict[tuple[str, str, str], Tracked] = {}
    for item in items:
        held = folded.get(item.row_key)
        if held is None or advance(held.status, item.status) is not held.status:
            folded[item.row_key] = item if held is None else _merge(held, item)
    rows = list(folded.values())
    result = await conn.fetch(
        """
        INSERT INTO message_tracking AS t (message_id, direction, tenant_id, customer_id, conversation_id, status,
                                           meta_message_id, genesys_message_id, error, preview)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::text[], $7::text[],
                             $8::text[], $9::jsonb[], $10::text[])
        ON CONFLICT (tenant_id, direction, message_id) DO UPDATE SET
            status = EXCLUDED.status,
            error = COALESCE(EXCLUDED.error, t.error),
            customer_id = COALESCE(t.customer_id, EXCLUDED.customer_id),
            conversation_id = COALESCE(t.conversation_id, EXCLUDED.conversation_id),
            genesys_message_id = COALESCE(EXCLUDED.genesys_message_id, t.genesys_message_id),
            meta_message_id = COALESCE(EXCLUDED.meta_message_id, t.meta_message_id),
            preview = COALESCE(t.preview, EXCLUDED.preview),
            updated_at = NOW()
        WHERE status_rank(EXCLUDED.status) > status_rank(t.status) AND t.status <> 'failed'
        RETURNING tenant_id, direction, message_id, status
        """,
        [r.message_id for r in rows],
        [r.direction for r in rows],
        [r.tenant_id for r in rows],
        [r.customer_id for r in rows],
        [r.conversation_id for r in rows],
        [r.status.value for r in rows],
        [r.meta_message_id for r in rows],
        [r.genesys_message_id for r in rows],
        [r.error for r in rows],
        [r.preview for r in rows],
    )
    changed = {(r["tenant_id"], r["direction"], r["message_id"]): r["status"] for r in result}
    missing = [key for key in folded if key not in changed]
    if missing:
        # Not written because the stored status is as far or further along: report that one.
        stored = await conn.fetch(
            """
            SELECT t.tenant_id, t.direction, t.message_id, t.status
            FROM unnest($1::text[], $2::text[], $3::text[]) AS k(tenant_id, direction, message_id)
            JOIN message_tracking AS t USING (tenant_id, direction, message_id)
            """,
            [k[0] for k in missing],
            [k[1] for k in missing],
            [k[2] for k in missing],
        )
        changed.update({(r["tenant_id"], r["direction"], r["message_id"]): r["status"] for r in stored})
    return [changed[item.row_key] for item in items]


def _merge(held: Tracked, newer: Tracked) -> Tracked:
    return Tracked(
        tenant_id=newer.tenant_id,
        direction=newer.direction,
        message_id=newer.message_id,
        status=newer.status,
        customer_id=held.customer_id or newer.customer_id,
        conversation_id=held.conversation_id or newer.conversation_id,
        meta_message_id=newer.meta_message_id or held.meta_message_id,
        genesys_message_id=newer.genesys_message_id or held.genesys_message_id,
        error=newer.error or held.error,
        preview=held.preview or newer.preview,
    )


TRACK: WriteKind[Tracked, str] = WriteKind("track", _track)


async def fetch_tracked(
    pool: asyncpg.Pool, tenant_id: str, message_id: str, direction: Direction | None = None
) -> list[dict[str, Any]]:
    """The tracking rows of one message id (both directions unless one is named), for the State API."""
    rows = await pool.fetch(
        """
        SELECT * FROM message_tracking
        WHERE tenant_id = $1 AND message_id = $2 AND ($3::text IS NULL OR direction = $3)
        ORDER BY direction
        """,
        tenant_id,
        message_id,
        direction,
    )
    return [_api_row(row) for row in rows]


async def fetch_quoted(pool: asyncpg.Pool, tenant_id: str, wamid: str) -> tuple[Quoted, str | None] | None:
    """The earlier message a reply or reaction names (ours first), and its Genesys id when it is
    part of an agent's message; None when the wamid was never tracked for this tenant."""
    row = await pool.fetchrow(
        """
        SELECT direction, preview, genesys_message_id FROM message_tracking
        WHERE tenant_id = $1 AND direction IN ('outbound', 'inbound') AND message_id = $2
        ORDER BY direction DESC LIMIT 1
        """,
        tenant_id,
        wamid,
    )
    if row is None:
        return None
    by_agent = row["direction"] == "outbound"
    return Quoted(by_agent=by_agent, preview=row["preview"]), row["genesys_message_id"] if by_agent else None


def _api_row(row: asyncpg.Record) -> dict[str, Any]:
    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "messageId": row["message_id"],
        "direction": row["direction"],
        "tenantId": row["tenant_id"],
        "customerId": row["customer_id"],
        "conversationId": str(row["conversation_id"]) if row["conversation_id"] else None,
        "status": row["status"],
        "metaMessageId": row["meta_message_id"],
        "genesysMessageId": row["genesys_message_id"],
        "error": row["error"],
        "preview": row["preview"],
        "createdAt": when(row["created_at"]),
        "updatedAt": when(row["updated_at"]),
    }


async def reopen_failed(pool: asyncpg.Pool, tenant_id: str, message_ids: Sequence[str]) -> int:
    """Take inbound messages out of ``failed`` (an operator's redrive after a fix); returns how many.

    ``failed`` is otherwise terminal: the pipeline never moves a status back, and the deliver stage
    skips a failed message. Only a redrive, which sends the message through again, reopens it.
    """
    result = await pool.execute(
        """
        UPDATE message_tracking SET status = 'received', error = NULL, updated_at = NOW()
        WHERE tenant_id = $1 AND direction = 'inbound' AND message_id = ANY($2::text[]) AND status = 'failed'
        """,
        tenant_id,
        list(message_ids),
    )
    return int(result.split()[-1])
