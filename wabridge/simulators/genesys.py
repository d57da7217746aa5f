"""The Genesys Cloud simulator: OAuth, the Open Messaging inbound API, attachment fetching, faults,
and the agent side (outbound webhooks). Faithful to ``reference/genesys-open-messaging.md``.

    async with GenesysSimulator(config).serve(port=0) as genesys:
        genesys.url  # "http://127.0.0.1:<port>"; login and API share the host
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import random
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from wabridge.simulators import genesys_validation as validation
from wabridge.simulators.agent import (
    AgentAttachment,
    OutboundDelivery,
    build_agent_structured,
    build_agent_text,
    build_agent_typing,
    build_inbound_receipt,
    deliver_outbound,
)
from wabridge.simulators.faults import FaultPlan, RateLimiter
from wabridge.simulators.genesys_admin import GenesysAdmin
from wabridge.simulators.genesys_config import (
    MAX_ATTACHMENT_BYTES,
    GenesysClient,
    GenesysIntegration,
    GenesysSimConfig,
)
from wabridge.simulators.hosting import BackgroundTasks, serve_app
from wabridge.simulators.inspection import (
    TAG_KEY,
    RequestLog,
    add_inspection_routes,
    json_response,
    request_log_middleware,
    utc_now_iso,
)
from wabridge.simulators.media_samples import sample_for

logger = logging.getLogger("wabridge.simulators.genesys")

INBOUND_PREFIX = "/api/v2/conversations/messages/{integration_id}/inbound/open"
_AGENT_MEDIA_TYPES = {"image": "Image", "video": "Video", "audio": "Audio", "document": "File"}


def genesys_error(status: int, code: str, message: str, *, errors: Sequence[str] = ()) -> web.Response:
    """An error in Genesys's shape (``message``, ``code``, ``status``, ``contextId``, …)."""
    body = {
        "message": message,
        "code": code,
        "status": status,
        "messageParams": {},
        "contextId": str(uuid.uuid4()),
        "details": [],
        "errors": [
            {"message": problem, "code": code, "status": status, "messageParams": {}, "details": [], "errors": []}
            for problem in errors
        ],
    }
    return json_response(body, status=status)


@dataclass(slots=True)
class IssuedToken:
    client_id: str
    organization_id: str
    expires_at: float
    revoked: bool = False


@dataclass(slots=True)
class AcceptedInbound:
    """A request Genesys accepted on an inbound endpoint, with what it answered."""

    kind: str  # message | receipt | event | structured_response
    integration_id: str
    client_id: str
    genesys_id: str
    conversation_id: str | None
    received_at: str
    body: dict[str, Any]
    # For receipts: whether ``id`` names an agent message this simulator sent.
    refers_to_known_message: bool | None = None


@dataclass(slots=True)
class AttachmentFetch:
    """Genesys downloading one attachment URL it was given."""

    integration_id: str
    genesys_message_id: str
    url: str
    declared_mime: str | None
    declared_media_type: str | None
    fetched_at: str = ""
    reachable: bool = False
    status: int | None = None
    size_bytes: int | None = None
    content_type: str | None = None
    sha256_hex: str | None = None
    error: str | None = None
    done: bool = False


@dataclass
class _State:
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    conversations: dict[tuple[str, str], str] = field(default_factory=dict)
    inbound: list[AcceptedInbound] = field(default_factory=list)
    attachments: list[AttachmentFetch] = field(default_factory=list)
    outbound: dict[str, OutboundDelivery] = field(default_factory=dict)
    agent_media: dict[str, tuple[bytes, str]] = field(default_factory=dict)


class GenesysSimulator:
    """One Genesys Cloud "region": login and API on one host, per-process state."""

    def __init__(
        self, config: GenesysSimConfig | None = None, *, seed: int | None = None, max_logged_requests: int = 100_000
    ) -> None:
        self.config = config or GenesysSimConfig()
        self.requests = RequestLog(max_entries=max_logged_requests)
        self.url = ""
        self._state = _State()
        self._rate_limiter = RateLimiter()
        self._rng = random.Random(seed)
        self._tasks = BackgroundTasks()
        self._session: aiohttp.ClientSession | None = None
        self._closing = asyncio.Event()

    # --- configuration ------------------------------------------------------------------------

    @property
    def clients(self) -> dict[str, GenesysClient]:
        return {client.client_id: client for client in self.config.clients}

    @property
    def integrations(self) -> dict[str, GenesysIntegration]:
        return {integration.integration_id: integration for integration in self.config.integrations}

    def configure(self, config: GenesysSimConfig) -> None:
        self.config = config

    def update(self, **changes: Any) -> None:
        """Change top-level settings (``rate_limit_per_minute=0``, ``outbound_retry_delay_s=…``)."""
        self.config = GenesysSimConfig.model_validate({**dict(self.config), **changes})

    def upsert_client(self, client: GenesysClient) -> None:
        others = [c for c in self.config.clients if c.client_id != client.client_id]
        self.update(clients=[*others, client])

    def upsert_integration(self, integration: GenesysIntegration) -> None:
        others = [i for i in self.config.integrations if i.integration_id != integration.integration_id]
        self.update(integrations=[*others, integration])

    def remove_client(self, client_id: str) -> None:
        self.update(clients=[c for c in self.config.clients if c.client_id != client_id])

    def remove_integration(self, integration_id: str) -> None:
        self.update(integrations=[i for i in self.config.integrations if i.integration_id != integration_id])

    def set_faults(self, scope: str, key: str, plan: FaultPlan | None) -> None:
        """Scope ``integration`` or ``client``; ``None`` clears the plan."""
        field_name = {"integration": "faults_by_integration", "client": "faults_by_client"}[scope]
        plans = dict(getattr(self.config, field_name))
        if plan is None:
            plans.pop(key, None)
        else:
            plans[key] = plan
        self.update(**{field_name: plans})

    def revoke_tokens(self, client_id: str) -> int:
        """Revoke every token issued to the client; the next API call with one gets 401."""
        revoked = 0
        for token in self._state.tokens.values():
            if token.client_id == client_id and not token.revoked:
                token.revoked = True
                revoked += 1
        return revoked

    # --- read-back for tests ------------------------------------------------------------------

    def accepted(self, integration_id: str | None = None, kind: str | None = None) -> list[AcceptedInbound]:
        return [
            item
            for item in self._state.inbound
            if (integration_id is None or item.integration_id == integration_id) and (kind is None or item.kind == kind)
        ]

    def attachment_fetches(self, integration_id: str | None = None) -> list[AttachmentFetch]:
        return [a for a in self._state.attachments if integration_id in (None, a.integration_id)]

    def outbound_deliveries(self, integration_id: str | None = None) -> list[OutboundDelivery]:
        return [d for d in self._state.outbound.values() if integration_id in (None, d.integration_id)]

    def conversation_id(self, integration_id: str, from_id: str) -> str | None:
        return self._state.conversations.get((integration_id, from_id))

    # --- serving ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[request_log_middleware(self.requests, logger)])
        app.cleanup_ctx.append(self._client_session)
        app.router.add_post("/oauth/token", self._token)
        for suffix, kind in (
            ("message", "message"),
            ("receipt", "receipt"),
            ("event", "event"),
            ("structured/response", "structured_response"),
        ):
            app.router.add_post(f"{INBOUND_PREFIX}/{suffix}", self._inbound_handler(kind))
        app.router.add_get("/api/v2/downloads/{media_id}", self._agent_media)
        GenesysAdmin(self).add_routes(app)
        app.router.add_get("/healthz", _healthz)
        add_inspection_routes(app, self.requests, tag_query="integration")
        return app

    @asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[GenesysSimulator]:
        async with serve_app(self.app(), host, port) as url:
            self.url = url
            try:
                yield self
            finally:
                self._closing.set()

    async def _client_session(self, app: web.Application) -> AsyncIterator[None]:
        self._closing = asyncio.Event()
        self._session = aiohttp.ClientSession()
        yield
        self._closing.set()
        await self._tasks.cancel_all()
        await self._session.close()

    # --- OAuth --------------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        client = self._basic_auth_client(request)
        if client is None:
            return json_response(
                {
                    "error": "invalid_client",
                    "description": "client authentication failed",
                    "error_description": "client authentication failed",
                },
                status=401,
            )
        request[TAG_KEY] = client.client_id
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return json_response(
                {
                    "error": "unsupported_grant_type",
                    "description": "grant type not supported",
                    "error_description": "grant type not supported",
                },
                status=400,
            )
        fault_response = await self._apply_faults([self.config.faults_by_client.get(client.client_id)])
        if fault_response is not None:
            return fault_response
        access_token = secrets.token_urlsafe(32)
        self._state.tokens[access_token] = IssuedToken(
            client_id=client.client_id,
            organization_id=client.organization_id,
            expires_at=time.time() + client.token_ttl_s,
        )
        return json_response({"access_token": access_token, "token_type": "bearer", "expires_in": client.token_ttl_s})

    def _basic_auth_client(self, request: web.Request) -> GenesysClient | None:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            client_id, _, client_secret = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        client = self.clients.get(client_id)
        if client is None or not secrets.compare_digest(
            client.client_secret.get_secret_value().encode(), client_secret.encode()
        ):
            return None
        return client

    def _bearer_token(self, request: web.Request) -> IssuedToken | web.Response:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value:
            return genesys_error(
                401,
                "authentication.required",
                "No authentication bearer token specified in authorization header.",
            )
        token = self._state.tokens.get(value)
        if token is None or token.revoked or token.expires_at <= time.time():
            return genesys_error(401, "bad.credentials", "Invalid login credentials.")
        return token

    # --- faults ------------------------------------------------------------------------------

    def _client_limit(self, client_id: str) -> int:
        client = self.clients.get(client_id)
        if client is not None and client.rate_limit_per_minute is not None:
            return client.rate_limit_per_minute
        return self.config.rate_limit_per_minute

    async def _apply_faults(self, plans: list[FaultPlan | None]) -> web.Response | None:
        """Latency, forced 429s, 5xx and pre-processing timeouts; None when the request goes on."""
        for plan in plans:
            if plan is None:
                continue
            if plan.latency is not None:
                await asyncio.sleep(plan.latency.sample_seconds(self._rng))
            if plan.roll(plan.throttle_rate, self._rng):
                return _too_many_requests(plan.throttle_retry_after_s)
            if plan.roll(plan.error_rate, self._rng):
                return genesys_error(plan.error_status, "internal.server.error", "The server encountered an error.")
            if plan.timeout_mode == "before" and plan.roll(plan.timeout_rate, self._rng):
                return await self._hang(plan.timeout_hold_s)
        return None

    async def _hang(self, hold_s: float) -> web.Response:
        with suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=hold_s)
        return genesys_error(504, "gateway.timeout", "The request timed out.")

    # --- inbound API --------------------------------------------------------------------------

    def _inbound_handler(self, kind: str) -> Callable[[web.Request], Any]:
        validate = {
            "message": validation.validate_message,
            "receipt": validation.validate_receipt,
            "event": validation.validate_event,
            "structured_response": validation.validate_structured_response,
        }[kind]

        async def handler(request: web.Request) -> web.Response:
            integration_id = request.match_info["integration_id"]
            request[TAG_KEY] = integration_id
            token = self._bearer_token(request)
            if isinstance(token, web.Response):
                return token
            integration = self.integrations.get(integration_id)
            if integration is None or integration.organization_id != token.organization_id:
                return genesys_error(404, "not.found", f"Integration {integration_id} not found")
            plans = [
                self.config.faults_by_integration.get(integration_id),
                self.config.faults_by_client.get(token.client_id),
            ]
            limit = self._client_limit(token.client_id)
            if limit > 0:
                retry_after = self._rate_limiter.acquire(token.client_id, limit)
                if retry_after is not None:
                    return _too_many_requests(retry_after)
            fault_response = await self._apply_faults(plans)
            if fault_response is not None:
                return fault_response
            try:
                body = orjson.loads(await request.read())
            except orjson.JSONDecodeError:
                return genesys_error(400, "bad.request", "The request body is not valid JSON.")
            problems = validate(body)
            if problems:
                return genesys_error(400, "bad.request", problems[0], errors=problems)
            response = self._accept(kind, integration_id, token.client_id, body, request.query)
            for plan in plans:
                if plan is not None and plan.timeout_mode == "after" and plan.roll(plan.timeout_rate, self._rng):
                    return await self._hang(plan.timeout_hold_s)
            return json_response(response)

        return handler

    def _accept(
        self, kind: str, integration_id: str, client_id: str, body: dict[str, Any], query: Any
    ) -> dict[str, Any]:
        genesys_id = uuid.uuid4().hex
        channel = dict(body["channel"])
        channel.update({"id": integration_id, "platform": "Open", "type": "Private"})
        conversation_id: str | None = None
        known: bool | None = None
        if kind == "receipt":
            known = body["id"] in self._state.outbound
            response: dict[str, Any] = {
                "id": body["id"],
                "channel": channel,
                "type": "Receipt",
                "status": body["status"],
                "reasons": body.get("reasons", []),
                "isFinalReceipt": body.get("isFinalReceipt", False),
                "direction": "Outbound",
            }
        else:
            key = (integration_id, body["channel"]["from"]["id"])
            conversation_id = self._state.conversations.setdefault(key, str(uuid.uuid4()))
            channel.setdefault("messageId", genesys_id)
            response = {"id": genesys_id, "channel": channel, "direction": "Inbound"}
            if kind == "message":
                response["type"] = "Text"
                if "text" in body:
                    response["text"] = body["text"]
                content = [
                    {"contentType": "Attachment", "attachment": item["attachment"]} for item in body.get("content", [])
                ]
                if content:
                    response["content"] = content
                if "metadata" in body:
                    response["metadata"] = body["metadata"]
                for item in content:
                    self._fetch_attachment_later(integration_id, genesys_id, item["attachment"])
                self._receipt_later(integration_id, genesys_id, body)
            elif kind == "event":
                response.update({"type": "Event", "events": body["events"]})
            else:
                response.update(
                    {
                        "type": "Structured",
                        "content": [{"contentType": "ButtonResponse", "buttonResponse": body["buttonResponse"]}],
                        "originatingMessageId": body.get("originatingMessageId"),
                    }
                )
            if query.get("prefetchConversationId") == "true":
                response["conversationId"] = conversation_id
        self._state.inbound.append(
            AcceptedInbound(
                kind=kind,
                integration_id=integration_id,
                client_id=client_id,
                genesys_id=genesys_id,
                conversation_id=conversation_id,
                received_at=utc_now_iso(),
                body=body,
                refers_to_known_message=known,
            )
        )
        return response

    def _receipt_later(self, integration_id: str, genesys_id: str, body: dict[str, Any]) -> None:
        integration = self.integrations.get(integration_id)
        if not self.config.inbound_receipts or integration is None or not integration.outbound_webhook_url:
            return
        if integration.outbound_webhook_secret is None or self._session is None:
            return
        sender = body["channel"]["from"]
        receipt = build_inbound_receipt(
            integration_id=integration_id,
            genesys_message_id=genesys_id,
            wamid=body["channel"].get("messageId"),
            to_id=sender["id"],
            to_id_type=sender.get("idType", "Phone"),
            nickname=integration.nickname,
        )
        delivery = OutboundDelivery(
            message_id=genesys_id, integration_id=integration_id, url=integration.outbound_webhook_url, body=receipt
        )
        self._tasks.spawn(
            deliver_outbound(
                self._session,
                delivery,
                secret=integration.outbound_webhook_secret.get_secret_value(),
                timeout_s=self.config.outbound_timeout_s,
                retries=self.config.outbound_retries,
                retry_delay_s=self.config.outbound_retry_delay_s,
            )
        )

    # --- attachment fetching -------------------------------------------------------------------

    def _fetch_attachment_later(self, integration_id: str, message_id: str, attachment: dict[str, Any]) -> None:
        fetch = AttachmentFetch(
            integration_id=integration_id,
            genesys_message_id=message_id,
            url=attachment["url"],
            declared_mime=attachment.get("mime"),
            declared_media_type=attachment.get("mediaType"),
        )
        self._state.attachments.append(fetch)
        self._tasks.spawn(self._fetch_attachment(fetch))

    async def _fetch_attachment(self, fetch: AttachmentFetch) -> None:
        assert self._session is not None
        await asyncio.sleep(self.config.attachment_fetch_delay_s)
        fetch.fetched_at = utc_now_iso()
        digest = hashlib.sha256()
        size = 0
        try:
            async with self._session.get(fetch.url, timeout=aiohttp.ClientTimeout(total=30)) as response:
                fetch.status = response.status
                fetch.content_type = response.headers.get("Content-Type")
                if response.status != 200:
                    fetch.error = f"HTTP {response.status}"
                else:
                    fetch.reachable = True
                    async for chunk in response.content.iter_chunked(64 * 1024):
                        size += len(chunk)
                        digest.update(chunk)
                        if size > MAX_ATTACHMENT_BYTES:
                            fetch.error = "InvalidMediaContentLength"
                            break
                    fetch.size_bytes = size
                    fetch.sha256_hex = digest.hexdigest()
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            fetch.error = f"unreachable: {type(error).__name__}: {error}"
        finally:
            fetch.done = True
        logger.info(
            "attachment fetch %s status=%s size=%s error=%s", fetch.url, fetch.status, fetch.size_bytes, fetch.error
        )

    # --- agent side ---------------------------------------------------------------------------

    async def send_agent_message(
        self,
        integration_id: str,
        to_id: str,
        *,
        text: str | None = None,
        attachments: list[str] | None = None,
        content: list[dict[str, Any]] | None = None,
        typing: bool = False,
        to_id_type: str = "Phone",
        wait: bool = True,
    ) -> OutboundDelivery:
        """Post an outbound webhook to the integration's URL with Genesys's retry policy.

        ``attachments`` are sample kinds (image, video, audio, document) served by this simulator.
        ``content`` makes a ``Structured`` message of those content items (``QuickReply``,
        ``ListPicker``, ``Notification``… as Genesys's ``ConversationMessageContent``).
        """
        integration = self.integrations.get(integration_id)
        if integration is None or not integration.outbound_webhook_url or integration.outbound_webhook_secret is None:
            raise KeyError(f"integration {integration_id} has no outbound webhook configured")
        if typing:
            body = build_agent_typing(
                integration_id=integration_id, to_id=to_id, to_id_type=to_id_type, nickname=integration.nickname
            )
        elif content:
            body = build_agent_structured(
                integration_id=integration_id,
                to_id=to_id,
                text=text,
                content=content,
                to_id_type=to_id_type,
                nickname=integration.nickname,
            )
        else:
            hosted = [self.host_agent_media(kind) for kind in attachments or []]
            body = build_agent_text(
                integration_id=integration_id,
                to_id=to_id,
                text=text or "",
                attachments=hosted,
                to_id_type=to_id_type,
                nickname=integration.nickname,
            )
        delivery = OutboundDelivery(
            message_id=body["id"], integration_id=integration_id, url=integration.outbound_webhook_url, body=body
        )
        self._state.outbound[delivery.message_id] = delivery
        assert self._session is not None, "serve() the simulator before sending agent messages"
        sending = deliver_outbound(
            self._session,
            delivery,
            secret=integration.outbound_webhook_secret.get_secret_value(),
            timeout_s=self.config.outbound_timeout_s,
            retries=self.config.outbound_retries,
            retry_delay_s=self.config.outbound_retry_delay_s,
        )
        if wait:
            await sending
        else:
            self._tasks.spawn(sending)
        return delivery

    def host_agent_media(self, kind: str) -> AgentAttachment:
        """Serve a sample file of ``kind`` as Genesys serves an agent's attachment."""
        sample = sample_for(kind)
        media_id = uuid.uuid4().hex
        self._state.agent_media[media_id] = (sample.data, sample.mime_type)
        return AgentAttachment(
            id=media_id,
            media_type=_AGENT_MEDIA_TYPES.get(kind, "File"),
            url=f"{self.url}/api/v2/downloads/{media_id}",
            mime=sample.mime_type,
            filename=f"{media_id}.{sample.extension}",
            size_bytes=len(sample.data),
        )

    async def _agent_media(self, request: web.Request) -> web.Response:
        stored = self._state.agent_media.get(request.match_info["media_id"])
        if stored is None:
            return genesys_error(404, "not.found", "The requested download was not found.")
        data, mime = stored
        return web.Response(body=data, content_type=mime)


def _too_many_requests(retry_after_s: int) -> web.Response:
    body = {
        "message": f"Rate limit exceeded the maximum. Retry the request in [{retry_after_s}] seconds",
        "code": "too.many.requests.retry.after",
        "status": 429,
    }
    return json_response(body, status=429, headers={"Retry-After": str(retry_after_s)})


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
