"""A signed Genesys webhook cannot make the worker fetch from its own network: agent attachments
come only from allowed Genesys origins, over https, from public addresses, and redirects are held
to the same rules. Every server here is this test's own, on loopback; the address checks for
private, link-local and metadata ranges run on addresses alone, with no connection attempted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from pydantic import SecretStr

from wabridge.connectors.attachments import (
    AttachmentFetcher,
    AttachmentRefused,
    AttachmentUnavailable,
    is_public,
)
from wabridge.settings import Settings
from wabridge.simulators.hosting import serve_app
from wabridge.tenants import Tenant, TenantConfig, TenantSecrets


@dataclass
class Server:
    """A server of this test's: it counts every request it gets."""

    url: str = ""
    requests: list[str] = field(default_factory=list)
    redirect_to: str | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        if self.redirect_to is not None:
            raise web.HTTPFound(self.redirect_to)
        return web.Response(body=b"secret metrics of the worker's network", content_type="text/plain")


@pytest.fixture
async def servers() -> AsyncIterator[tuple[Server, Server]]:
    first, second = Server(), Server()
    apps = []
    for server in (first, second):
        app = web.Application()
        app.router.add_get("/{tail:.*}", server.handle)
        apps.append(app)
    async with serve_app(apps[0], "127.0.0.1", 0) as url_a, serve_app(apps[1], "127.0.0.1", 0) as url_b:
        first.url, second.url = url_a, url_b
        yield first, second


def tenant(api_url: str | None = None) -> Tenant:
    secret = SecretStr("fake-secret")
    return Tenant(
        id="acme",
        name="Acme",
        config=TenantConfig(genesys_region="mypurecloud.ie", genesys_api_url=api_url),
        secrets=TenantSecrets(
            meta_app_secret=secret,
            meta_verify_token=secret,
            meta_access_token=secret,
            genesys_client_secret=secret,
            genesys_webhook_secret=secret,
        ),
    )


def fetcher(origins: str = "", insecure: str = "") -> AttachmentFetcher:
    settings = Settings(genesys_attachment_origins=origins, genesys_attachment_insecure_origins=insecure)
    return AttachmentFetcher(settings)


async def test_a_url_off_the_allow_list_is_never_fetched(servers: tuple[Server, Server]) -> None:
    target, _ = servers
    port = target.url.rsplit(":", 1)[1]
    client = fetcher()
    try:
        for url in (f"{target.url}/metrics", f"http://localhost:{port}/metrics", "http://169.254.169.254/latest"):
            with pytest.raises(AttachmentRefused) as refused:
                await client.fetch(tenant(), url, 1_000_000)
            assert str(refused.value) == "attachment host not allowed"
    finally:
        await client.close()
    assert target.requests == []


async def test_an_allowed_host_that_resolves_to_loopback_is_refused_before_connecting(
    servers: tuple[Server, Server],
) -> None:
    target, _ = servers
    port = target.url.rsplit(":", 1)[1]
    # Allowed by name, over https: but "localhost" resolves only to loopback addresses.
    client = fetcher(origins=f"https://localhost:{port}")
    try:
        with pytest.raises(AttachmentRefused):
            await client.fetch(tenant(), f"https://localhost:{port}/file", 1_000_000)
        with pytest.raises(AttachmentRefused):  # a literal address is checked the same way
            await client.fetch(tenant(f"https://127.0.0.1:{port}"), f"https://127.0.0.1:{port}/file", 1_000_000)
    finally:
        await client.close()
    assert target.requests == []


async def test_plain_http_is_refused_on_an_allowed_origin(servers: tuple[Server, Server]) -> None:
    target, _ = servers
    client = fetcher()
    try:
        with pytest.raises(AttachmentRefused):  # the tenant's own API host, but not https and not public
            await client.fetch(tenant(target.url), f"{target.url}/file", 1_000_000)
    finally:
        await client.close()
    assert target.requests == []


async def test_a_redirect_off_the_allow_list_is_not_followed(servers: tuple[Server, Server]) -> None:
    genesys, internal = servers
    genesys.redirect_to = f"{internal.url}/metrics"
    client = fetcher(insecure=genesys.url)  # Genesys (here: a trusted test server) redirects inward
    try:
        with pytest.raises(AttachmentRefused):
            await client.fetch(tenant(), f"{genesys.url}/download", 1_000_000)
    finally:
        await client.close()
    assert genesys.requests == ["/download"] and internal.requests == []


async def test_a_trusted_origin_serves_and_a_redirect_loop_ends(servers: tuple[Server, Server]) -> None:
    genesys, _ = servers
    client = fetcher(insecure=genesys.url)
    try:
        assert await client.fetch(tenant(), f"{genesys.url}/file", 1_000_000)
        genesys.redirect_to = f"{genesys.url}/again"
        with pytest.raises(AttachmentUnavailable):
            await client.fetch(tenant(), f"{genesys.url}/loop", 1_000_000)
    finally:
        await client.close()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "::1", "10.1.2.3", "172.16.0.1", "192.168.1.10", "169.254.169.254", "fe80::1",
        "fd00:ec2::254", "100.64.0.1", "0.0.0.0", "224.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",  # noqa: S104
        "198.18.0.1", "240.0.0.1", "not an address",
    ],
)  # fmt: skip
def test_private_link_local_and_metadata_addresses_are_not_public(address: str) -> None:
    assert not is_public(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_public(address: str) -> None:
    assert is_public(address)
