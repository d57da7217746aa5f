"""Stage media: a WhatsApp media id becomes a stored file with a presigned URL Genesys can fetch.

``MediaFetcher.prepare`` turns a ``ResolvedMessage`` into a ``ReadyMessage``
(``wa-ready``). No Faust here: the agent calls it per record.

* Non-media types pass through. Image, video, audio (voice notes too), document and sticker get an
  ``Attachment``, or a ``MediaUnavailable`` note the agent will read: never silence.
* The file goes to the media-inbound bucket at ``{tenantId}/{type}/{yyyy-MM-dd}/{messageId}.{ext}``
  (the WhatsApp type, the day of Meta's timestamp in UTC) with its content type and its sha256 as
  object metadata. The key depends only on the message, so a replay finds the object, compares the
  sha256 and presigns it without asking Meta anything.
* Meta's sha256 (base64 or hex) is checked; a mismatch is downloaded once more, then reported.
* Over Genesys's 25 MB, the note says so; the download stops at the cap. Downloads in progress
  share a memory budget (``media_memory_budget_bytes``, ``ByteBudget``).
* The URL in the ``Attachment`` is signed again by the deliver stage from its ``key``, so its
  expiry counts from the POST to Genesys, not from this stage.
* Transient failures (Meta 429/5xx/timeouts, S3, PostgreSQL) raise ``TransientError`` so the lane
  retries: a message never goes on without its attachment because a peer was briefly down.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import io
import logging
import mimetypes
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from miniopy_async.api import Minio
from miniopy_async.error import MinioException, S3Error
from multidict import CIMultiDict
from prometheus_client import Counter, Gauge, Histogram
from pydantic import SecretStr

from wabridge.connectors import s3
from wabridge.connectors.meta_graph import (
    MediaGone,
    MediaInfo,
    MediaRefused,
    MediaTooLarge,
    MediaUrlExpired,
    MetaGraphClient,
    WhatsAppTokens,
)
from wabridge.connectors.tenant_directory import TenantDirectory
from wabridge.errors import PermanentError, TenantHeld, TransientError
from wabridge.schemas.records import (
    MEDIA_TYPE_BY_WHATSAPP_TYPE,
    Attachment,
    InboundMessage,
    MediaUnavailable,
    MediaUnavailableReason,
    MetaError,
    ReadyMessage,
    ResolvedMessage,
)
from wabridge.settings import Settings
from wabridge.tenants import SecretBox, Tenant

log = logging.getLogger(__name__)


# Genesys takes attachments up to 25 MB (reference: genesys-open-messaging.md).
GENESYS_ATTACHMENT_LIMIT = 25 * 1024 * 1024
# Media ids in webhooks expire after 7 days: past that, asking Meta is a wasted call.
MEDIA_ID_RETENTION_S = 7 * 24 * 3600
# Download URLs asked for per message when each one answers 404 (URLs live 5 minutes).
URL_ATTEMPTS = 3
# Downloads per message whose bytes do not match Meta's sha256: the first and one more.
CHECKSUM_ATTEMPTS = 2
SHA256_METADATA = "sha256"
# Meta's message error codes about the media itself; the note quotes one of these first.
_MEDIA_ERROR_CODES = (131052, 131053)

FETCHES = Counter(
    "wabridge_media_fetches_total",
    "Media messages handled, by tenant, WhatsApp type and outcome (stored, reused, a MediaUnavailable "
    "reason, retry, token_refused, error)",
    ["tenant", "type", "outcome"],
)
BYTES_STORED = Counter("wabridge_media_bytes_stored_total", "Media bytes written to media-inbound", ["tenant", "type"])
CHECKSUM_MISMATCHES = Counter(
    "wabridge_media_checksum_mismatches_total", "Downloads whose sha256 did not match Meta's", ["tenant"]
)
IN_MEMORY = Gauge("wabridge_media_bytes_in_memory", "Media bytes reserved by downloads in progress")
FETCH_SECONDS = Histogram(
    "wabridge_media_fetch_seconds",
    "Time to make one media message ready (lookup, download, store, presign), by WhatsApp type",
    ["type"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

# Extensions ``mimetypes`` gets wrong or does not know, for what WhatsApp sends (reference: Media).
_EXTENSION_BY_MIME = {
    "audio/ogg": "ogg",  # mimetypes says .oga; WhatsApp voice notes are Ogg Opus
    "audio/opus": "opus",
    "audio/amr": "amr",
    "audio/aac": "aac",
    "audio/mpeg": "mp3",
    "audio/mp4": "m4a",
    "video/3gpp": "3gp",
    "video/mp4": "mp4",
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "text/plain": "txt",
    "application/pdf": "pdf",
}
_SAFE_EXTENSION = re.compile(r"^[a-z0-9]{1,10}$")
# wamids are ``wamid.`` + standard base64: ``+`` and ``/`` map one-to-one to ``-`` and ``_``.
_WAMID_TRANSLATION = str.maketrans("+/", "-_")
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._=-]")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True, slots=True)
class _Target:
    """Where one message's media goes and what it is called."""

    key: str
    mime: str
    filename: str


@dataclass(frozen=True, slots=True)
class _Stored:
    sha256: str | None  # the object's metadata: hex of the bytes this stage verified and stored
    size: int


@dataclass(frozen=True, slots=True)
class _Outcome:
    name: str  # the metric's outcome label
    attachment: Attachment | None = None
    unavailable: MediaUnavailable | None = None


class MediaFetcher:
    """The media step's work for one message at a time; share one per worker process."""

    def __init__(
        self,
        settings: Settings,
        *,
        tenants: TenantDirectory,
        tokens: WhatsAppTokens,
        graph: MetaGraphClient,
        storage: Minio,
        presigner: Minio,
        max_bytes: int = GENESYS_ATTACHMENT_LIMIT,
        retention_s: float = MEDIA_ID_RETENTION_S,
        url_attempts: int = URL_ATTEMPTS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``storage`` reads and writes the bucket; ``presigner`` signs URLs for the host Genesys reaches."""
        self._settings = settings
        self._tenants = tenants
        self._tokens = tokens
        self._graph = graph
        self._storage = storage
        self._presigner = presigner
        self._max_bytes = max_bytes
        self._retention_s = retention_s
        self._url_attempts = max(1, url_attempts)
        self._clock = clock
        self._bucket = settings.s3_bucket_media_inbound
        self._url_expiry = timedelta(seconds=settings.media_url_expiry_s)
        self._budget = ByteBudget(settings.media_memory_budget_bytes)
        self._owned: tuple[MetaGraphClient | Minio, ...] = ()

    @classmethod
    def create(
        cls,
        settings: Settings,
        *,
        tenants: TenantDirectory,
        redis: aioredis.Redis,
        box: SecretBox,
        max_bytes: int = GENESYS_ATTACHMENT_LIMIT,
    ) -> MediaFetcher:
        """A fetcher with its own Graph and S3 clients (closed by ``close``)."""
        graph = MetaGraphClient.from_settings(settings)
        storage = s3.client(settings)
        presigner = s3.client(settings, public=True)
        fetcher = cls(
            settings,
            tenants=tenants,
            tokens=WhatsAppTokens(redis, box, settings),
            graph=graph,
            storage=storage,
            presigner=presigner,
            max_bytes=max_bytes,
        )
        fetcher._owned = (graph, storage, presigner)
        return fetcher

    async def close(self) -> None:
        for owned in self._owned:
            if isinstance(owned, MetaGraphClient):
                await owned.close()
            else:
                await s3.close(owned)

    async def prepare(self, resolved: ResolvedMessage) -> ReadyMessage:
        """The message with its attachment or a note why there is none.

        Raises ``TransientError`` to be retried (never a ReadyMessage short of its attachment), and
        ``PermanentError`` (``unknown_tenant``) when the message's tenant no longer exists.
        """
        message = resolved.message
        if message.type not in MEDIA_TYPE_BY_WHATSAPP_TYPE:
            return ReadyMessage(message=message, conversation=resolved.conversation)
        started = time.perf_counter()
        outcome_name = "error"
        try:
            outcome = await self._attach(message)
            outcome_name = outcome.name
        except TenantHeld:
            outcome_name = "token_refused"
            raise
        except TransientError:
            outcome_name = "retry"
            raise
        finally:
            FETCHES.labels(message.tenant_id, message.type, outcome_name).inc()
            FETCH_SECONDS.labels(message.type).observe(time.perf_counter() - started)
        return ReadyMessage(
            message=message,
            conversation=resolved.conversation,
            attachments=(outcome.attachment,) if outcome.attachment is not None else (),
            media_unavailable=outcome.unavailable,
        )

    # -- one media message -------------------------------------------------------------------------

    async def _attach(self, message: InboundMessage) -> _Outcome:
        payload = _payload(message)
        if message.errors:
            return _unavailable(message, MediaUnavailableReason.META_ERROR, _meta_error_detail(message.errors))
        media_id = str(payload.get("id") or "")
        if not media_id:
            return _unavailable(message, MediaUnavailableReason.DOWNLOAD_FAILED, "The message names no media id.")
        tenant = await self._tenant(message.tenant_id)

        # Replays: the key depends only on the message, so an earlier run's object is found here.
        checked: tuple[str, _Stored | None] | None = None
        payload_mime = _text(payload.get("mime_type"))
        if payload_mime:
            target = _target(message, payload_mime)
            stored = await self._stat(target.key)
            reusable = _reusable(stored, sha256_hex(payload.get("sha256")))
            if reusable is not None:
                return await self._attached(message, target, reusable, "reused")
            checked = (target.key, stored)

        if self._clock() - message.timestamp > self._retention_s:
            return _unavailable(
                message, MediaUnavailableReason.EXPIRED, "WhatsApp keeps media for 7 days; this message is older."
            )
        try:
            return await self._tokens.using(
                tenant, lambda token: self._fetch(message, tenant, media_id, token, checked)
            )
        except MediaGone as exc:
            log.info("media of message %s (tenant %s) is gone: %s", message.wamid, tenant.id, exc)
            return _unavailable(message, MediaUnavailableReason.EXPIRED, "WhatsApp no longer has this file.")
        except MediaTooLarge as exc:
            return _too_large(message, payload_mime, exc.size, self._max_bytes)
        except MediaRefused as exc:
            log.warning("media of message %s (tenant %s) refused by Meta: %s", message.wamid, tenant.id, exc)
            return _unavailable(
                message, MediaUnavailableReason.DOWNLOAD_FAILED, f"WhatsApp refused the download ({exc})."
            )

    async def _fetch(
        self,
        message: InboundMessage,
        tenant: Tenant,
        media_id: str,
        token: SecretStr,
        checked: tuple[str, _Stored | None] | None,
    ) -> _Outcome:
        payload = _payload(message)
        info = await self._graph.media_info(tenant, media_id, token, phone_number_id=message.phone_number_id)
        mime = _text(payload.get("mime_type")) or info.mime_type or "application/octet-stream"
        if info.file_size is not None and info.file_size > self._max_bytes:
            return _too_large(message, mime, info.file_size, self._max_bytes)
        target = _target(message, mime)
        expected = sha256_hex(info.sha256) or sha256_hex(payload.get("sha256"))
        stored = checked[1] if checked is not None and checked[0] == target.key else await self._stat(target.key)
        reusable = _reusable(stored, expected)
        if reusable is not None:
            return await self._attached(message, target, reusable, "reused")

        async with self._budget.reserve(info.file_size or self._max_bytes):
            data = await self._download_verified(message, tenant, media_id, token, info, expected)
            if data is None:
                return _unavailable(
                    message,
                    MediaUnavailableReason.CHECKSUM_MISMATCH,
                    "The file WhatsApp sent did not match its checksum.",
                )
            digest = hashlib.sha256(data).hexdigest()
            await self._put(target, data, digest)
        BYTES_STORED.labels(message.tenant_id, message.type).inc(len(data))
        return await self._attached(message, target, _Stored(digest, len(data)), "stored")

    async def _download_verified(
        self,
        message: InboundMessage,
        tenant: Tenant,
        media_id: str,
        token: SecretStr,
        info: MediaInfo,
        expected: str | None,
    ) -> bytes | None:
        """The bytes, re-asking for the URL on 404 and re-downloading once on a sha256 mismatch."""
        url, urls_asked, mismatches = info.url, 1, 0
        while True:
            try:
                data = await self._graph.download(url, token, self._max_bytes)
            except MediaUrlExpired as exc:
                if urls_asked >= self._url_attempts:
                    raise MediaGone(f"{urls_asked} download URLs in a row answered 404: {exc}") from exc
                urls_asked += 1
                url = (
                    await self._graph.media_info(tenant, media_id, token, phone_number_id=message.phone_number_id)
                ).url
                continue
            actual = hashlib.sha256(data).hexdigest()
            if expected is None or actual == expected:
                return data
            mismatches += 1
            CHECKSUM_MISMATCHES.labels(tenant.id).inc()
            log.warning(
                "sha256 mismatch on media of message %s (tenant %s), download %d of %d: expected %s, got %s",
                message.wamid,
                tenant.id,
                mismatches,
                CHECKSUM_ATTEMPTS,
                expected,
                actual,
            )
            if mismatches >= CHECKSUM_ATTEMPTS:
                return None

    # -- PostgreSQL and S3 -------------------------------------------------------------------------

    async def _tenant(self, tenant_id: str) -> Tenant:
        try:
            tenant = await self._tenants.by_id(tenant_id)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise TransientError(f"tenant {tenant_id} could not be read from PostgreSQL: {exc!r}") from exc
        if tenant is None:
            raise PermanentError(f"no tenant {tenant_id!r}", reason="unknown_tenant")
        return tenant

    async def _stat(self, key: str) -> _Stored | None:
        try:
            obj = await self._storage.stat_object(self._bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NotFound"):
                return None
            raise TransientError(f"S3 stat of {self._bucket}/{key} failed: {exc}") from exc
        except (MinioException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise TransientError(f"S3 stat of {self._bucket}/{key} failed: {exc!r}") from exc
        # The response headers (case-insensitive); user metadata comes back as x-amz-meta-*.
        headers = CIMultiDict(obj.metadata or {})
        sha256 = headers.get(f"x-amz-meta-{SHA256_METADATA}")
        return _Stored(sha256=str(sha256).lower() if sha256 else None, size=obj.size or 0)

    async def _put(self, target: _Target, data: bytes, digest: str) -> None:
        await store_file(self._storage, self._bucket, target.key, data, target.mime, digest)

    async def _attached(self, message: InboundMessage, target: _Target, stored: _Stored, outcome: str) -> _Outcome:
        url = await presign(self._presigner, self._bucket, target.key, self._url_expiry)
        attachment = Attachment(
            url=url,
            key=target.key,
            mime=target.mime,
            media_type=MEDIA_TYPE_BY_WHATSAPP_TYPE[message.type],
            filename=target.filename,
            sha256=stored.sha256,
            size=stored.size,
        )
        return _Outcome(outcome, attachment=attachment)


async def store_file(storage: Minio, bucket: str, key: str, data: bytes, mime: str, sha256_hex: str) -> None:
    """Put a media file with its content type and its sha256 as object metadata (``SHA256_METADATA``,
    which a replay compares); ``TransientError`` when S3 fails."""
    try:
        await storage.put_object(
            bucket, key, io.BytesIO(data), len(data), content_type=mime, metadata={SHA256_METADATA: sha256_hex}
        )
    except (MinioException, aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise TransientError(f"S3 put of {bucket}/{key} failed: {exc!r}") from exc


async def presign(presigner: Minio, bucket: str, key: str, expiry: timedelta) -> str:
    """A presigned GET of ``bucket/key`` (computed locally: the client knows its region)."""
    try:
        url: str = await presigner.presigned_get_object(bucket, key, expires=expiry)
    except (MinioException, aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise TransientError(f"presigning {bucket}/{key} failed: {exc!r}") from exc
    return url


class ByteBudget:
    """Bounds the media bytes held in memory at once across a worker's downloads.

    Each download reserves the size Graph announced (or the cap when it announced none) before it
    starts and gives it back once the file is stored; a burst of 25 MB documents then waits here
    instead of exhausting the worker. A reservation larger than the whole budget is granted alone.
    """

    def __init__(self, total: int) -> None:
        self._total = total
        self._free = total
        self._changed = asyncio.Condition()

    @property
    def free(self) -> int:
        return self._free

    @contextlib.asynccontextmanager
    async def reserve(self, size: int) -> AsyncIterator[None]:
        size = min(size, self._total)
        async with self._changed:
            await self._changed.wait_for(lambda: self._free >= size)
            self._free -= size
        IN_MEMORY.inc(size)
        try:
            yield
        finally:
            IN_MEMORY.dec(size)
            async with self._changed:
                self._free += size
                self._changed.notify_all()


# -- pure helpers ----------------------------------------------------------------------------------


def media_key(tenant_id: str, whatsapp_type: str, timestamp: int, message_id: str, extension: str) -> str:
    """``{tenantId}/{mediaType}/{yyyy-MM-dd}/{messageId}.{ext}``, the day of ``timestamp`` in UTC."""
    day = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    return f"{tenant_id}/{whatsapp_type}/{day}/{_safe_message_id(message_id)}.{extension}"


def _safe_message_id(message_id: str) -> str:
    """A wamid as one path segment: base64's ``+`` and ``/`` become ``-`` and ``_`` (no collisions)."""
    return _UNSAFE_KEY_CHARS.sub("_", message_id.translate(_WAMID_TRANSLATION))


def extension_for(mime: str, filename: str | None = None) -> str:
    """The file extension: a document's own (``report.PDF`` → ``pdf``), else from the MIME type."""
    if filename:
        suffix = PurePosixPath(filename).suffix.lstrip(".").lower()
        if _SAFE_EXTENSION.match(suffix):
            return suffix
    base = mime.split(";", 1)[0].strip().lower()
    known = _EXTENSION_BY_MIME.get(base)
    if known:
        return known
    guessed = mimetypes.guess_extension(base, strict=False)
    return guessed.lstrip(".") if guessed else "bin"


def sha256_hex(value: object) -> str | None:
    """Meta's sha256 as lowercase hex, from hex or (standard or url-safe) base64; None if neither."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if _HEX_SHA256.fullmatch(text):
        return text.lower()
    altchars = b"-_" if "-" in text or "_" in text else None
    try:
        digest = base64.b64decode(text + "=" * (-len(text) % 4), altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        return None
    return digest.hex() if len(digest) == 32 else None


def _target(message: InboundMessage, mime: str) -> _Target:
    payload = _payload(message)
    document_name = _text(payload.get("filename")) if message.type == "document" else None
    if document_name:
        document_name = PurePosixPath(document_name.replace("\\", "/")).name or None
    extension = extension_for(mime, document_name)
    key = media_key(message.tenant_id, message.type, message.timestamp, message.wamid, extension)
    filename = document_name or f"{_safe_message_id(message.wamid)}.{extension}"
    return _Target(key=key, mime=mime, filename=filename)


def _reusable(stored: _Stored | None, expected: str | None) -> _Stored | None:
    """The object, if this stage stored it (it carries a sha256) and it matches what Meta says now."""
    if stored is None or stored.sha256 is None:
        return None
    return stored if expected is None or stored.sha256 == expected else None


def _payload(message: InboundMessage) -> dict[str, Any]:
    return message.payload if isinstance(message.payload, dict) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _meta_error_detail(errors: Sequence[MetaError]) -> str:
    error = next((e for e in errors if e.code in _MEDIA_ERROR_CODES), errors[0])
    detail = f"WhatsApp error {error.code}: {error.title or error.message or 'unknown error'}"
    return detail + (f" ({error.details})" if error.details else "")


def _unavailable(
    message: InboundMessage,
    reason: MediaUnavailableReason,
    detail: str,
    *,
    mime: str | None = None,
    size: int | None = None,
) -> _Outcome:
    payload = _payload(message)
    note = MediaUnavailable(
        reason=reason,
        detail=detail,
        mime=mime or _text(payload.get("mime_type")),
        filename=_text(payload.get("filename")),
        size=size,
    )
    return _Outcome(reason.value, unavailable=note)


def _too_large(message: InboundMessage, mime: str | None, size: int, limit: int) -> _Outcome:
    return _unavailable(
        message,
        MediaUnavailableReason.TOO_LARGE,
        f"Attachments can be at most {_human_bytes(limit)}.",
        mime=mime,
        size=size,
    )


def _human_bytes(size: int) -> str:
    mib = 1024 * 1024
    return f"{size / mib:g} MB" if size >= mib else f"{size} bytes"
