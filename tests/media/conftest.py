"""Fixtures for the media stage: the Meta simulator, a fault proxy in front of it, and a tenant in
this test's schema whose Graph URL points at one of them.

The simulator serves real media and answers 404 on demand (``fail_next_downloads``, expired URLs).
Faults it cannot produce (5xx, 429 with Retry-After, a slow answer, corrupted bytes, a hex sha256,
a wrong ``file_size``) come from ``FaultProxy``: a pass-through HTTP proxy that changes a scripted
number of answers and leaves everything else to the simulator.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from miniopy_async.api import Minio
from pydantic import SecretStr

from tests.integration.edge_fixtures import make_tenant, save_tenants
from wabridge.connectors import postgres, redis_client, s3
from wabridge.connectors.attachments import AttachmentFetcher
from wabridge.connectors.meta_graph import MetaGraphClient, WhatsAppTokens
from wabridge.connectors.tenant_directory import TenantDirectory
from wabridge.media import MediaFetcher
from wabridge.schemas.meta import normalize, split_webhook
from wabridge.schemas.records import ConversationRef, InboundMessage, ResolvedMessage
from wabridge.settings import Settings
from wabridge.simulators import MetaPhoneNumber, MetaSimConfig, MetaSimulator
from wabridge.simulators.customer import InboundSpec, MediaRef, build_message, build_webhook
from wabridge.simulators.hosting import serve_app
from wabridge.tenants import SecretBox, Tenant, TenantSecrets, TenantStore
from wabridge.tenants.crypto import generate_key

TENANT_ID = "acme"
PHONE_NUMBER_ID = "106540352242922"
ACCESS_TOKEN = "fake-access-token"  # make_tenant's token; the simulator's number accepts it
GRAPH = "v26.0"
DOWNLOAD_PATH = "/whatsapp_business/attachments/"
# 2025-06-08T21:39:43Z: late in the UTC day, so a local-time date would be a different day east of UTC.
SENT_AT = 1749418783
SENT_DAY = "2025-06-08"


@dataclass
class Fault:
    """What the proxy does to the next ``times`` requests whose path starts with ``path``."""

    path: str
    times: int = 1
    status: int | None = None  # answer this instead of forwarding
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    corrupt: bool = False  # flip the last byte of the simulator's body
    rewrite: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # change the simulator's JSON


@dataclass
class FaultProxy:
    upstream: str
    url: str = ""
    faults: list[Fault] = field(default_factory=list)
    session: aiohttp.ClientSession | None = None

    def add(self, path: str, times: int = 1, **behaviour: Any) -> Fault:
        fault = Fault(path, times, **behaviour)
        self.faults.append(fault)
        return fault

    def _take(self, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.times > 0 and path.startswith(fault.path):
                fault.times -= 1
                return fault
        return None

    async def handle(self, request: web.Request) -> web.Response:
        assert self.session is not None
        fault = self._take(request.path)
        if fault is not None and fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if fault is not None and fault.status is not None:
            return web.Response(status=fault.status, body=fault.body, headers=fault.headers)
        headers = {name: value for name, value in request.headers.items() if name.lower() == "authorization"}
        async with self.session.get(self.upstream + request.path_qs, headers=headers) as upstream:
            body = await upstream.read()
            status, content_type = upstream.status, upstream.content_type
        if content_type == "application/json" and status == 200:
            document = orjson.loads(body)
            if isinstance(document.get("url"), str):  # downloads come back through the proxy too
                document["url"] = document["url"].replace(self.upstream, self.url, 1)
            if fault is not None and fault.rewrite is not None:
                document = fault.rewrite(document)
            body = orjson.dumps(document)
        if fault is not None and fault.corrupt and body:
            body = body[:-1] + bytes([body[-1] ^ 0xFF])
        return web.Response(status=status, body=body, content_type=content_type)


@pytest.fixture
async def meta() -> AsyncIterator[MetaSimulator]:
    config = MetaSimConfig(
        phone_numbers=[
            MetaPhoneNumber(
                phone_number_id=PHONE_NUMBER_ID,
                access_token=SecretStr(ACCESS_TOKEN),
                app_secret=SecretStr("fake-app-secret-for-tests"),
            )
        ]
    )
    async with MetaSimulator(config, seed=11).serve() as simulator:
        yield simulator


@pytest.fixture
async def proxy(meta: MetaSimulator) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy(upstream=meta.url)
    app = web.Application()
    app.router.add_get("/{tail:.*}", proxy.handle)
    async with aiohttp.ClientSession() as session, serve_app(app, "127.0.0.1", 0) as url:
        proxy.session, proxy.url = session, url
        yield proxy


@dataclass
class MediaHarness:
    """One test's tenant, stores and simulator, and fetchers built over them."""

    settings: Settings
    meta: MetaSimulator
    proxy: FaultProxy
    pool: asyncpg.Pool
    redis: aioredis.Redis
    box: SecretBox
    clients: list[MetaGraphClient | AttachmentFetcher | Minio] = field(default_factory=list)

    async def save_tenant(self, *, via_proxy: bool = False, token: str = ACCESS_TOKEN) -> Tenant:
        tenant = make_tenant(TENANT_ID, PHONE_NUMBER_ID, meta_graph_url=self.proxy.url if via_proxy else self.meta.url)
        secrets = tenant.secrets.model_dump()
        secrets["meta_access_token"] = SecretStr(token)
        tenant = tenant.model_copy(update={"secrets": TenantSecrets(**secrets)})
        await save_tenants(self.settings, tenant)
        return tenant

    def fetcher(
        self,
        *,
        redis: aioredis.Redis | None = None,
        storage_endpoint: str | None = None,
        graph: MetaGraphClient | None = None,
        now: float = SENT_AT + 60,
        **options: Any,
    ) -> MediaFetcher:
        """A fresh fetcher (its own tenant cache), as a newly started worker would have."""
        redis = redis or self.redis
        directory = TenantDirectory(TenantStore(self.pool, self.box), redis, self.box, self.settings)
        storage_settings = (
            self.settings.model_copy(update={"s3_endpoint": storage_endpoint}) if storage_endpoint else self.settings
        )
        graph = graph or MetaGraphClient(graph_version=GRAPH)
        storage = s3.client(storage_settings)
        presigner = s3.client(self.settings, public=True)
        self.clients += [graph, storage, presigner]
        return MediaFetcher(
            self.settings,
            tenants=directory,
            tokens=WhatsAppTokens(redis, self.box, self.settings),
            graph=graph,
            storage=storage,
            presigner=presigner,
            clock=lambda: now,
            **options,
        )

    def store(self, data: bytes, mime_type: str, filename: str = "") -> MediaRef:
        return self.meta.store_media(PHONE_NUMBER_ID, data, mime_type, filename)

    def message(
        self,
        kind: str,
        media: MediaRef | None = None,
        *,
        wamid: str | None = None,
        timestamp: int = SENT_AT,
        caption: str | None = None,
        sha256: str | None = None,
        raw: dict[str, Any] | None = None,
    ) -> ResolvedMessage:
        """A message as the resolve stage emits it: Meta's webhook shape, split and normalized."""
        spec = InboundSpec(kind=kind, wamid=wamid or f"wamid.HBgL{uuid.uuid4().hex}", timestamp=timestamp, text=caption)
        message, contact = build_message(spec, media) if raw is None else (raw, {"wa_id": "16505551234"})
        if sha256 is not None:
            message[message["type"]]["sha256"] = sha256
        body = build_webhook(
            waba_id="102290129340398",
            display_phone_number="15550783881",
            phone_number_id=PHONE_NUMBER_ID,
            messages=[(message, contact)],
        )
        (event,) = split_webhook(body, tenant_id=TENANT_ID, webhook_id="webhook-1", received_at=float(timestamp))
        normalized = normalize(event)
        assert isinstance(normalized, InboundMessage)
        return ResolvedMessage(message=normalized, conversation=ConversationRef(conversation_id=uuid.uuid4()))

    def graph_requests(self, path: str = f"/{GRAPH}/") -> list[Any]:
        return self.meta.requests.select(path=path)

    def downloads(self) -> list[Any]:
        return self.meta.requests.select(path=DOWNLOAD_PATH)


@pytest.fixture
def media_settings(provisioned: Settings) -> Settings:
    return provisioned.model_copy(update={"secrets_key": SecretStr(generate_key())})


@pytest.fixture
async def harness(media_settings: Settings, meta: MetaSimulator, proxy: FaultProxy) -> AsyncIterator[MediaHarness]:
    pool = await postgres.connect(media_settings, min_size=1, max_size=4)
    redis = redis_client.client(media_settings, timeout_s=2)
    harness = MediaHarness(media_settings, meta, proxy, pool, redis, SecretBox.from_settings(media_settings))
    try:
        await harness.save_tenant()
        yield harness
    finally:
        for client in harness.clients:
            await (
                client.close() if isinstance(client, MetaGraphClient | AttachmentFetcher) else client.close_session()
            )
        await redis.aclose()
        await pool.close()
