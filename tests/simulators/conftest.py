"""Fixtures for the simulator tests: both simulators on free loopback ports, and a webhook receiver
standing in for the bridge (it records the exact bytes it got and answers what the test scripts)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from wabridge.simulators import (
    GenesysClient,
    GenesysIntegration,
    GenesysSimConfig,
    GenesysSimulator,
    MetaPhoneNumber,
    MetaSimConfig,
    MetaSimulator,
)
from wabridge.simulators.hosting import serve_app

PHONE_NUMBER_ID = "106540352242922"
ACCESS_TOKEN = "meta-token-tenant-a"
APP_SECRET = "app-secret-tenant-a"
OTHER_PHONE_NUMBER_ID = "206540352242999"
OTHER_ACCESS_TOKEN = "meta-token-tenant-b"
CLIENT_ID = "client-a"
CLIENT_SECRET = "client-secret-a"
INTEGRATION_ID = "integration-a"
OTHER_INTEGRATION_ID = "integration-b"
OUTBOUND_SECRET = "outbound-secret-a"


def basic_auth(client_id: str, client_secret: str) -> dict[str, str]:
    """``Authorization: Basic base64(client_id:client_secret)`` (aiohttp's BasicAuth is deprecated)."""
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()}


async def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail the test when it does not within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    raw: bytes


@dataclass
class WebhookReceiver:
    """A stand-in for the bridge's webhook endpoints."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    # Statuses to answer, in order; 200 once exhausted.
    scripted_statuses: list[int] = field(default_factory=list)
    delay_s: float = 0.0
    # Bytes to serve at GET /files/{name} (attachments for Genesys to fetch).
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(request.path, dict(request.headers), await request.read()))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        status = self.scripted_statuses.pop(0) if self.scripted_statuses else 200
        return web.Response(status=status, text="ok")

    async def serve_file(self, request: web.Request) -> web.Response:
        stored = self.files.get(request.match_info["name"])
        if stored is None:
            return web.Response(status=404)
        return web.Response(body=stored[0], content_type=stored[1])


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/files/{name}", receiver.serve_file)
    app.router.add_post("/{tail:.*}", receiver.handle)
    async with serve_app(app, "127.0.0.1", 0) as url:
        receiver.url = url
        yield receiver


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def meta(receiver: WebhookReceiver) -> AsyncIterator[MetaSimulator]:
    config = MetaSimConfig(
        phone_numbers=[
            MetaPhoneNumber(
                phone_number_id=PHONE_NUMBER_ID,
                access_token=SecretStr(ACCESS_TOKEN),
                app_secret=SecretStr(APP_SECRET),
                webhook_url=f"{receiver.url}/webhooks/meta",
            ),
            MetaPhoneNumber(
                phone_number_id=OTHER_PHONE_NUMBER_ID,
                waba_id="206540352240000",  # another business: its own WABA and templates
                access_token=SecretStr(OTHER_ACCESS_TOKEN),
                app_secret=SecretStr("app-secret-tenant-b"),
                webhook_url=f"{receiver.url}/webhooks/meta-b",
            ),
        ],
        webhook_retry_delay_s=0.05,
    )
    async with MetaSimulator(config, seed=7).serve() as simulator:
        yield simulator


@pytest.fixture
async def genesys(receiver: WebhookReceiver) -> AsyncIterator[GenesysSimulator]:
    config = GenesysSimConfig(
        clients=[
            GenesysClient(client_id=CLIENT_ID, client_secret=SecretStr(CLIENT_SECRET)),
            GenesysClient(client_id="client-other-org", client_secret=SecretStr("s"), organization_id="org-2"),
        ],
        integrations=[
            GenesysIntegration(
                integration_id=INTEGRATION_ID,
                outbound_webhook_url=f"{receiver.url}/webhooks/genesys",
                outbound_webhook_secret=SecretStr(OUTBOUND_SECRET),
            ),
            GenesysIntegration(integration_id=OTHER_INTEGRATION_ID),
        ],
        outbound_retry_delay_s=0.01,
    )
    async with GenesysSimulator(config, seed=7).serve() as simulator:
        yield simulator


TokenFactory = Callable[..., Awaitable[str]]


@pytest.fixture
def get_token(genesys: GenesysSimulator, http: aiohttp.ClientSession) -> TokenFactory:
    async def get(client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET) -> str:
        async with http.post(
            f"{genesys.url}/oauth/token",
            data={"grant_type": "client_credentials"},
            headers=basic_auth(client_id, client_secret),
        ) as response:
            assert response.status == 200, await response.text()
            token: str = (await response.json())["access_token"]
            return token

    return get
