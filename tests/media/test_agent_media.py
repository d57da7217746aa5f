"""An agent's attachment on its way to WhatsApp, against real S3, the Meta simulator and a real
HTTP server standing for Genesys's download URL: fetched once, kept in media-outbound, uploaded to
Meta and sent by id; a link to the kept copy when Meta refuses the upload; a photo over WhatsApp's
image cap goes as a document; a file Genesys no longer serves, or one over its cap, is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from tests.media.conftest import PHONE_NUMBER_ID, MediaHarness
from wabridge.agent_media import AgentMedia
from wabridge.connectors import s3
from wabridge.connectors.attachments import AttachmentFetcher
from wabridge.connectors.meta_graph import MetaGraphClient, WhatsAppTokens
from wabridge.schemas.genesys import OutboundAttachment, OutboundEvent, OutboundKind, ReasonCode
from wabridge.simulators.hosting import serve_app
from wabridge.simulators.media_samples import sample_for
from wabridge.transforms.outbound import Part, Unsendable, whatsapp_kind


@dataclass
class GenesysFiles:
    """Files at URLs, as Genesys serves an agent's attachments; counts each download."""

    url: str = ""
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    downloads: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.downloads.append(name)
        if name not in self.files:
            return web.Response(status=404)
        data, mime = self.files[name]
        return web.Response(body=data, content_type=mime)

    def add(self, name: str, data: bytes, mime: str) -> str:
        self.files[name] = (data, mime)
        return f"{self.url}/downloads/{name}"


@pytest.fixture
async def genesys_files() -> AsyncIterator[GenesysFiles]:
    files = GenesysFiles()
    app = web.Application()
    app.router.add_get("/downloads/{name}", files.handle)
    async with serve_app(app, "127.0.0.1", 0) as url:
        files.url = url
        yield files


def agent_media(harness: MediaHarness, *trusted: str, **options: float) -> AgentMedia:
    """The stage's attachment handling, fetching from ``trusted`` origins (this test's own servers,
    on loopback over plain http, as the embedded stack's Genesys simulator is)."""
    graph = MetaGraphClient(graph_version="v26.0")
    storage, presigner = s3.client(harness.settings), s3.client(harness.settings, public=True)
    fetcher = AttachmentFetcher(
        harness.settings.model_copy(update={"genesys_attachment_insecure_origins": ",".join(trusted)})
    )
    harness.clients += [graph, storage, presigner, fetcher]
    tokens = WhatsAppTokens(harness.redis, harness.box, harness.settings)
    return AgentMedia(
        harness.settings, graph=graph, tokens=tokens, storage=storage, presigner=presigner, fetcher=fetcher, **options
    )


def agent_message(url: str, mime: str, filename: str | None = None) -> tuple[OutboundEvent, Part]:
    attachment = OutboundAttachment(url=url, mime=mime, filename=filename, media_type="Image")
    outbound = OutboundEvent(
        id="genesys-msg-1", tenant_id="acme", kind=OutboundKind.TEXT, customer_id="16505551234",
        time="2026-12-02T10:00:00.000Z", attachments=(attachment,), raw={},
    )  # fmt: skip
    kind = whatsapp_kind(mime)
    return outbound, Part({"type": kind, kind: {"caption": "The part"}}, preview="", attachment=attachment)


async def test_an_attachment_is_kept_uploaded_and_sent_by_id_and_fetched_from_genesys_once(
    harness: MediaHarness, genesys_files: GenesysFiles
) -> None:
    tenant = await harness.save_tenant()
    sample = sample_for("image")
    outbound, part = agent_message(genesys_files.add("photo", sample.data, sample.mime_type), sample.mime_type)
    media = agent_media(harness, genesys_files.url)

    message = await media.attach(tenant, PHONE_NUMBER_ID, outbound, 0, part)
    assert message["type"] == "image" and message["image"]["caption"] == "The part"
    uploaded = harness.meta.media(message["image"]["id"])
    assert uploaded is not None and uploaded.data == sample.data and uploaded.owner_phone_number_id == PHONE_NUMBER_ID

    async with s3.client(harness.settings) as client:
        keys = [
            o.object_name
            async for o in client.list_objects(
                harness.settings.s3_bucket_media_outbound, prefix="acme/", recursive=True
            )
        ]
    [key] = [k for k in keys if k and k.startswith("acme/image/2026-12-02/")]
    assert key.endswith(".jpg") or key.endswith(".png")

    # A retry (a redelivery after a crash) uses the kept copy: Genesys's URL may be gone by then.
    genesys_files.files.clear()
    again = await media.attach(tenant, PHONE_NUMBER_ID, outbound, 0, part)
    assert harness.meta.media(again["image"]["id"]).data == sample.data  # type: ignore[union-attr]
    assert genesys_files.downloads == ["photo"]


async def test_when_meta_refuses_the_upload_the_message_carries_a_link_to_the_kept_copy(
    harness: MediaHarness, genesys_files: GenesysFiles
) -> None:
    tenant = await harness.save_tenant()
    sample = sample_for("document")
    outbound, part = agent_message(genesys_files.add("invoice", sample.data, sample.mime_type), sample.mime_type)
    harness.meta.fault_next_uploads(PHONE_NUMBER_ID, 400, 131053)

    message = await agent_media(harness, genesys_files.url).attach(tenant, PHONE_NUMBER_ID, outbound, 0, part)
    link = message["document"]["link"]
    async with aiohttp.ClientSession() as session, session.get(link) as response:
        assert response.status == 200 and await response.read() == sample.data


async def test_a_photo_over_whatsapps_image_cap_goes_as_a_document(
    harness: MediaHarness, genesys_files: GenesysFiles
) -> None:
    tenant = await harness.save_tenant()
    big = b"\xff\xd8\xff" + bytes(6 * 1024 * 1024)
    outbound, part = agent_message(genesys_files.add("big", big, "image/jpeg"), "image/jpeg", filename="site.jpg")
    message = await agent_media(harness, genesys_files.url).attach(tenant, PHONE_NUMBER_ID, outbound, 0, part)
    assert message["type"] == "document"
    assert message["document"]["filename"] == "site.jpg" and message["document"]["caption"] == "The part"


async def test_a_file_genesys_no_longer_serves_or_over_its_cap_is_refused(
    harness: MediaHarness, genesys_files: GenesysFiles
) -> None:
    tenant = await harness.save_tenant()
    media = agent_media(harness, genesys_files.url)
    outbound, part = agent_message(f"{genesys_files.url}/downloads/gone", "application/pdf")
    with pytest.raises(Unsendable) as gone:
        await media.attach(tenant, PHONE_NUMBER_ID, outbound, 0, part)
    assert str(gone.value) == "attachment unavailable"  # what the agent reads: not the peer's words

    huge = genesys_files.add("huge", bytes(26 * 1024 * 1024), "application/pdf")
    outbound, part = agent_message(huge, "application/pdf")
    outbound = outbound.model_copy(update={"id": "genesys-msg-2"})
    with pytest.raises(Unsendable) as refused:
        await media.attach(tenant, PHONE_NUMBER_ID, outbound, 0, part)
    assert refused.value.code is ReasonCode.INVALID_MEDIA_CONTENT_LENGTH


async def test_an_attachment_genesys_cannot_serve_is_given_up_after_a_few_tries(harness: MediaHarness) -> None:
    """Connection refused at Genesys's URL: a few tries, then the agent is told (the customer's later
    messages must not wait behind it)."""
    tenant = await harness.save_tenant()
    outbound, part = agent_message("http://127.0.0.1:1/never.pdf", "application/pdf")
    media = agent_media(harness, "http://127.0.0.1:1", fetch_backoff_s=0.01)
    with pytest.raises(Unsendable) as unreachable:
        await media.attach(tenant, PHONE_NUMBER_ID, outbound, 0, part)
    assert str(unreachable.value) == "attachment unavailable"
