"""Step resolve_conversation of the prepare stage: each customer's message with its conversation.

The ``conversations`` table (keyed ``tenant_id:customer_id``, co-partitioned with the stage topics)
holds each customer's ``ConversationMapping``. On a miss PostgreSQL decides (get-or-create under its
unique constraint, through the group-commit sink), so an empty broker — the dev broker keeps
nothing across restarts — or a rebalance race never gives a customer a second conversation id; the
table then fills lazily from PostgreSQL. On a hit only the table changes; ``last_activity_at``
reaches PostgreSQL coalesced, once a second.

Also here, because they need the mapping or write tracking rows:

* ``system`` messages (number or user-id change) update the identifiers the conversation knows
  the customer by; the customer keeps their key (the bridge keys the new identifiers as the old
  ones, ``connectors.identities``), so their order and conversation go on unbroken. The update is
  a ``MappingMove`` to the same key: one transaction rewrites the PostgreSQL row. System messages
  are not delivered to Genesys.
* inbound messages get a ``received`` tracking row and move the conversation's
  ``last_customer_message_at`` (Meta's timestamp: the 24-hour window of the agent's replies);
  statuses move their outbound message's row forward only (``tables.outbound.SEND_STATUS``). A
  ``delivered`` or ``failed`` status of a part of an agent's message goes on to ``agent-messages``
  as a ``ReceiptDue``, which the outbound stage POSTs to Genesys; one that comes before the send's
  own write (its wamid not recorded yet) waits for it in the customer's lane.
* value-level business errors go to ``error-events`` with Meta's code.
* a template update (Meta's status or category webhook) makes the tenant's template list be read
  again (``connectors.meta_templates``): the next agent template is checked against Meta's word.
"""

from __future__ import annotations

import logging
import time
from typing import Any, TypeVar

import faust
import orjson
from prometheus_client import Counter

from wabridge.agents.context import StageContext, send_and_wait
from wabridge.connectors.meta_templates import forget_templates
from wabridge.errors import PermanentError, TransientError
from wabridge.masking import mask_customer_id
from wabridge.schemas.records import (
    BusinessError,
    ConversationRef,
    InboundMessage,
    PreferenceUpdate,
    Quoted,
    ReceiptDue,
    ResolvedMessage,
    StatusUpdate,
    TemplateUpdate,
)
from wabridge.schemas.status import MessageStatus
from wabridge.streams.types import StageEvent, StageTable
from wabridge.tables.conversations import (
    CREATE_MAPPING,
    MOVE_MAPPING,
    REVIVE_MAPPING,
    ConversationMapping,
    MappingMove,
    fetch_mapping,
)
from wabridge.tables.mirror import WriteKind
from wabridge.tables.outbound import SEND_STATUS, SendStatus
from wabridge.tables.tracking import TRACK, Tracked, fetch_quoted

log = logging.getLogger(__name__)

# Meta's "this customer opted out of marketing messages" (reference: Throughput and errors).
OPTED_OUT_CODE = 131050
MARKETING_CATEGORY = "marketing_messages"
# How long a status of an unknown wamid waits for a send of the customer's that is still unrecorded.
PENDING_SEND_WAIT_S = 60.0

STEP = "resolve_conversation"
CONVERSATIONS_TABLE = "conversations"

MAPPINGS_CREATED = Counter("wabridge_mappings_created_total", "Conversation mappings created", ["tenant"])
MAPPINGS_MOVED = Counter(
    "wabridge_mappings_moved_total", "Conversations given a customer's new number or user id", ["tenant"]
)
TABLE_MISSES = Counter("wabridge_conversation_table_misses_total", "Table misses answered by PostgreSQL")

ResolvableRecord = InboundMessage | StatusUpdate | BusinessError | MappingMove | PreferenceUpdate | TemplateUpdate
Item = TypeVar("Item")
Result = TypeVar("Result")


class ConversationResolver:
    """Step resolve_conversation of the prepare stage; one per worker."""

    def __init__(self, ctx: StageContext, table: StageTable, agent_messages: faust.TopicT) -> None:
        self.ctx = ctx
        self.table = table
        self.agent_messages = agent_messages

    async def write(self, kind: WriteKind[Item, Result], item: Item) -> Result:
        return await self.ctx.write(STEP, kind, item)

    async def resolve(self, record: ResolvableRecord, event: StageEvent) -> ResolvedMessage | None:
        """The customer's message with its conversation, for the next step; ``None`` when ``record``
        has no message to deliver (a status, a move, …: its effect is done) or went to ``error-events``."""
        try:
            if isinstance(record, MappingMove):
                await self.apply_move(record)
            elif isinstance(record, StatusUpdate):
                await self.track_status(record)
            elif isinstance(record, PreferenceUpdate):
                if record.category == MARKETING_CATEGORY and record.preference in ("stop", "resume"):
                    self.opted_out(record.key, float(record.timestamp), opted_out=record.preference == "stop")
            elif isinstance(record, TemplateUpdate):
                await forget_templates(self.ctx.redis, self.ctx.settings, record.tenant_id, record.waba_id)
                log.info(
                    "tenant %s: template %s (%s) of WABA %s changed at Meta (%s); its list is read again",
                    record.tenant_id, record.template_name, record.language, record.waba_id,
                    record.status or record.category,
                )  # fmt: skip
            elif isinstance(record, BusinessError):
                error = PermanentError(
                    f"Meta reported error {record.error.code} for number {record.phone_number_id}: "
                    f"{record.error.title}",
                    reason=f"meta_business_error_{record.error.code}",
                )
                await self.ctx.route_error(STEP, event, error, tenant_id=record.tenant_id)
            elif record.type == "system":
                await self.change_identity(record)
            else:
                return await self.resolve_message(record)
        except PermanentError as exc:
            message_id = getattr(record, "wamid", None)
            await self.ctx.route_error(STEP, event, exc, tenant_id=_tenant_of(record), message_id=message_id)
        return None

    # -- messages ----------------------------------------------------------------------------------

    async def resolve_message(self, message: InboundMessage) -> ResolvedMessage:
        mapping = await self.mapping_for(message)
        await self.write(TRACK, Tracked.of_inbound(message, MessageStatus.RECEIVED, mapping.conversation_id))
        conversation = ConversationRef(
            conversation_id=mapping.conversation_id, genesys_conversation_id=mapping.genesys_conversation_id
        )
        return ResolvedMessage(message=message, conversation=await self.with_context(message, conversation))

    async def with_context(self, message: InboundMessage, conversation: ConversationRef) -> ConversationRef:
        """The conversation with what ``message`` replies or reacts to: the earlier message's preview
        for the agent, and for a part of an agent's message its Genesys id (a button or list choice
        then answers that message as a structured response)."""
        target = message.context_message_id
        if not target:
            return conversation

        async def lookup() -> tuple[Quoted, str | None] | None:
            return await fetch_quoted(await self.ctx.pool(), message.tenant_id, target)

        found = await self.ctx.retrying(STEP, lookup)
        if found is None:
            return conversation
        quoted, genesys_message_id = found
        links = {target: genesys_message_id} if genesys_message_id else {}
        return conversation.model_copy(update={"quoted": quoted, "originating_message_ids": links})

    async def mapping_for(self, message: InboundMessage) -> ConversationMapping:
        key = message.key
        held = self.table.get(key)
        if held is not None:
            mapping = ConversationMapping.from_table(held)
            at = max(mapping.last_activity_at, float(message.timestamp))
            updated = mapping.model_copy(
                update={
                    "last_activity_at": at,
                    "contact_name": message.contact_name or mapping.contact_name,
                    # A phone number or BSUID the customer shows from now on (a username adopted,
                    # a BSUID added to a phone number): replies go where Meta now knows them.
                    "wa_id": message.wa_id or mapping.wa_id,
                    "bsuid": message.bsuid or mapping.bsuid,
                }
            ).wrote(message)
            if updated != mapping:
                self.table[key] = updated.to_table()
            self.ctx.activity.touch(message.tenant_id, message.customer_id, at)
            return updated
        TABLE_MISSES.inc()
        candidate = ConversationMapping.new_for(message)
        found = await self.write(CREATE_MAPPING, candidate)
        if found is None:
            raise PermanentError("no mapping could be created or found", reason="mapping_conflict")
        if found.moved:
            assert found.moved_at is not None
            if message.timestamp < found.moved_at:
                # A message from before the number change, replayed: it belongs to the conversation
                # that moved. The tombstone is not put in the table: later messages decide again.
                return found
            revived = await self.write(REVIVE_MAPPING, candidate)
            found = revived or found
        if found.conversation_id == candidate.conversation_id:
            MAPPINGS_CREATED.labels(message.tenant_id).inc()
            log.info(
                "new conversation %s for tenant %s customer %s (message %s)",
                found.conversation_id,
                message.tenant_id,
                mask_customer_id(message.customer_id),
                message.wamid,
            )
        found = found.wrote(message)
        self.table[key] = found.to_table()
        await self.ctx.cache.store(found)
        return found

    # -- identity changes --------------------------------------------------------------------------

    async def change_identity(self, message: InboundMessage) -> None:
        """A ``system`` message: the customer's new phone number or BSUID (not delivered)."""
        payload: dict[str, Any] = message.payload if isinstance(message.payload, dict) else {}
        change = payload.get("type")
        new_wa_id = payload.get("wa_id") or payload.get("customer")
        new_user_id = payload.get("user_id")
        current = await self.current_mapping(message)
        if current is None:
            log.info(
                "system %s for unknown customer %s of tenant %s: nothing to move",
                change,
                mask_customer_id(message.customer_id),
                message.tenant_id,
            )
            return
        # The customer keeps their key (the bridge keys the new identifiers as the old ones:
        # connectors.identities); only the identifiers the conversation knows them by change.
        if change == "user_changed_number" and new_wa_id:
            update: dict[str, Any] = {"wa_id": str(new_wa_id)}
        elif change == "user_changed_user_id" and new_user_id:
            update = {"bsuid": str(new_user_id)}
        else:
            log.warning(
                "system message %s of tenant %s (%s) names no new id: mapping left as it is",
                message.wamid,
                message.tenant_id,
                change,
            )
            return
        at = float(message.timestamp)
        updated = current.model_copy(update={**update, "last_activity_at": max(current.last_activity_at, at)})
        if updated == current:
            return  # replayed: the conversation knows the new identifier already
        # A move to the same key rewrites the row in place, in the sink's transaction.
        move = MappingMove(move_from_customer_id=current.customer_id, mapping=updated, moved_at=at, wamid=message.wamid)
        stored = await self.write(MOVE_MAPPING, move)
        self.table[message.key] = stored.to_table()
        await self.ctx.cache.store(stored)
        MAPPINGS_MOVED.labels(stored.tenant_id).inc()
        log.info(
            "tenant %s: customer %s of conversation %s is now known by a new %s (%s)",
            message.tenant_id,
            mask_customer_id(message.customer_id),
            current.conversation_id,
            "phone number" if "wa_id" in update else "business-scoped user id",
            change,
        )

    async def current_mapping(self, message: InboundMessage) -> ConversationMapping | None:
        """The live mapping of the message's key, from the table or PostgreSQL; None if none/moved."""
        held = self.table.get(message.key)
        if held is not None:
            return ConversationMapping.from_table(held)

        async def lookup() -> ConversationMapping | None:
            return await fetch_mapping(await self.ctx.pool(), message.tenant_id, message.customer_id)

        found = await self.ctx.retrying(STEP, lookup)
        # A tombstone means the move happened already (this is a replay of the system message).
        return None if found is None or found.moved else found

    async def apply_move(self, move: MappingMove) -> None:
        """Runs in the lane of the new key: store the moved conversation there."""
        held = self.table.get(move.key)
        if held is not None and ConversationMapping.from_table(held).conversation_id == move.mapping.conversation_id:
            return  # replayed: the move is in the table (and so in PostgreSQL) already
        stored = await self.write(MOVE_MAPPING, move)
        self.table[move.key] = stored.to_table()
        await self.ctx.cache.store(stored)
        MAPPINGS_MOVED.labels(stored.tenant_id).inc()

    # -- statuses ----------------------------------------------------------------------------------

    async def track_status(self, status: StatusUpdate) -> None:
        """Track a status of one of our sends; a ``delivered`` or ``failed`` one of an agent's
        message goes on to the outbound stage (``agent-messages``) as the receipt Genesys is due."""
        error = orjson.dumps([e.model_dump(mode="json") for e in status.errors]).decode() if status.errors else None
        update = SendStatus(status.tenant_id, status.wamid, status.customer_id, status.status.value, error)
        result = await self.write(SEND_STATUS, update)
        if status.status not in (MessageStatus.DELIVERED, MessageStatus.FAILED):
            return
        if any(error.code == OPTED_OUT_CODE for error in status.errors):
            self.opted_out(status.key, float(status.timestamp))
        if result.genesys_message_id is None:
            waited = time.time() - status.received_at
            if result.pending_send and waited < PENDING_SEND_WAIT_S:
                # Meta's status outran the send's own write (its wamid is not recorded yet): wait for it,
                # a little. The write follows Meta's answer within milliseconds; a send still pending
                # after this long is stuck elsewhere, and must not hold this customer's messages.
                raise TransientError(f"status {status.status.value} of {status.wamid} before its send is recorded")
            level = logging.WARNING if result.pending_send else logging.DEBUG
            log.log(level, "status %s of %s (tenant %s) names no agent message: tracked only",
                    status.status.value, status.wamid, status.tenant_id)  # fmt: skip
            return
        due = ReceiptDue(receipt_for=result.genesys_message_id, status=status)
        await self.ctx.retrying(STEP, lambda: send_and_wait(self.agent_messages, due.key, due.to_bytes()))

    def opted_out(self, key: str, at: float, *, opted_out: bool = True) -> None:
        """Note that the customer opted out of marketing messages (or back in): the outbound stage
        then refuses template sends to them with a receipt that says why."""
        held = self.table.get(key)
        if held is None:
            return
        mapping = ConversationMapping.from_table(held)
        since = (mapping.marketing_opted_out_at or at) if opted_out else None
        if since != mapping.marketing_opted_out_at:
            self.table[key] = mapping.model_copy(update={"marketing_opted_out_at": since}).to_table()
            log.info("tenant %s: customer %s opted %s of marketing messages", mapping.tenant_id,
                     mask_customer_id(mapping.customer_id), "out" if opted_out else "back in")  # fmt: skip


def _tenant_of(record: ResolvableRecord) -> str:
    return record.mapping.tenant_id if isinstance(record, MappingMove) else record.tenant_id
