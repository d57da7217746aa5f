"""The media stage against the real Meta simulator, moto S3, Redis and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from tests.media.conftest import (
    ACCESS_TOKEN,
    DOWNLOAD_PATH,
    GRAPH,
    SENT_AT,
    SENT_DAY,
    TENANT_ID,
    MediaHarness,
)
from wabridge.connectors import s3
from wabridge.connectors.meta_graph import MetaGraphClient
from wabridge.errors import PermanentError, TenantHeld, TransientError
from wabridge.media import extension_for, media_key, sha256_hex
from wabridge.schemas.records import GenesysMediaType, MediaUnavailableReason, ReadyMessage
from wabridge.simulators.customer import MediaRef
from wabridge.simulators.media_samples import sample_for

MiB = 1024 * 1024


@dataclass(frozen=True)
class Case:
    spec_kind: str  # the simulator's InboundSpec kind
    sample: str
    mime: str
    wire_type: str
    extension: str
    media_type: GenesysMediaType
    filename: str = ""


CASES = [
    Case("image", "image", "image/jpeg", "image", "jpg", GenesysMediaType.IMAGE),
    Case("image", "image_png", "image/png", "image", "png", GenesysMediaType.IMAGE),
    Case("video", "video", "video/mp4", "video", "mp4", GenesysMediaType.VIDEO),
    Case("audio", "audio", "audio/ogg", "audio", "ogg", GenesysMediaType.AUDIO),
    Case("voice", "voice", "audio/ogg; codecs=opus", "audio", "ogg", GenesysMediaType.AUDIO),
    Case("document", "document", "application/pdf", "document", "pdf", GenesysMediaType.FILE, "Q2 Report.PDF"),
    Case("sticker", "sticker", "image/webp", "sticker", "webp", GenesysMediaType.IMAGE),
]


async def stored_objects(harness: MediaHarness) -> dict[str, tuple[bytes, str]]:
    """Every object in this test's media-inbound bucket: key -> (bytes, content type)."""
    bucket = harness.settings.s3_bucket_media_inbound
    found = {}
    async with s3.client(harness.settings) as client:
        async for obj in client.list_objects(bucket, recursive=True):
            assert obj.object_name is not None
            response = await client.get_object(bucket, obj.object_name)
            found[obj.object_name] = (await response.read(), response.headers["Content-Type"])
            response.release()
    return found


def only_attachment(ready: ReadyMessage) -> Any:
    assert ready.media_unavailable is None
    (attachment,) = ready.attachments
    return attachment


def note(ready: ReadyMessage) -> Any:
    assert ready.attachments == ()
    assert ready.media_unavailable is not None
    return ready.media_unavailable


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- stored, presigned, downloadable ---------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case.spec_kind}-{case.sample}")
async def test_every_media_type_is_stored_at_its_key_and_the_presigned_url_serves_it(
    harness: MediaHarness, case: Case
) -> None:
    data = sample_for(case.sample).data
    ref = harness.store(data, case.mime, case.filename)
    caption = "Taj Mahal" if case.wire_type in ("image", "video", "document") else None
    wamid = f"wamid.HBgL{case.sample.upper()}TEST"
    resolved = harness.message(case.spec_kind, ref, wamid=wamid, caption=caption)
    stored_before = metric("wabridge_media_fetches_total", tenant=TENANT_ID, type=case.wire_type, outcome="stored")

    ready = await harness.fetcher().prepare(resolved)

    attachment = only_attachment(ready)
    key = f"{TENANT_ID}/{case.wire_type}/{SENT_DAY}/{wamid}.{case.extension}"
    assert await stored_objects(harness) == {key: (data, case.mime)}
    assert attachment.mime == case.mime
    assert attachment.media_type is case.media_type
    assert attachment.filename == (case.filename or f"{wamid}.{case.extension}")
    assert attachment.sha256 == hashlib.sha256(data).hexdigest()
    assert attachment.size == len(data)
    assert ready.message == resolved.message and ready.conversation == resolved.conversation
    if caption:
        assert ready.message.payload["caption"] == caption  # type: ignore[call-overload]
    async with aiohttp.ClientSession() as http, http.get(attachment.url) as response:
        assert response.status == 200
        assert await response.read() == data
        assert response.headers["Content-Type"] == case.mime
    assert f"X-Amz-Expires={harness.settings.media_url_expiry_s}" in attachment.url
    after = metric("wabridge_media_fetches_total", tenant=TENANT_ID, type=case.wire_type, outcome="stored")
    assert after == stored_before + 1


async def test_a_wamid_with_base64_slashes_stays_one_path_segment(harness: MediaHarness) -> None:
    sample = sample_for("image")
    ref = harness.store(sample.data, sample.mime_type)
    ready = await harness.fetcher().prepare(harness.message("image", ref, wamid="wamid.HBgL+ab/cd=="))

    assert list(await stored_objects(harness)) == [f"{TENANT_ID}/image/{SENT_DAY}/wamid.HBgL-ab_cd==.jpg"]
    assert only_attachment(ready).filename == "wamid.HBgL-ab_cd==.jpg"


async def test_text_and_other_types_pass_through_untouched(harness: MediaHarness) -> None:
    for kind in ("text", "location", "unsupported"):
        resolved = harness.message(kind)
        ready = await harness.fetcher().prepare(resolved)
        assert ready.attachments == () and ready.media_unavailable is None
        assert ready.message == resolved.message
    assert harness.meta.requests.select() == []


# -- checksums -------------------------------------------------------------------------------------


def hex_sha256(document: dict[str, Any]) -> dict[str, Any]:
    return {**document, "sha256": base64.b64decode(document["sha256"]).hex()}


def without_sha256(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key != "sha256"}


@pytest.mark.parametrize("given_as", ["graph_base64", "graph_hex", "webhook_hex"])
async def test_sha256_verifies_as_base64_and_as_hex(harness: MediaHarness, given_as: str) -> None:
    await harness.save_tenant(via_proxy=True)
    sample = sample_for("document")
    ref = harness.store(sample.data, sample.mime_type, "a.pdf")
    digest_hex = hashlib.sha256(sample.data).hexdigest()
    if given_as == "graph_hex":
        harness.proxy.add(f"/{GRAPH}/", times=10, rewrite=hex_sha256)
    if given_as == "webhook_hex":
        harness.proxy.add(f"/{GRAPH}/", times=10, rewrite=without_sha256)
    # The first download arrives corrupted: only a hash that is really checked notices.
    harness.proxy.add(DOWNLOAD_PATH, corrupt=True)
    resolved = harness.message("document", ref, sha256=digest_hex if given_as == "webhook_hex" else None)

    ready = await harness.fetcher().prepare(resolved)

    assert only_attachment(ready).sha256 == digest_hex
    assert len(harness.downloads()) == 2
    assert list((await stored_objects(harness)).values()) == [(sample.data, sample.mime_type)]


async def test_a_mismatch_once_is_downloaded_again_and_stored(harness: MediaHarness) -> None:
    await harness.save_tenant(via_proxy=True)
    sample = sample_for("image")
    ref = harness.store(sample.data, sample.mime_type)
    harness.proxy.add(DOWNLOAD_PATH, corrupt=True)
    before = metric("wabridge_media_checksum_mismatches_total", tenant=TENANT_ID)

    ready = await harness.fetcher().prepare(harness.message("image", ref))

    assert only_attachment(ready).sha256 == hashlib.sha256(sample.data).hexdigest()
    assert list((await stored_objects(harness)).values()) == [(sample.data, sample.mime_type)]
    assert metric("wabridge_media_checksum_mismatches_total", tenant=TENANT_ID) == before + 1


async def test_a_persistent_mismatch_is_a_checksum_note_and_nothing_is_stored(
    harness: MediaHarness, caplog: pytest.LogCaptureFixture
) -> None:
    await harness.save_tenant(via_proxy=True)
    sample = sample_for("image")
    ref = harness.store(sample.data, sample.mime_type)
    harness.proxy.add(DOWNLOAD_PATH, times=100, corrupt=True)
    resolved = harness.message("image", ref, caption="receipt")
    before = metric("wabridge_media_checksum_mismatches_total", tenant=TENANT_ID)

    with caplog.at_level(logging.WARNING, logger="wabridge.media"):
        ready = await harness.fetcher().prepare(resolved)

    unavailable = note(ready)
    assert unavailable.reason is MediaUnavailableReason.CHECKSUM_MISMATCH
    assert unavailable.mime == "image/jpeg"
    assert len(harness.downloads()) == 2
    assert await stored_objects(harness) == {}
    assert metric("wabridge_media_checksum_mismatches_total", tenant=TENANT_ID) == before + 2
    mismatch_lines = [r.getMessage() for r in caplog.records if "sha256 mismatch" in r.getMessage()]
    assert mismatch_lines and all(TENANT_ID in line and resolved.message.wamid in line for line in mismatch_lines)


# -- URLs, ids and sizes ---------------------------------------------------------------------------


async def test_a_404_on_the_download_url_fetches_a_new_url(harness: MediaHarness) -> None:
    sample = sample_for("video")
    ref = harness.store(sample.data, sample.mime_type)
    harness.meta.fail_next_downloads(ref.id, 1)

    ready = await harness.fetcher().prepare(harness.message("video", ref))

    assert only_attachment(ready).size == len(sample.data)
    assert [r.status for r in harness.downloads()] == [404, 200]
    assert [r.status for r in harness.graph_requests()] == [200, 200]
    assert list((await stored_objects(harness)).values()) == [(sample.data, sample.mime_type)]


async def test_download_urls_that_keep_failing_end_as_expired(harness: MediaHarness) -> None:
    sample = sample_for("video")
    ref = harness.store(sample.data, sample.mime_type)
    harness.meta.fail_next_downloads(ref.id, 100)

    ready = await harness.fetcher(url_attempts=3).prepare(harness.message("video", ref))

    assert note(ready).reason is MediaUnavailableReason.EXPIRED
    assert [r.status for r in harness.downloads()] == [404, 404, 404]
    assert await stored_objects(harness) == {}


async def test_an_expired_short_lived_url_is_replaced(harness: MediaHarness) -> None:
    harness.meta.update(media_url_ttl_s=0.3)
    await harness.save_tenant(via_proxy=True)
    sample = sample_for("sticker")
    ref = harness.store(sample.data, sample.mime_type)
    harness.proxy.add(DOWNLOAD_PATH, delay_s=0.5)  # the first URL is dead by the time it is used

    ready = await harness.fetcher().prepare(harness.message("sticker", ref))

    assert only_attachment(ready).mime == "image/webp"
    assert [r.status for r in harness.downloads()] == [404, 200]


async def test_a_media_id_meta_no_longer_knows_is_expired(harness: MediaHarness) -> None:
    unknown = MediaRef(id="1234567890123456", mime_type="image/jpeg", sha256_b64="", filename="")

    ready = await harness.fetcher().prepare(harness.message("image", unknown, caption="see this"))

    unavailable = note(ready)
    assert unavailable.reason is MediaUnavailableReason.EXPIRED
    assert [r.status for r in harness.graph_requests()] == [400]  # Graph code 100: no such object
    assert harness.downloads() == []


async def test_media_older_than_the_retention_is_expired_without_asking_meta(harness: MediaHarness) -> None:
    sample = sample_for("image")
    ref = harness.store(sample.data, sample.mime_type)

    ready = await harness.fetcher(now=SENT_AT + 8 * 24 * 3600).prepare(harness.message("image", ref))

    assert note(ready).reason is MediaUnavailableReason.EXPIRED
    assert harness.meta.requests.select() == []


async def test_over_25_mb_is_too_large_and_never_downloaded(harness: MediaHarness) -> None:
    data = b"\x00" * (25 * MiB + 1)
    ref = harness.store(data, "video/mp4")

    ready = await harness.fetcher().prepare(harness.message("video", ref))

    unavailable = note(ready)
    assert unavailable.reason is MediaUnavailableReason.TOO_LARGE
    assert unavailable.size == len(data)
    assert unavailable.mime == "video/mp4"
    assert "25 MB" in (unavailable.detail or "")
    assert harness.downloads() == []
    assert await stored_objects(harness) == {}


async def test_a_file_bigger_than_meta_said_stops_at_the_cap(harness: MediaHarness) -> None:
    await harness.save_tenant(via_proxy=True)
    ref = harness.store(b"x" * 5000, "application/pdf", "big.pdf")
    harness.proxy.add(f"/{GRAPH}/", rewrite=lambda document: {**document, "file_size": "100"})

    ready = await harness.fetcher(max_bytes=1000).prepare(harness.message("document", ref))

    unavailable = note(ready)
    assert unavailable.reason is MediaUnavailableReason.TOO_LARGE
    assert unavailable.filename == "big.pdf"
    assert await stored_objects(harness) == {}


@pytest.mark.parametrize(("code", "title"), [(131052, "Media download error"), (131051, "Message type unknown")])
async def test_a_message_with_a_meta_error_becomes_a_note_without_calling_meta(
    harness: MediaHarness, code: int, title: str
) -> None:
    raw = {
        "from": "16505551234",
        "id": "wamid.HBgLMETAERROR",
        "timestamp": str(SENT_AT),
        "type": "document",
        "document": {"mime_type": "video/mp4", "filename": "holiday.mp4"},
        "errors": [{"code": code, "title": title, "message": title, "error_data": {"details": "Over 100 MB."}}],
    }

    ready = await harness.fetcher().prepare(harness.message("document", raw=raw))

    unavailable = note(ready)
    assert unavailable.reason is MediaUnavailableReason.META_ERROR
    assert unavailable.detail == f"WhatsApp error {code}: {title} (Over 100 MB.)"
    assert unavailable.filename == "holiday.mp4"
    assert harness.meta.requests.select() == []


async def test_a_permanent_4xx_is_a_download_failed_note(harness: MediaHarness) -> None:
    await harness.save_tenant(via_proxy=True)
    sample = sample_for("image")
    ref = harness.store(sample.data, sample.mime_type)
    harness.proxy.add(DOWNLOAD_PATH, status=403, body=b"Forbidden")

    ready = await harness.fetcher().prepare(harness.message("image", ref))

    assert note(ready).reason is MediaUnavailableReason.DOWNLOAD_FAILED
    assert await stored_objects(harness) == {}


# -- replays ---------------------------------------------------------------------------------------


async def test_preparing_the_same_message_again_does_not_download_again(harness: MediaHarness) -> None:
    sample = sample_for("document")
    ref = harness.store(sample.data, sample.mime_type, "contract.pdf")
    resolved = harness.message("document", ref)
    first = only_attachment(await harness.fetcher().prepare(resolved))
    reused_before = metric("wabridge_media_fetches_total", tenant=TENANT_ID, type="document", outcome="reused")
    requests_before = len(harness.meta.requests.select())

    again = only_attachment(await harness.fetcher().prepare(resolved))  # as a restarted worker would
    replayed = only_attachment(await harness.fetcher().prepare(resolved))

    assert len(harness.downloads()) == 1
    assert len(harness.meta.requests.select()) == requests_before  # not even the media lookup
    for attachment in (again, replayed):
        assert attachment.model_dump(exclude={"url"}) == first.model_dump(exclude={"url"})
        assert attachment.url.split("?")[0] == first.url.split("?")[0]
    assert metric("wabridge_media_fetches_total", tenant=TENANT_ID, type="document", outcome="reused") == (
        reused_before + 2
    )


# -- transient failures ----------------------------------------------------------------------------


GRAPH_RATE_LIMIT = orjson.dumps({"error": {"message": "(#4) Application request limit reached", "code": 4}})
TRANSIENT_FAULTS = {
    "lookup_503": (f"/{GRAPH}/", {"status": 503}, None),
    "lookup_429_retry_after": (f"/{GRAPH}/", {"status": 429, "headers": {"Retry-After": "7"}}, 7.0),
    "lookup_graph_rate_limit": (
        f"/{GRAPH}/",
        {"status": 400, "body": GRAPH_RATE_LIMIT, "headers": {"Content-Type": "application/json"}},
        None,
    ),
    "download_500": (DOWNLOAD_PATH, {"status": 500}, None),
    "download_timeout": (DOWNLOAD_PATH, {"delay_s": 0.8}, None),
    "lookup_timeout": (f"/{GRAPH}/", {"delay_s": 0.8}, None),
}


@pytest.mark.parametrize("fault", list(TRANSIENT_FAULTS))
async def test_transient_failures_raise_for_a_retry_that_then_succeeds(harness: MediaHarness, fault: str) -> None:
    await harness.save_tenant(via_proxy=True)
    path, behaviour, retry_after = TRANSIENT_FAULTS[fault]
    harness.proxy.add(path, **behaviour)
    sample = sample_for("audio")
    ref = harness.store(sample.data, sample.mime_type)
    resolved = harness.message("audio", ref)
    graph = MetaGraphClient(graph_version=GRAPH, request_timeout_s=0.3, download_timeout_s=0.3)
    fetcher = harness.fetcher(graph=graph)

    with pytest.raises(TransientError) as raised:
        await fetcher.prepare(resolved)

    assert raised.value.retry_after == retry_after
    assert await stored_objects(harness) == {}
    ready = await fetcher.prepare(resolved)  # the lane's retry
    assert only_attachment(ready).size == len(sample.data)


async def test_s3_down_is_transient(harness: MediaHarness) -> None:
    sample = sample_for("image")
    ref = harness.store(sample.data, sample.mime_type)
    fetcher = harness.fetcher(storage_endpoint=f"http://127.0.0.1:{free_port()}")

    with pytest.raises(TransientError):
        await fetcher.prepare(harness.message("image", ref))


async def test_redis_down_falls_back_to_the_tenant_credentials(harness: MediaHarness) -> None:
    sample = sample_for("image")
    ref = harness.store(sample.data, sample.mime_type)
    dead_redis = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        ready = await harness.fetcher(redis=dead_redis).prepare(harness.message("image", ref))
    finally:
        await dead_redis.aclose()

    assert only_attachment(ready).size == len(sample.data)


async def test_an_unknown_tenant_is_a_permanent_error(harness: MediaHarness) -> None:
    sample = sample_for("image")
    resolved = harness.message("image", harness.store(sample.data, sample.mime_type))
    ghost = resolved.model_copy(update={"message": resolved.message.model_copy(update={"tenant_id": "ghost"})})

    with pytest.raises(PermanentError) as raised:
        await harness.fetcher().prepare(ghost)

    assert raised.value.reason == "unknown_tenant"


# -- the WhatsApp token ----------------------------------------------------------------------------


def token_key(harness: MediaHarness) -> str:
    return harness.settings.redis_key(f"tenant:{TENANT_ID}:whatsapp:token")


async def test_the_token_is_cached_encrypted_for_a_day(harness: MediaHarness) -> None:
    sample = sample_for("image")
    await harness.fetcher().prepare(harness.message("image", harness.store(sample.data, sample.mime_type)))

    cached = await harness.redis.get(token_key(harness))
    assert cached is not None and ACCESS_TOKEN.encode() not in cached
    assert harness.box.decrypt(cached.decode()) == ACCESS_TOKEN
    assert 86400 - 60 < await harness.redis.ttl(token_key(harness)) <= 86400


async def test_a_refused_cached_token_is_dropped_and_the_stored_one_used_once(harness: MediaHarness) -> None:
    await harness.redis.set(token_key(harness), harness.box.encrypt("revoked-token"), ex=86400)
    sample = sample_for("image")
    ref = harness.store(sample.data, sample.mime_type)

    ready = await harness.fetcher().prepare(harness.message("image", ref))

    assert only_attachment(ready).size == len(sample.data)
    lookups = harness.graph_requests()
    assert [r.status for r in lookups] == [401, 200]
    assert [r.headers["Authorization"] for r in lookups] == ["Bearer revoked-token", f"Bearer {ACCESS_TOKEN}"]
    assert harness.box.decrypt((await harness.redis.get(token_key(harness))).decode()) == ACCESS_TOKEN


async def test_a_refused_stored_token_waits_for_an_operator(harness: MediaHarness) -> None:
    await harness.save_tenant(token="wrong-token")
    sample = sample_for("image")
    ref = harness.store(sample.data, sample.mime_type)

    with pytest.raises(TenantHeld) as held:
        await harness.fetcher().prepare(harness.message("image", ref))

    assert (held.value.tenant_id, held.value.reason, held.value.scope) == (
        TENANT_ID,
        "whatsapp_token_refused",
        "whatsapp",
    )

    assert [r.status for r in harness.graph_requests()] == [401]  # the same token is not tried twice
    assert await stored_objects(harness) == {}


# -- pure helpers ----------------------------------------------------------------------------------


def test_keys_extensions_and_hashes() -> None:
    assert media_key("acme", "audio", SENT_AT, "wamid.A+B/C=", "ogg") == f"acme/audio/{SENT_DAY}/wamid.A-B_C=.ogg"
    assert extension_for("audio/ogg; codecs=opus") == "ogg"
    assert extension_for("audio/amr") == "amr"
    assert extension_for("video/3gpp") == "3gp"
    assert extension_for("application/octet-stream", "Offer.DOCX") == "docx"
    assert extension_for("application/x-unknown-thing") == "bin"
    digest = hashlib.sha256(b"media").digest()
    assert sha256_hex(base64.b64encode(digest).decode()) == digest.hex()
    assert sha256_hex(base64.urlsafe_b64encode(digest).decode().rstrip("=")) == digest.hex()
    assert sha256_hex(digest.hex().upper()) == digest.hex()
    assert sha256_hex("not a hash") is None
