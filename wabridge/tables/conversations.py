"""Conversation mappings: the model, its PostgreSQL store and its Redis cache.

The Faust table ``conversations`` (keyed ``tenant_id:customer_id``, see ``agents.resolve_conversation``)
is the hot copy; PostgreSQL is the arbiter that decides which conversation id a customer has (a
unique constraint, ``INSERT ... ON CONFLICT DO NOTHING``), so that an empty broker or two workers
racing during a rebalance can never give one customer two conversation ids. Redis holds the seed's
``mapping:wa:…`` / ``mapping:conv:…`` keys for readers outside the workers.

Redis keys carry the tenant (``mapping:wa:{tenantId}:{waId}``), unlike the seed's
``mapping:wa:{waId}``: one person may write to two tenants' numbers, and invariant 5 says cache
entries carry the tenant.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, Self

import asyncpg
import orjson
import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict
from redis.exceptions import RedisError

from wabridge.schemas.records import SCHEMA_VERSION, InboundMessage, Record
from wabridge.settings import Settings
from wabridge.tables.mirror import WriteKind

log = logging.getLogger(__name__)

CACHE_TTL_S = 3600


class ConversationMapping(BaseModel):
    """One customer's conversation, as the ``conversations`` table, PostgreSQL and the API hold it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: str
    customer_id: str  # wa_id, else the BSUID: the key is f"{tenant_id}:{customer_id}"
    conversation_id: uuid.UUID
    wa_id: str | None = None
    bsuid: str | None = None
    contact_name: str | None = None
    phone_number_id: str | None = None
    display_phone_number: str | None = None
    genesys_conversation_id: str | None = None
    created_at: float  # unix seconds
    last_activity_at: float
    # Meta's timestamp of the customer's latest message: it opens WhatsApp's 24-hour window for the
    # agent's free-form replies. Kept by the table (not mirrored); None until the customer writes.
    last_customer_message_at: float | None = None
    last_customer_message_id: str | None = None  # its wamid: what the agent's typing marks read
    # When the customer opted out of marketing messages (Meta's 131050 on a template send, or a
    # ``user_preferences`` stop); None once they resume. Template sends to them are not made.
    marketing_opted_out_at: float | None = None
    # Set on the tombstone a number or user-id change leaves behind (see migration 0002).
    moved_to_customer_id: str | None = None
    moved_at: float | None = None

    @property
    def key(self) -> str:
        return f"{self.tenant_id}:{self.customer_id}"

    @property
    def moved(self) -> bool:
        return self.moved_to_customer_id is not None

    @classmethod
    def new_for(cls, message: InboundMessage) -> Self:
        now = time.time()
        return cls(
            tenant_id=message.tenant_id,
            customer_id=message.customer_id,
            conversation_id=uuid.uuid4(),
            wa_id=message.wa_id,
            bsuid=message.bsuid,
            contact_name=message.contact_name,
            phone_number_id=message.phone_number_id,
            display_phone_number=message.display_phone_number,
            created_at=now,
            last_activity_at=max(now, float(message.timestamp)),
            last_customer_message_at=float(message.timestamp),
            last_customer_message_id=message.wamid,
        )

    def wrote(self, message: InboundMessage) -> Self:
        """This mapping once the customer has written ``message`` (the latest by Meta's timestamp wins)."""
        timestamp = float(message.timestamp)
        if self.last_customer_message_at is not None and timestamp < self.last_customer_message_at:
            return self
        if (timestamp, message.wamid) == (self.last_customer_message_at, self.last_customer_message_id):
            return self
        return self.model_copy(
            update={"last_customer_message_at": timestamp, "last_customer_message_id": message.wamid}
        )

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Self:
        moved_at: datetime | None = row["moved_at"]
        return cls(
            tenant_id=row["tenant_id"],
            customer_id=row["customer_id"],
            conversation_id=row["conversation_id"],
            wa_id=row["wa_id"],
            bsuid=row["bsuid"],
            contact_name=row["contact_name"],
            phone_number_id=row["phone_number_id"],
            display_phone_number=row["display_phone_number"],
            genesys_conversation_id=row["genesys_conversation_id"],
            created_at=row["created_at"].timestamp(),
            last_activity_at=row["last_activity_at"].timestamp(),
            moved_to_customer_id=row["moved_to_customer_id"],
            moved_at=moved_at.timestamp() if moved_at else None,
        )

    def to_table(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_table(cls, value: dict[str, Any]) -> Self:
        return cls.model_validate(value)

    def to_api(self) -> dict[str, Any]:
        """The State API's camelCase view (the seed's ``{conversationId, tenantId, ...}``)."""
        return {
            "tenantId": self.tenant_id,
            "customerId": self.customer_id,
            "conversationId": str(self.conversation_id),
            "waId": self.wa_id,
            "bsuid": self.bsuid,
            "contactName": self.contact_name,
            "phoneNumberId": self.phone_number_id,
            "displayPhoneNumber": self.display_phone_number,
            "genesysConversationId": self.genesys_conversation_id,
            "createdAt": self.created_at,
            "lastActivityAt": self.last_activity_at,
        }


class MappingMove(Record):
    """``wa-inbound``: move a conversation to the customer's new id (number or user-id change).

    Keyed by the NEW key: the new key may live on another partition (another worker), and only
    the lane of the new key may write the new key's table entry.
    """

    v: Literal[1] = SCHEMA_VERSION
    move_from_customer_id: str
    mapping: ConversationMapping  # as it is to be stored under the new key
    moved_at: float  # the system message's timestamp (unix seconds)
    wamid: str  # of the system message, for logs

    @property
    def key(self) -> str:
        return self.mapping.key


# -- PostgreSQL -------------------------------------------------------------------------------------

_COLUMNS = (
    "tenant_id, customer_id, conversation_id, wa_id, bsuid, contact_name, phone_number_id, "
    "display_phone_number, genesys_conversation_id, created_at, last_activity_at"
)


async def _create_mappings(
    conn: asyncpg.Connection, candidates: Sequence[ConversationMapping]
) -> list[ConversationMapping | None]:
    """Get-or-create, many at once: insert what is new, then read back whatever holds each key.

    ``ON CONFLICT DO NOTHING`` without a target covers both unique constraints. The read-back sees
    this transaction's inserts and the rows that won earlier, so each caller gets the one
    conversation id PostgreSQL holds (the candidate's only if it was inserted).
    """
    columns = _mapping_columns(candidates)
    await conn.execute(
        # Only the constant column list is interpolated; every value is a parameter.
        f"""
        INSERT INTO conversation_mappings ({_COLUMNS})
        SELECT v.tenant_id, v.customer_id, v.conversation_id, v.wa_id, v.bsuid, v.contact_name,
               v.phone_number_id, v.display_phone_number, v.genesys_conversation_id,
               to_timestamp(v.created_at), to_timestamp(v.last_activity_at)
        FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[],
                    $8::text[], $9::text[], $10::float8[], $11::float8[])
             AS v(tenant_id, customer_id, conversation_id, wa_id, bsuid, contact_name, phone_number_id,
                  display_phone_number, genesys_conversation_id, created_at, last_activity_at)
        ON CONFLICT DO NOTHING
        """,  # noqa: S608 - only the constant column list is interpolated
        *columns,
    )
    # The key's own row first; else the row holding its wa_id (a customer first known by BSUID).
    rows = await conn.fetch(
        """
        SELECT DISTINCT ON (v.i) v.i AS input_index, m.*
        FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS v(tenant_id, customer_id, wa_id, i)
        JOIN conversation_mappings AS m
          ON m.tenant_id = v.tenant_id
         AND (m.customer_id = v.customer_id OR (v.wa_id IS NOT NULL AND m.wa_id = v.wa_id))
        ORDER BY v.i, (m.customer_id = v.customer_id) DESC
        """,
        columns[0],
        columns[1],
        columns[3],
    )
    found: list[ConversationMapping | None] = [None] * len(candidates)
    for row in rows:
        found[row["input_index"] - 1] = ConversationMapping.from_row(row)
    return found


def _mapping_columns(mappings: Sequence[ConversationMapping]) -> list[list[Any]]:
    return [
        [m.tenant_id for m in mappings],
        [m.customer_id for m in mappings],
        [m.conversation_id for m in mappings],
        [m.wa_id for m in mappings],
        [m.bsuid for m in mappings],
        [m.contact_name for m in mappings],
        [m.phone_number_id for m in mappings],
        [m.display_phone_number for m in mappings],
        [m.genesys_conversation_id for m in mappings],
        [m.created_at for m in mappings],
        [m.last_activity_at for m in mappings],
    ]


async def _move_mappings(conn: asyncpg.Connection, moves: Sequence[MappingMove]) -> list[ConversationMapping]:
    """Tombstone the old row and put the conversation under the new key, in the sink's transaction.

    Replaying a move writes the same values again: idempotent.
    """
    results = []
    for move in moves:
        new = move.mapping
        await conn.execute(
            """
            UPDATE conversation_mappings
            SET moved_to_customer_id = $3, moved_at = to_timestamp($5)
            WHERE tenant_id = $1 AND customer_id = $2 AND conversation_id = $4 AND moved_to_customer_id IS NULL
            """,
            new.tenant_id,
            move.move_from_customer_id,
            new.customer_id,
            new.conversation_id,
            move.moved_at,
        )
        row = await conn.fetchrow(
            f"""
            INSERT INTO conversation_mappings ({_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, to_timestamp($10), to_timestamp($11))
            ON CONFLICT (tenant_id, customer_id) DO UPDATE SET
                conversation_id = EXCLUDED.conversation_id, wa_id = EXCLUDED.wa_id, bsuid = EXCLUDED.bsuid,
                contact_name = COALESCE(EXCLUDED.contact_name, conversation_mappings.contact_name),
                genesys_conversation_id = EXCLUDED.genesys_conversation_id,
                last_activity_at = GREATEST(conversation_mappings.last_activity_at, EXCLUDED.last_activity_at),
                moved_to_customer_id = NULL, moved_at = NULL
            RETURNING *
            """,  # noqa: S608 - only the constant column list is interpolated
            *(column[0] for column in _mapping_columns([new])),
        )
        results.append(ConversationMapping.from_row(row))
    return results


async def _revive_mappings(
    conn: asyncpg.Connection, fresh: Sequence[ConversationMapping]
) -> list[ConversationMapping | None]:
    """A tombstoned id wrote again after its move: it gets a new conversation (a new owner, maybe).

    Only if the tombstone is older than the message (``moved_at <= last_activity_at``); else None.
    """
    results: list[ConversationMapping | None] = []
    for mapping in fresh:
        row = await conn.fetchrow(
            """
            UPDATE conversation_mappings
            SET conversation_id = $3, wa_id = $4, bsuid = $5, contact_name = $6, phone_number_id = $7,
                display_phone_number = $8, genesys_conversation_id = NULL, created_at = to_timestamp($9),
                last_activity_at = to_timestamp($10), moved_to_customer_id = NULL, moved_at = NULL
            WHERE tenant_id = $1 AND customer_id = $2 AND moved_at <= to_timestamp($10)
            RETURNING *
            """,
            mapping.tenant_id,
            mapping.customer_id,
            mapping.conversation_id,
            mapping.wa_id,
            mapping.bsuid,
            mapping.contact_name,
            mapping.phone_number_id,
            mapping.display_phone_number,
            mapping.created_at,
            mapping.last_activity_at,
        )
        results.append(ConversationMapping.from_row(row) if row else None)
    return results


CREATE_MAPPING: WriteKind[ConversationMapping, ConversationMapping | None] = WriteKind(
    "create_mapping", _create_mappings
)
MOVE_MAPPING: WriteKind[MappingMove, ConversationMapping] = WriteKind("move_mapping", _move_mappings)
REVIVE_MAPPING: WriteKind[ConversationMapping, ConversationMapping | None] = WriteKind(
    "revive_mapping", _revive_mappings
)


async def fetch_mapping(pool: asyncpg.Pool, tenant_id: str, customer_id: str) -> ConversationMapping | None:
    row = await pool.fetchrow(
        "SELECT * FROM conversation_mappings WHERE tenant_id = $1 AND customer_id = $2", tenant_id, customer_id
    )
    return ConversationMapping.from_row(row) if row else None


async def fetch_by_conversation(
    pool: asyncpg.Pool, tenant_id: str, conversation_id: uuid.UUID
) -> ConversationMapping | None:
    """The tenant's live mapping of a conversation (not the tombstones it left behind)."""
    row = await pool.fetchrow(
        "SELECT * FROM conversation_mappings"
        " WHERE tenant_id = $1 AND conversation_id = $2 AND moved_to_customer_id IS NULL",
        tenant_id,
        conversation_id,
    )
    return ConversationMapping.from_row(row) if row else None


# -- Redis ------------------------------------------------------------------------------------------


class MappingCache:
    """The seed's ``mapping:wa:…`` and ``mapping:conv:…`` keys (TTL 3600 s).

    Redis is a cache: a failure is logged and the caller carries on (reads see a miss), so Redis
    being down slows readers, it does not stop the pipeline.
    """

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings

    def wa_key(self, tenant_id: str, customer_id: str) -> str:
        return self._settings.redis_key(f"mapping:wa:{tenant_id}:{customer_id}")

    def conv_key(self, conversation_id: uuid.UUID | str) -> str:
        return self._settings.redis_key(f"mapping:conv:{conversation_id}")

    async def store(self, mapping: ConversationMapping) -> None:
        """Both directions, one round trip."""
        conv_value = {"waId": mapping.wa_id, "customerId": mapping.customer_id, "tenantId": mapping.tenant_id}
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(self.wa_key(mapping.tenant_id, mapping.customer_id), orjson.dumps(mapping.to_table()))
                pipe.expire(self.wa_key(mapping.tenant_id, mapping.customer_id), CACHE_TTL_S)
                pipe.set(self.conv_key(mapping.conversation_id), orjson.dumps(conv_value), ex=CACHE_TTL_S)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("redis: could not cache mapping of %s: %s", mapping.tenant_id, exc)

    async def forget(self, tenant_id: str, customer_id: str) -> None:
        try:
            await self._redis.delete(self.wa_key(tenant_id, customer_id))
        except (RedisError, OSError) as exc:
            log.warning("redis: could not drop a moved mapping of %s: %s", tenant_id, exc)

    async def get(self, tenant_id: str, customer_id: str) -> ConversationMapping | None:
        try:
            raw = await self._redis.get(self.wa_key(tenant_id, customer_id))
        except (RedisError, OSError) as exc:
            log.warning("redis: mapping lookup failed, treating as a miss: %s", exc)
            return None
        return ConversationMapping.from_table(orjson.loads(raw)) if raw else None

    async def customer_of(self, conversation_id: uuid.UUID) -> tuple[str, str] | None:
        """``(tenant_id, customer_id)`` of a conversation, from ``mapping:conv:…``."""
        try:
            raw = await self._redis.get(self.conv_key(conversation_id))
        except (RedisError, OSError) as exc:
            log.warning("redis: conversation lookup failed, treating as a miss: %s", exc)
            return None
        if not raw:
            return None
        value = orjson.loads(raw)
        return str(value["tenantId"]), str(value["customerId"])
