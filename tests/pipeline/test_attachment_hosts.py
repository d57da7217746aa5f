"""Through the real edge, bridge, broker and worker: a validly signed Genesys webhook whose attachment
points into the worker's own network (another port on loopback, ``localhost``, a redirect there, plain
http) makes the worker fetch nothing; the agent gets a Failed receipt that says only "attachment host
not allowed". The servers are this test's own, on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson
import pytest
from aiohttp import web

from tests.pipeline.conftest import ACME, Pipeline, wait_for
from wabridge.simulators.agent import AgentAttachment, build_agent_text, sign_outbound
from wabridge.simulators.customer import InboundSpec
from wabridge.simulators.hosting import serve_app


@dataclass
class Internal:
    url: str = ""
    requests: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        return web.Response(body=b"internal", content_type="image/jpeg")


@pytest.fixture
async def internal() -> AsyncIterator[Internal]:
    server = Internal()
    app = web.Application()
    app.router.add_get("/{tail:.*}", server.handle)
    async with serve_app(app, "127.0.0.1", 0) as url:
        server.url = url
        yield server


async def test_attachments_pointing_into_the_workers_network_are_never_fetched(
    pipeline: Pipeline, internal: Internal
) -> None:
    customer = "16505550781"
    wrote = await pipeline.send(ACME, [InboundSpec(kind="text", wa_id=customer, text="hi")])
    await pipeline.wait_arrived(ACME, wrote)
    port = internal.url.rsplit(":", 1)[1]
    urls = [
        f"{internal.url}/metrics",  # another port on loopback
        f"http://localhost:{port}/metrics",
        f"{pipeline.genesys.url}/__sim/redirect?to={internal.url}/metrics",  # Genesys's host, sending inward
        f"http://example.com:{port}/photo.jpg",  # plain http, off the list (never resolved or reached)
    ]
    edge = f"http://127.0.0.1:{pipeline.settings.webhook_port}/webhook/genesys"
    ids = []
    for n, url in enumerate(urls):
        attachment = AgentAttachment(
            media_type="Image", url=url, mime="image/jpeg", filename="x.jpg", size_bytes=10, id=f"a{n}"
        )
        body = build_agent_text(
            integration_id=ACME.integration_id, to_id=customer, text=f"look {n}", attachments=[attachment]
        )
        raw = orjson.dumps(body)
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign_outbound(ACME.webhook_secret, raw)}
        async with pipeline.http.post(edge, data=raw, headers=headers) as response:
            assert response.status == 200
        ids.append(body["id"])

    async def all_failed() -> bool:
        return all(pipeline.receipts(ACME, message_id, "Failed") for message_id in ids)

    await wait_for(all_failed, 60, "a Failed receipt for each attachment", pipeline)
    for message_id in ids:
        [receipt] = pipeline.receipts(ACME, message_id, "Failed")
        reasons = receipt["reasons"]
        assert isinstance(reasons, list) and reasons[0]["message"] == "Not sent: attachment host not allowed."
    assert internal.requests == []
    assert not pipeline.sent_to(ACME, customer)
