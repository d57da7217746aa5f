"""An agent's attachment on its way to WhatsApp: fetched, kept, uploaded, sent by id.

Per the seed and ``reference/genesys-open-messaging.md`` (outbound webhook): the attachment is
downloaded from Genesys's URL right away (it is Genesys's, signed, and does not live long), kept in
the media-outbound bucket at ``{tenantId}/{mediaType}/{yyyy-MM-dd}/{uuid}.{ext}``, uploaded to
Meta (``POST /{phone_number_id}/media``) and sent by media id. When Meta refuses the upload, the
message is sent with a presigned link to the stored copy instead (24 hours: Meta fetches it when it
delivers, which can be hours later for a customer who is offline).

The object's uuid is derived from the Genesys message id and the part's index, so a retry or a
redelivery finds the stored copy and never fetches Genesys's URL twice (it may have expired).
The fetch is bounded: Genesys's 25 MB attachment cap. A photo over WhatsApp's 5 MB image cap (or a
video or audio over 16 MB) is sent as a document rather than refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from miniopy_async.api import Minio
from miniopy_async.error import MinioException, S3Error
from prometheus_client import Counter

from wabridge.connectors import s3
from wabridge.connectors.attachments import (
    UNAVAILABLE,
    AttachmentFetcher,
    AttachmentRefused,
    AttachmentTooLarge,
    AttachmentUnavailable,
    describe,
)
from wabridge.connectors.meta_graph import MetaGraphClient, SendRefused, WhatsAppTokens
from wabridge.errors import TransientError
from wabridge.media import GENESYS_ATTACHMENT_LIMIT, extension_for, media_key, presign, store_file
from wabridge.schemas.genesys import OutboundEvent, ReasonCode
from wabridge.settings import Settings
from wabridge.tenants import Tenant
from wabridge.transforms.outbound import CAPTIONED, Part, Unsendable, fitting_kind

log = logging.getLogger(__name__)

LINK_EXPIRY = timedelta(hours=24)
# Tries at Genesys's URL before the agent is told the attachment could not be fetched (~6 s).
FETCH_ATTEMPTS = 4
FETCH_BACKOFF_S = 1.0

ATTACHED = Counter(
    "wabridge_outbound_media_total", "Agent attachments prepared for WhatsApp, by how they are sent", ["how"]
)

# Fixed namespace for the objects' uuids (uuid5 of "genesys message id:part").
_NAMESPACE = uuid.UUID("6f1d3c1e-9a55-4b3e-8f0c-2d7f6e0a4b21")


class AgentMedia:
    """Fetch, store and upload one attachment; one per worker (the stage's clients are shared)."""

    def __init__(
        self,
        settings: Settings,
        *,
        graph: MetaGraphClient,
        tokens: WhatsAppTokens,
        storage: Minio,
        presigner: Minio,
        fetcher: AttachmentFetcher,
        fetch_backoff_s: float = FETCH_BACKOFF_S,
    ) -> None:
        self._fetch_backoff_s = fetch_backoff_s
        self._fetcher = fetcher
        self._graph = graph
        self._tokens = tokens
        self._storage = storage
        self._presigner = presigner
        self._bucket = settings.s3_bucket_media_outbound

    async def attach(
        self, tenant: Tenant, phone_number_id: str, outbound: OutboundEvent, index: int, part: Part
    ) -> dict[str, Any]:
        """``part.message`` with its file in place (``{id}``, else ``{link}``); ``TransientError`` to retry.
        A template's media header gets the file in its header parameter, as the kind it declares."""
        attachment = part.attachment
        assert attachment is not None
        kind = part.header_kind or str(part.message["type"])
        mime = (attachment.mime or "application/octet-stream").split(";", 1)[0].strip().lower()
        name = uuid.uuid5(_NAMESPACE, f"{tenant.id}:{outbound.id}:{index}").hex
        key = media_key(tenant.id, kind, _day_of(outbound), name, extension_for(mime, attachment.filename))
        data = await self._stored(key)
        if data is None:
            data = await self._fetch(tenant, attachment.url)
            await store_file(self._storage, self._bucket, key, data, mime, hashlib.sha256(data).hexdigest())
        fitted = fitting_kind(kind, len(data))
        if fitted == "document" and len(data) > GENESYS_ATTACHMENT_LIMIT:
            raise Unsendable(f"the attachment is {len(data)} bytes", code=ReasonCode.INVALID_MEDIA_CONTENT_LENGTH)
        if part.header_kind is not None:
            if fitted != kind:  # a template's header is the kind the template declares, never another
                raise Unsendable(
                    f"the template's {kind} header is {len(data)} bytes, over WhatsApp's cap for a {kind}",
                    code=ReasonCode.INVALID_MEDIA_CONTENT_LENGTH,
                )
            return _with_header_media(
                part.message, kind, await self._media_ref(tenant, phone_number_id, key, data, mime, attachment.filename)
            )
        payload = dict(part.message[kind])
        if fitted != kind:
            if "caption" in payload and fitted not in CAPTIONED:
                payload.pop("caption")
            payload.setdefault("filename", attachment.filename or f"{name}.{extension_for(mime)}")
        payload.update(await self._media_ref(tenant, phone_number_id, key, data, mime, attachment.filename))
        return {"type": fitted, fitted: payload}

    async def _media_ref(
        self, tenant: Tenant, phone_number_id: str, key: str, data: bytes, mime: str, filename: str | None
    ) -> dict[str, str]:
        """``{"id": …}`` of the file uploaded to Meta, else ``{"link": …}`` to the stored copy."""
        name = filename or key.rsplit("/", 1)[-1]
        try:
            media_id = await self._tokens.using(
                tenant,
                lambda token: self._graph.upload_media(tenant, phone_number_id, token, data, mime, name),
            )
        except SendRefused:
            # Meta would not take the upload (type or size it refuses here): the seed's fallback, a link.
            ATTACHED.labels("link").inc()
            return {"link": await presign(self._presigner, self._bucket, key, LINK_EXPIRY)}
        ATTACHED.labels("uploaded").inc()
        return {"id": media_id}

    async def _fetch(self, tenant: Tenant, url: str) -> bytes:
        """The file at Genesys's URL, from an allowed Genesys origin only (``connectors.attachments``).
        A few tries over a few seconds: the URL is short-lived, and an attachment that cannot be
        fetched must not hold the customer's later messages for long. The agent is told only that
        the host is not allowed or the attachment unavailable, never what the peer answered."""
        for attempt in range(1, FETCH_ATTEMPTS + 1):
            try:
                return await self._fetcher.fetch(tenant, url, GENESYS_ATTACHMENT_LIMIT)
            except AttachmentTooLarge as exc:
                raise Unsendable(str(exc), code=ReasonCode.INVALID_MEDIA_CONTENT_LENGTH) from exc
            except (AttachmentRefused, AttachmentUnavailable) as exc:
                log.warning("tenant %s: agent attachment not fetched (%s): %s", tenant.id, exc, describe(exc))
                raise Unsendable(str(exc), code=ReasonCode.GENERAL_ERROR) from exc
            except TransientError as exc:
                if attempt == FETCH_ATTEMPTS:
                    log.warning("tenant %s: agent attachment unreachable: %s", tenant.id, exc)
                    raise Unsendable(UNAVAILABLE, code=ReasonCode.GENERAL_ERROR) from exc
                await asyncio.sleep(self._fetch_backoff_s * attempt)
        raise AssertionError("unreachable")

    async def _stored(self, key: str) -> bytes | None:
        try:
            return await s3.get_bytes(self._storage, self._bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NotFound"):
                return None
            raise TransientError(f"S3 get of {self._bucket}/{key} failed: {exc}") from exc
        except (MinioException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise TransientError(f"S3 get of {self._bucket}/{key} failed: {exc!r}") from exc


def _with_header_media(message: dict[str, Any], kind: str, ref: dict[str, str]) -> dict[str, Any]:
    """The template send with the file in its header parameter (``{"type": kind, kind: ref}``)."""
    template = dict(message["template"])
    components = []
    for component in template.get("components", []):
        if component.get("type") == "header":
            component = {**component, "parameters": [{"type": kind, kind: ref}]}
        components.append(component)
    template["components"] = components
    return {**message, "template": template}


def _day_of(outbound: OutboundEvent) -> int:
    """The agent message's time (``channel.time``) as unix seconds, for the key's day; else now."""
    if outbound.time:
        try:
            return int(datetime.fromisoformat(outbound.time.replace("Z", "+00:00")).timestamp())
        except ValueError:
            pass
    return int(time.time())
