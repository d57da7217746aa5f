"""What the outbound stage records in PostgreSQL around each send to WhatsApp.

``BEGIN_SEND`` runs before the POST: it marks the attempt and answers whether Meta already took
this part (a wamid is stored) and how many attempts came before. ``FINISH_SEND`` stores the wamid
and opens the part's ``message_tracking`` row (outbound, keyed by the wamid like the status
webhooks that follow, linked to the Genesys message id), status ``accepted`` unless a status
webhook got there first. Both are idempotent (migration 0004).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from wabridge.tables.mirror import WriteKind


@dataclass(frozen=True, slots=True)
class SendAttempt:
    tenant_id: str
    genesys_message_id: str
    part: int
    customer_id: str
    parts: int = 1  # how many WhatsApp parts the agent's message has


@dataclass(frozen=True, slots=True)
class PriorSend:
    """The part's sends before this attempt."""

    wamid: str | None  # set: Meta has it, do not send again
    attempts: int  # attempts before this one (a crash mid-POST leaves one without a wamid)


async def _begin(conn: asyncpg.Connection, items: Sequence[SendAttempt]) -> list[PriorSend]:
    rows = await conn.fetch(
        """
        WITH input AS (
            SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::int[])
                AS i(tenant_id, genesys_message_id, part, customer_id, parts)
        ), prior AS (
            SELECT s.tenant_id, s.genesys_message_id, s.part, s.wamid, s.attempts
            FROM outbound_sends s JOIN input USING (tenant_id, genesys_message_id, part)
        ), marked AS (
            INSERT INTO outbound_sends AS s (tenant_id, genesys_message_id, part, customer_id, parts)
            SELECT tenant_id, genesys_message_id, part, customer_id, parts FROM input
            ON CONFLICT (tenant_id, genesys_message_id, part) DO UPDATE SET attempts = s.attempts + 1
                WHERE s.wamid IS NULL
            RETURNING 1
        )
        SELECT input.tenant_id, input.genesys_message_id, input.part, prior.wamid, prior.attempts
        FROM input LEFT JOIN prior USING (tenant_id, genesys_message_id, part)
        """,
        [i.tenant_id for i in items],
        [i.genesys_message_id for i in items],
        [i.part for i in items],
        [i.customer_id for i in items],
        [i.parts for i in items],
    )
    found = {(r["tenant_id"], r["genesys_message_id"], r["part"]): r for r in rows}
    return [
        PriorSend(wamid=row["wamid"], attempts=row["attempts"] or 0)
        for row in (found[(i.tenant_id, i.genesys_message_id, i.part)] for i in items)
    ]


@dataclass(frozen=True, slots=True)
class SendDone:
    tenant_id: str
    genesys_message_id: str
    part: int
    customer_id: str
    wamid: str
    preview: str | None = None  # what the part said, shortened (a customer's reply to it quotes this)


async def _finish(conn: asyncpg.Connection, items: Sequence[SendDone]) -> list[None]:
    await conn.execute(
        """
        WITH input AS (
            SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[])
                AS i(tenant_id, genesys_message_id, part, customer_id, wamid, preview)
        ), sent AS (
            UPDATE outbound_sends AS s SET wamid = COALESCE(s.wamid, i.wamid), sent_at = COALESCE(s.sent_at, NOW())
            FROM input i
            WHERE s.tenant_id = i.tenant_id AND s.genesys_message_id = i.genesys_message_id AND s.part = i.part
        )
        INSERT INTO message_tracking AS t (message_id, direction, tenant_id, customer_id, status,
                                           meta_message_id, genesys_message_id, preview)
        SELECT wamid, 'outbound', tenant_id, customer_id, 'accepted', wamid, genesys_message_id, preview FROM input
        ON CONFLICT (tenant_id, direction, message_id) DO UPDATE SET
            genesys_message_id = COALESCE(t.genesys_message_id, EXCLUDED.genesys_message_id),
            preview = COALESCE(t.preview, EXCLUDED.preview),
            customer_id = COALESCE(t.customer_id, EXCLUDED.customer_id),
            updated_at = NOW()
        """,
        [i.tenant_id for i in items],
        [i.genesys_message_id for i in items],
        [i.part for i in items],
        [i.customer_id for i in items],
        [i.wamid for i in items],
        [i.preview for i in items],
    )
    return [None] * len(items)


@dataclass(frozen=True, slots=True)
class SendStatus:
    """A status webhook of one of our sends (by its wamid): sent, delivered, read, failed."""

    tenant_id: str
    wamid: str
    customer_id: str
    status: str
    error: str | None = None  # JSON text: Meta's errors


@dataclass(frozen=True, slots=True)
class SendStatusResult:
    genesys_message_id: str | None  # the agent's message this part belongs to, when linked already
    pending_send: bool  # the customer has a part sent whose wamid is not recorded yet


async def _status(conn: asyncpg.Connection, items: Sequence[SendStatus]) -> list[SendStatusResult]:
    """Forward-only, like every tracking write: the row of the wamid (made here if the status came
    before the send's own write), and what a receipt to Genesys needs to know."""
    rows = await conn.fetch(
        """
        WITH input AS (
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[])
                WITH ORDINALITY AS i(tenant_id, wamid, customer_id, status, error, n)
        ), tracked AS (
            INSERT INTO message_tracking AS t (message_id, direction, tenant_id, customer_id, status,
                                               meta_message_id, error)
            SELECT wamid, 'outbound', tenant_id, customer_id, status, wamid, error FROM input
            ON CONFLICT (tenant_id, direction, message_id) DO UPDATE SET
                status = EXCLUDED.status, error = COALESCE(EXCLUDED.error, t.error), updated_at = NOW()
                WHERE status_rank(EXCLUDED.status) > status_rank(t.status) AND t.status <> 'failed'
            RETURNING 1
        )
        SELECT i.n,
               -- FINISH_SEND records the wamid here and links the tracking row in one statement.
               (SELECT s.genesys_message_id FROM outbound_sends s
                 WHERE s.tenant_id = i.tenant_id AND s.wamid = i.wamid LIMIT 1) AS genesys_message_id,
               EXISTS (SELECT 1 FROM outbound_sends s
                        WHERE s.tenant_id = i.tenant_id AND s.customer_id = i.customer_id AND s.wamid IS NULL
                          AND s.created_at > NOW() - INTERVAL '10 minutes') AS pending_send
        FROM input i ORDER BY i.n
        """,
        [i.tenant_id for i in items],
        [i.wamid for i in items],
        [i.customer_id for i in items],
        [i.status for i in items],
        [i.error for i in items],
    )
    return [SendStatusResult(r["genesys_message_id"], r["pending_send"]) for r in rows]


@dataclass(frozen=True, slots=True)
class MessageOutcome:
    """Where an agent's message stands across its WhatsApp parts, for its one final receipt."""

    parts: int  # how many parts the message has (0: none begun yet)
    delivered: int  # parts delivered (or read, or played)
    failed: int  # parts failed
    told: bool  # the final receipt was posted already
    sent: int = 0  # parts Meta has taken (a wamid is recorded)

    @property
    def all_sent(self) -> bool:
        """Meta has every part: a redelivery or replay of the message has nothing left to do."""
        return self.parts > 0 and self.sent >= self.parts

    @property
    def settled(self) -> bool:
        """Every part is delivered, or one failed: Genesys can be told the message's last word."""
        return self.failed > 0 or (self.parts > 0 and self.delivered >= self.parts)


async def fetch_outcome(pool: asyncpg.Pool, tenant_id: str, genesys_message_id: str) -> MessageOutcome:
    row = await pool.fetchrow(
        """
        SELECT COALESCE(MAX(s.parts), 0) AS parts,
               COUNT(*) FILTER (WHERE t.status IN ('delivered', 'read', 'played')) AS delivered,
               COUNT(*) FILTER (WHERE t.status = 'failed') AS failed,
               COALESCE(BOOL_OR(s.final_receipt_at IS NOT NULL), FALSE) AS told,
               COUNT(s.wamid) AS sent
        FROM outbound_sends s
        LEFT JOIN message_tracking t
          ON t.tenant_id = s.tenant_id AND t.direction = 'outbound' AND t.message_id = s.wamid
        WHERE s.tenant_id = $1 AND s.genesys_message_id = $2
        """,
        tenant_id,
        genesys_message_id,
    )
    assert row is not None  # an aggregate always answers one row
    return MessageOutcome(row["parts"], row["delivered"], row["failed"], row["told"], row["sent"])


async def mark_told(pool: asyncpg.Pool, tenant_id: str, genesys_message_id: str) -> None:
    """The message's final receipt is posted: later parts' statuses tell Genesys nothing more."""
    await pool.execute(
        "UPDATE outbound_sends SET final_receipt_at = COALESCE(final_receipt_at, NOW())"
        " WHERE tenant_id = $1 AND genesys_message_id = $2 AND part = 0",
        tenant_id,
        genesys_message_id,
    )


BEGIN_SEND: WriteKind[SendAttempt, PriorSend] = WriteKind("begin_send", _begin)
FINISH_SEND: WriteKind[SendDone, None] = WriteKind("finish_send", _finish)
SEND_STATUS: WriteKind[SendStatus, SendStatusResult] = WriteKind("send_status", _status)
