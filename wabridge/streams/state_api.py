"""The State API of the seed's State Manager, as views on the worker's Faust web server.

Requests that name a customer key are answered by the worker that owns the key in the
``conversations`` table (``route_to_key_owner``), whichever worker is asked. On a table miss the
answer falls back to Redis, then PostgreSQL, as the seed's State Manager does. Creates go to
PostgreSQL (the arbiter) and Redis; the owner's table picks the mapping up on the key's next event.

Endpoints (JSON in, JSON out; 4xx with ``{"error": ...}`` on bad input):

* ``GET  /state/mapping/{waId}?tenantId=``            mapping of a customer (404 unknown)
* ``POST /state/mapping``                             idempotent create: ``{tenantId, waId, ...}``,
                                                      answered by the key's owner
* ``GET  /state/conversation/{conversationId}?tenantId=``  mapping of one of the tenant's conversations
* ``POST /state/message``                             track a new message (its first status only)
* ``GET  /state/message/{messageId}?tenantId=&direction=``
* ``GET  /state/tables``                              this worker's tables: keys held, partitions
* ``GET  /state/tables/{name}/{key}``                 one table entry, from the key's owner
* ``GET  /trace/{messageId}?tenantId=``               where a message is (``wabridge trace``)
* ``GET  /healthz``, ``/readyz``, ``/metrics``        (the only routes without the deployment token)

Writes cannot suppress or fake a delivery (issue 16). The bridge generates every conversation id
(a caller-chosen ``conversationId`` is refused), unique among a tenant's live mappings. A tracked
message's later statuses, its Genesys id and its Meta id are the pipeline's: they move only on the
evidence the pipeline acts on (Genesys's answer and receipts, Meta's status webhooks). So
``POST /state/message`` records a message's first status (``received`` inbound, ``accepted``
outbound) and never changes a row that exists. Every query names its tenant.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import faust
import orjson
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator
from redis.exceptions import RedisError

from wabridge.agents.context import StageContext
from wabridge.connectors import s3
from wabridge.errors import PermanentError, TransientError
from wabridge.schemas.status import MessageStatus
from wabridge.streams.types import StageTable
from wabridge.streams.web import BadKey, route_to_key_owner
from wabridge.tables.conversations import (
    CREATE_MAPPING,
    ConversationMapping,
    fetch_by_conversation,
    fetch_mapping,
)
from wabridge.tables.mirror import WriteKind
from wabridge.tables.tracking import TRACK, Direction, Tracked, fetch_tracked
from wabridge.trace import trace_with

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class MappingRequest(_Body):
    # The lengths are the columns' (conversation_mappings); a wa_id is the customer's phone number.
    tenant_id: str = Field(alias="tenantId", min_length=1, max_length=255)
    wa_id: str = Field(validation_alias=AliasChoices("waId", "customerId"), min_length=1, max_length=255)
    bsuid: str | None = Field(default=None, max_length=255)
    contact_name: str | None = Field(default=None, alias="contactName", max_length=255)
    phone_number_id: str | None = Field(default=None, alias="phoneNumberId", max_length=50)
    display_phone_number: str | None = Field(default=None, alias="displayPhoneNumber", max_length=50)

    @model_validator(mode="after")
    def _wa_id_fits(self) -> MappingRequest:
        if self.wa_id != self.bsuid and len(self.wa_id) > 50:
            raise ValueError("waId: a phone number has at most 50 characters (or give it as bsuid too)")
        return self


# The first status of each direction: the only one a caller of the State API may record.
FIRST_STATUS: dict[Direction, MessageStatus] = {"inbound": MessageStatus.RECEIVED, "outbound": MessageStatus.ACCEPTED}


class MessageRequest(_Body):
    tenant_id: str = Field(alias="tenantId", min_length=1)
    message_id: str = Field(alias="messageId", min_length=1, max_length=255)
    direction: Direction = "inbound"
    status: MessageStatus | None = None
    customer_id: str | None = Field(default=None, validation_alias=AliasChoices("customerId", "waId"), max_length=255)


def _customer_key(request: Request, customer_param: str) -> str:
    tenant = request.query.get("tenantId", "")
    customer = request.match_info.get(customer_param, "")
    if not tenant:
        raise BadKey("the tenantId query parameter is required")
    if not customer or ":" in tenant:
        raise BadKey("tenantId must not contain ':' and the customer id must not be empty")
    return f"{tenant}:{customer}"


async def _mapping_body(request: Request) -> MappingRequest:
    try:
        return MappingRequest.model_validate(await _json_body(request))
    except ValidationError as exc:
        raise BadKey(_validation_message(exc)) from exc
    except ValueError as exc:
        raise BadKey(str(exc)) from exc


async def _body_key(request: Request) -> str:
    body = await _mapping_body(request)
    if ":" in body.tenant_id:
        raise BadKey("tenantId must not contain ':'")
    return f"{body.tenant_id}:{body.wa_id}"


def _path_key(request: Request) -> str:
    key = request.match_info.get("key", "")
    if ":" not in key:
        raise BadKey("a table key is tenant_id:customer_id")
    return key


def _error(view: View, status: int, message: str, **extra: Any) -> Response:
    return view.json({"error": message, **extra}, status=status)


async def _json_body(request: Request) -> Any:
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from exc


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"


@dataclass(frozen=True, slots=True)
class StateDeps:
    """What the State API's views need; set on the app by :func:`register_state_api`."""

    ctx: StageContext
    conversations: StageTable


_DEPS_ATTRIBUTE = "wabridge_state_api"


def register_state_api(app: faust.App, ctx: StageContext, conversations: StageTable) -> None:
    """Add the State API, table inspection and health views to ``app``'s web server."""
    setattr(app, _DEPS_ATTRIBUTE, StateDeps(ctx, conversations))
    for path, view in (
        ("/state/mapping/{waId}", MappingView),
        ("/state/mapping", CreateMappingView),
        ("/state/conversation/{conversationId}", ConversationView),
        ("/state/message", TrackMessageView),
        ("/state/message/{messageId}", MessageView),
        ("/state/tables", TablesView),
        ("/state/tables/{name}/{key}", TableEntryView),
        ("/trace/{messageId}", TraceView),
        ("/healthz", HealthView),
        ("/readyz", ReadyView),
        ("/metrics", MetricsView),
    ):
        app.page(path)(view)


def _conversations(view: View, _request: Request | None = None) -> StageTable:
    return _deps(view).conversations


def _deps(view: View) -> StateDeps:
    deps: StateDeps = getattr(view.app, _DEPS_ATTRIBUTE)
    return deps


class StateView(View):
    """A State API view: its dependencies, and the one way a failed dependency is answered."""

    @property
    def ctx(self) -> StageContext:
        return _deps(self).ctx

    async def guarded(self, action: Callable[[], Awaitable[Response]]) -> Response:
        """Dependencies down → 503 (retry); a value PostgreSQL cannot hold (a NUL byte in an id,
        a number out of range) → 400; never a stack trace."""
        try:
            return await action()
        except (TransientError, OSError, asyncpg.PostgresConnectionError, RedisError) as exc:
            return _error(self, 503, f"a dependency is unavailable: {exc}")
        except asyncpg.DataError as exc:
            return _error(self, 400, f"not a valid value: {exc}")
        except PermanentError as exc:
            return _error(self, 422, str(exc), reason=exc.reason)

    async def write(self, kind: WriteKind[Item, Result], item: Item) -> Result:
        return await (await self.ctx.sink()).write(kind, item)


class MappingView(StateView):
    @route_to_key_owner(_conversations, lambda request: _customer_key(request, "waId"))
    async def get(self, request: Request, waId: str) -> Response:
        tenant_id = request.query["tenantId"]
        ctx = self.ctx

        async def answer() -> Response:
            held = _conversations(self).get(f"{tenant_id}:{waId}")
            if held is not None:
                return self.json({**ConversationMapping.from_table(held).to_api(), "source": "table"})
            cached = await ctx.cache.get(tenant_id, waId)
            if cached is not None:
                return self.json({**cached.to_api(), "source": "redis"})
            stored = await fetch_mapping(await ctx.pool(), tenant_id, waId)
            if stored is None:
                return _error(self, 404, "no mapping for this customer")
            if stored.moved:
                return _error(self, 404, "this customer id moved", movedTo=stored.moved_to_customer_id)
            await ctx.cache.store(stored)
            return self.json({**stored.to_api(), "source": "postgres"})

        return await self.guarded(answer)


class CreateMappingView(StateView):
    @route_to_key_owner(_conversations, _body_key)
    async def post(self, request: Request) -> Response:
        body = await _mapping_body(request)  # valid: the router read it
        now = time.time()
        candidate = ConversationMapping(
            tenant_id=body.tenant_id,
            customer_id=body.wa_id,
            conversation_id=uuid.uuid4(),
            wa_id=None if body.wa_id == body.bsuid else body.wa_id,
            bsuid=body.bsuid,
            contact_name=body.contact_name,
            phone_number_id=body.phone_number_id,
            display_phone_number=body.display_phone_number,
            created_at=now,
            last_activity_at=now,
        )

        async def answer() -> Response:
            found = await self.write(CREATE_MAPPING, candidate)
            if found is None:
                return _error(self, 409, "another customer holds this wa_id")
            await self.ctx.cache.store(found)
            created = found.conversation_id == candidate.conversation_id
            answer = {**found.to_api(), "created": created, "worker": str(self.app.conf.canonical_url)}
            return self.json(answer, status=201 if created else 200)

        return await self.guarded(answer)


class ConversationView(StateView):
    async def get(self, request: Request, conversationId: str) -> Response:
        tenant_id = request.query.get("tenantId")
        if not tenant_id:
            return _error(self, 400, "the tenantId query parameter is required")
        try:
            conversation_id = uuid.UUID(conversationId)
        except ValueError:
            return _error(self, 400, "conversationId is not a UUID")
        ctx = self.ctx

        async def answer() -> Response:
            customer = await ctx.cache.customer_of(conversation_id)
            if customer is not None and customer[0] == tenant_id:
                cached = await ctx.cache.get(*customer)
                if cached is not None and cached.conversation_id == conversation_id:
                    return self.json({**cached.to_api(), "source": "redis"})
            stored = await fetch_by_conversation(await ctx.pool(), tenant_id, conversation_id)
            if stored is None:
                return _error(self, 404, "no such conversation")
            await ctx.cache.store(stored)
            return self.json({**stored.to_api(), "source": "postgres"})

        return await self.guarded(answer)


class TrackMessageView(StateView):
    async def post(self, request: Request) -> Response:
        try:
            body = MessageRequest.model_validate(await _json_body(request))
        except ValidationError as exc:
            return _error(self, 400, _validation_message(exc))
        except ValueError as exc:
            return _error(self, 400, str(exc))
        first = FIRST_STATUS[body.direction]
        if body.status not in (None, first):
            return _error(
                self,
                422,
                f"only a new message's first status ({first}) can be recorded here; later statuses come from "
                "Meta's status webhooks and Genesys's answers and receipts",
            )
        # Rank 0: the upsert never changes a row that exists (statuses only move forward).
        tracked = Tracked(
            tenant_id=body.tenant_id,
            direction=body.direction,
            message_id=body.message_id,
            status=first,
            customer_id=body.customer_id,
        )

        async def answer() -> Response:
            status = await self.write(TRACK, tracked)
            return self.json(
                {
                    "messageId": body.message_id,
                    "direction": body.direction,
                    "status": status,
                    "tenantId": body.tenant_id,
                }
            )

        return await self.guarded(answer)


class MessageView(StateView):
    async def get(self, request: Request, messageId: str) -> Response:
        tenant_id = request.query.get("tenantId")
        direction = request.query.get("direction")
        if not tenant_id:
            return _error(self, 400, "the tenantId query parameter is required")
        if direction not in (None, "inbound", "outbound"):
            return _error(self, 400, "direction is inbound or outbound")

        async def answer() -> Response:
            rows = await fetch_tracked(await self.ctx.pool(), tenant_id, messageId, direction)  # type: ignore[arg-type]
            if not rows:
                return _error(self, 404, "no tracked message with this id")
            return self.json(rows[0] if direction else {"messages": rows})

        return await self.guarded(answer)


def _tables(view: View) -> Mapping[str, StageTable]:
    tables: Mapping[str, StageTable] = view.app.tables  # type: ignore[assignment]  # a TableManager is a Mapping
    return tables


class TablesView(StateView):
    async def get(self, request: Request) -> Response:
        assigned = self.app.assignor.assigned_actives()
        report = {}
        for name, table in _tables(self).items():
            changelog = table.changelog_topic.get_topic_name()
            report[name] = {
                "keys_here": len(table),
                "changelog": changelog,
                "partitions_owned": sorted(tp.partition for tp in assigned if tp.topic == changelog),
            }
        return self.json({"worker": str(self.app.conf.canonical_url), "tables": report})


class TableEntryView(StateView):
    async def get(self, request: Request, name: str, key: str) -> Response:
        if name not in _tables(self):
            return _error(self, 404, f"no table {name!r}", tables=sorted(_tables(self)))
        return await self.read(request, name=name, key=key)

    # The owner of the key in the table named in the path answers.
    @route_to_key_owner(lambda view, request: _tables(view)[request.match_info["name"]], _path_key)
    async def read(self, request: Request, name: str, key: str) -> Response:
        value = _tables(self)[name].get(key)
        if value is None:
            return _error(self, 404, f"no entry {key!r} in table {name!r} on its owner")
        return self.json({"table": name, "key": key, "value": value, "worker": str(self.app.conf.canonical_url)})


class TraceView(StateView):
    """``wabridge trace`` as a view: where a message is (``?tenantId=`` narrows it)."""

    async def get(self, request: Request, messageId: str) -> Response:
        ctx = self.ctx

        async def answer() -> Response:
            storage = s3.client(ctx.settings)
            try:
                report = await trace_with(
                    ctx.settings, await ctx.pool(), storage, messageId, request.query.get("tenantId")
                )
            finally:
                await s3.close(storage)
            return self.json(report, status=200 if report["found"] else 404)

        return await self.guarded(answer)


class HealthView(View):
    async def get(self, request: Request) -> Response:
        return self.json({"status": "ok"})


class ReadyView(StateView):
    async def get(self, request: Request) -> Response:
        ctx = self.ctx

        async def postgres_ok() -> bool:
            pool = await ctx.pool()
            return bool(await pool.fetchval("SELECT 1") == 1)

        async def redis_ok() -> bool:
            return bool(await ctx.redis.ping())

        results = {}
        for name, check in (("postgres", postgres_ok), ("redis", redis_ok)):
            try:
                results[name] = await asyncio.wait_for(check(), 3.0)
            except Exception:  # noqa: BLE001 - any failure means "not ready", reported as such
                results[name] = False
        results["partitions_assigned"] = bool(self.app.assignor.assigned_actives())
        ready = all(results.values())
        return self.json({"ready": ready, "dependencies": results}, status=200 if ready else 503)


class MetricsView(View):
    async def get(self, request: Request) -> Response:
        return self.bytes(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST.split(";")[0])
