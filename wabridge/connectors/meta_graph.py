"""The Meta Graph API, media side: where a WhatsApp media id lives, and its bytes.

Per ``reference/whatsapp-cloud-api.md`` (Media):

1. ``GET {graph}/{version}/{media-id}?phone_number_id=…`` (Bearer) → ``{url, mime_type, sha256,
   file_size, id}``. ``phone_number_id`` makes Meta refuse a media id that was not sent to that
   business number, so one tenant's number never fetches another's media.
2. ``GET {url}`` with the same Bearer token → the bytes. The URL lives 5 minutes; a 404 there
   means "ask for a new URL" (``MediaUrlExpired``). The media id itself lives 7 days; after that
   Meta no longer knows it (``MediaGone``).

Errors are classified here, once, where they are understood (the error codes table of the
reference): a refused token is ``MetaAuthError`` (drop the cached token, retry once), rate limits,
5xx and timeouts are ``TransientError`` (``retry_after`` from ``Retry-After``), other 4xx are
``MediaRefused``. ``WhatsAppTokens`` holds each tenant's token in Redis, encrypted.

Sending (``POST {graph}/{version}/{phone_number_id}/messages``, reference: Sending, Throughput and
errors): 200 with ``messages[0].id`` means *accepted* (the wamid; delivery comes later as a status
webhook). A refusal is classified once by :func:`send_error`, the same table a ``failed`` status's
``errors[].code`` goes through: the token (``MetaAuthError``), the number's throughput
(``NumberRateLimited``: 4, 80007, 130429), this customer's pair rate (``PairRateLimited``:
131056), Meta's own trouble (``TransientError``: 1, 2, 131000, 131016, 131057, 5xx, 429, timeouts),
or a refusal no retry changes (``SendRefused`` with ``reason`` ``meta_<code>``; ``WindowClosed``
for 131047, which needs a template).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import orjson
import redis.asyncio as aioredis
from pydantic import SecretStr
from redis.exceptions import RedisError

from wabridge.errors import ConfigurationError, PermanentError, TenantHeld, TransientError, retry_after_seconds
from wabridge.settings import Settings
from wabridge.tenants import SecretBox, Tenant

log = logging.getLogger(__name__)

T = TypeVar("T")

# The seed's ``tenant:{id}:whatsapp:token`` lives a day; a rotated token is picked up on the first 401.
TOKEN_TTL_S = 24 * 3600

# Graph error codes (reference: "Throughput and errors").
_AUTH_CODES = frozenset({0, 190})
# Rate limits (4, 80007, 130429), transient / maintenance (2, 131000, 131016, 131057), and 1, Graph's
# "API Unknown", which Meta documents as a temporary failure to retry.
_RETRY_CODES = frozenset({1, 2, 4, 80007, 130429, 131000, 131016, 131057})
# "Object does not exist" (code 100, subcode 33): what Meta answers for a media id it no longer has.
_NO_SUCH_OBJECT_CODE = 100

_CHUNK_BYTES = 256 * 1024
# Pages of 100 templates read at most (Meta caps a WABA at a few thousand templates).
_TEMPLATE_PAGES = 50


class MetaAuthError(TransientError):
    """Meta refused the token (HTTP 401 or Graph code 190 / 0).

    The caller drops its cached token and retries once with the tenant's stored one; if that is
    refused too, this stays a ``TransientError``: the media is fine, our credentials are not, and
    the work must wait for an operator rather than tell the agent the file is gone.
    """


class MediaUrlExpired(TransientError):
    """The download URL answered 404 (it lives 5 minutes): ask for the media id again for a new URL."""


class MediaGone(PermanentError):
    """Meta no longer has this media id (older than its 7-day retention, or never existed)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="media_expired")


class MediaTooLarge(PermanentError):
    """The file is over the caller's byte cap; ``size`` is Meta's figure or the bytes seen so far."""

    def __init__(self, message: str, *, size: int) -> None:
        super().__init__(message, reason="media_too_large")
        self.size = size


class MediaRefused(PermanentError):
    """Any other 4xx from Meta: retrying the same request cannot help."""

    def __init__(self, message: str, *, status: int, code: int | None = None) -> None:
        super().__init__(message, reason=f"meta_http_{status}" if code is None else f"meta_error_{code}")
        self.status = status
        self.code = code


# --- sending ---------------------------------------------------------------------------------------

# The text body limit of a WhatsApp text message (characters).
TEXT_LIMIT = 4096

# Send refusals: the reference's table. What no retry changes is SendRefused; the rest wait.
_NUMBER_RATE_CODES = frozenset({4, 80007, 130429})
_PAIR_RATE_CODE = 131056
_WINDOW_CLOSED_CODE = 131047
_SEND_RETRY_CODES = frozenset({1, 2, 131000, 131016, 131057})


class NumberRateLimited(TransientError):
    """The business number is over its throughput (4, 80007, 130429): every send from it waits."""


class PairRateLimited(TransientError):
    """Too many messages to this one customer (131056): only this customer's sends wait."""


class SendRefused(PermanentError):
    """Meta refused the message for good (undeliverable, opted out, unsupported, a template error…)."""

    def __init__(self, message: str, *, code: int | None, reason: str | None = None) -> None:
        super().__init__(message, reason=reason or (f"meta_{code}" if code is not None else "meta_refused"))
        self.code = code


class WindowClosed(SendRefused):
    """131047: more than 24 hours since the customer's last message; only a template may be sent."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=_WINDOW_CLOSED_CODE, reason="window_closed")


def send_error(
    code: int | None, summary: str, *, http_status: int | None = None, retry_after: float | None = None
) -> Exception:
    """The error for a refused send: a Graph error code (a sync answer or a ``failed`` status's
    ``errors[].code``) and, for a sync answer, its HTTP status."""
    if http_status == 401 or code in _AUTH_CODES:
        return MetaAuthError(summary)
    if code in _NUMBER_RATE_CODES:
        return NumberRateLimited(summary, retry_after=retry_after)
    if code == _PAIR_RATE_CODE:
        return PairRateLimited(summary, retry_after=retry_after)
    if code == _WINDOW_CLOSED_CODE:
        return WindowClosed(summary)
    if code in _SEND_RETRY_CODES or (http_status is not None and (http_status in (408, 429) or http_status >= 500)):
        maybe_taken = http_status is not None and http_status >= 500
        return TransientError(summary, retry_after=retry_after, maybe_taken=maybe_taken)
    return SendRefused(summary, code=code)


@dataclass(frozen=True, slots=True)
class Accepted:
    """Meta took the message: its wamid (statuses for it come as webhooks) and the customer's wa_id."""

    wamid: str
    wa_id: str | None


def text_parts(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """``text`` in order, in parts of at most ``limit`` characters, each cut at the last paragraph,
    line or word break of its second half; inside a word only when it has none."""
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit]
        for separator in ("\n\n", "\n", " "):
            cut = window.rfind(separator)
            if cut >= limit // 2:
                break
        else:
            cut = limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest or not parts:
        parts.append(rest)
    return parts


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """Meta's answer for a media id. ``sha256`` as Meta wrote it: base64 or hex, both occur."""

    media_id: str
    url: str
    mime_type: str | None
    sha256: str | None
    file_size: int | None


class MetaGraphClient:
    """Media lookups and downloads over one shared aiohttp session (opened on first use)."""

    def __init__(
        self,
        *,
        graph_version: str,
        request_timeout_s: float = 10.0,
        download_timeout_s: float = 120.0,
        read_timeout_s: float = 30.0,
    ) -> None:
        self._graph_version = graph_version
        self._request_timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        # A 25 MB file on a slow link takes a while; stall detection is the per-read timeout.
        self._download_timeout = aiohttp.ClientTimeout(
            total=download_timeout_s, connect=request_timeout_s, sock_read=read_timeout_s
        )
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> MetaGraphClient:
        return cls(graph_version=settings.meta_graph_version)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(raise_for_status=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> MetaGraphClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def media_info(
        self, tenant: Tenant, media_id: str, token: SecretStr, *, phone_number_id: str | None = None
    ) -> MediaInfo:
        """Where the media id's bytes are now (a URL valid ~5 minutes), its type, hash and size."""
        url = f"{tenant.config.meta_graph_url.rstrip('/')}/{self._graph_version}/{quote(media_id, safe='')}"
        params = {"phone_number_id": phone_number_id} if phone_number_id else None
        raw = await self._get(url, params, token, object_id=media_id, what=f"media lookup of {media_id}")
        return _media_info(media_id, raw)

    async def _get(
        self, url: str, params: dict[str, str] | None, token: SecretStr, *, object_id: str, what: str
    ) -> bytes:
        """``GET`` a Graph object; its 200 body, else the error ``_graph_failure`` gives
        (``TransientError`` when Meta did not answer)."""
        try:
            async with self._client().get(
                url, params=params, headers=_bearer(token), timeout=self._request_timeout
            ) as response:
                raw = await response.read()
                if response.status != 200:
                    raise _graph_failure(response, raw, media_id=object_id)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"{what} failed: {exc!r}") from exc
        return raw

    async def download(self, url: str, token: SecretStr | None, max_bytes: int) -> bytes:
        """The file at a URL from ``media_info``; ``MediaTooLarge`` as soon as it passes ``max_bytes``.

        ``token`` None fetches without credentials: an agent's attachment at Genesys's own (signed)
        URL, which must never see a WhatsApp token."""
        headers = _bearer(token) if token is not None else {}
        try:
            async with self._client().get(url, headers=headers, timeout=self._download_timeout) as response:
                if response.status != 200:
                    raise _graph_failure(response, await response.read(), media_id=None)
                declared = response.content_length
                if declared is not None and declared > max_bytes:
                    raise MediaTooLarge(f"download is {declared} bytes, over {max_bytes}", size=declared)
                received = bytearray()
                async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
                    received += chunk
                    if len(received) > max_bytes:
                        raise MediaTooLarge(f"download passed {max_bytes} bytes; aborted", size=len(received))
                return bytes(received)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"media download failed: {exc!r}") from exc

    async def upload_media(
        self, tenant: Tenant, phone_number_id: str, token: SecretStr, data: bytes, mime: str, filename: str
    ) -> str:
        """``POST {graph}/{version}/{phone_number_id}/media`` (multipart: ``messaging_product``,
        ``type``, ``file``) → the media id a send uses (reference: Media, "Upload for sending").
        Refusals as for a send (:func:`send_error`): a 4xx no retry changes is ``SendRefused``."""
        base = f"{tenant.config.meta_graph_url.rstrip('/')}/{self._graph_version}"
        url = f"{base}/{quote(phone_number_id, safe='')}/media"
        form = aiohttp.FormData()
        form.add_field("messaging_product", "whatsapp")
        form.add_field("type", mime)
        form.add_field("file", data, filename=filename, content_type=mime)
        try:
            async with self._client().post(
                url, data=form, headers=_bearer(token), timeout=self._download_timeout
            ) as response:
                raw = await response.read()
                if response.status != 200:
                    raise _send_failure(phone_number_id, response, raw)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"media upload to {phone_number_id} failed: {exc!r}") from exc
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        media_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(media_id, str | int) or not str(media_id):
            raise TransientError(f"media upload to {phone_number_id} answered 200 without an id")
        return str(media_id)

    async def show_typing(self, tenant: Tenant, phone_number_id: str, token: SecretStr, wamid: str) -> None:
        """Mark the customer's message ``wamid`` read with the typing indicator (reference: Sending;
        WhatsApp shows it until the reply or for 25 s). Refusals as for a send (:func:`send_error`)."""
        body = {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": wamid,
            "typing_indicator": {"type": "text"},
        }
        await self._post_messages(tenant, phone_number_id, token, body, what="typing indicator")

    async def message_templates(self, tenant: Tenant, waba_id: str, token: SecretStr) -> list[dict[str, Any]]:
        """Every template of the WABA: ``GET {graph}/{version}/{waba-id}/message_templates``, page
        after page by Meta's ``after`` cursor (at most ``_TEMPLATE_PAGES`` pages of 100). The
        cursor goes on our own URL: a ``paging.next`` address is never followed as given."""
        base = f"{tenant.config.meta_graph_url.rstrip('/')}/{self._graph_version}"
        url = f"{base}/{quote(waba_id, safe='')}/message_templates"
        fields = "name,language,category,status,components"
        params = {"fields": fields, "limit": "100"}
        templates: list[dict[str, Any]] = []
        for _ in range(_TEMPLATE_PAGES):
            raw = await self._get(url, params, token, object_id=waba_id, what=f"template list of WABA {waba_id}")
            try:
                page = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise TransientError(f"template list of WABA {waba_id} is not JSON") from exc
            data = page.get("data") if isinstance(page, dict) else None
            templates += [entry for entry in data or [] if isinstance(entry, dict)]
            paging = page.get("paging") if isinstance(page, dict) else None
            cursors = paging.get("cursors") if isinstance(paging, dict) else None
            after = cursors.get("after") if isinstance(cursors, dict) else None
            if not isinstance(after, str) or not after or not (isinstance(paging, dict) and paging.get("next")):
                break
            params = {**params, "after": after}
        return templates

    async def send_message(
        self,
        tenant: Tenant,
        phone_number_id: str,
        token: SecretStr,
        message: dict[str, Any],
        *,
        marketing: bool = False,
    ) -> Accepted:
        """Send ``message`` (the part after ``messaging_product``: ``to``, ``type``, ``<type>``…) from
        the tenant's number; ``Accepted`` with the wamid, else the error :func:`send_error` gives.

        A timeout is a ``TransientError``: whether Meta took the message is then unknown, and the
        caller's bracket (tracked attempts) decides what a resend means. ``marketing``: a MARKETING
        template through the Marketing Messages API (``/marketing_messages``, same body and answer).
        """
        body = {"messaging_product": "whatsapp", "recipient_type": "individual", **message}
        endpoint = "marketing_messages" if marketing else "messages"
        raw = await self._post_messages(tenant, phone_number_id, token, body, what="send", endpoint=endpoint)
        return _accepted(phone_number_id, raw)

    async def _post_messages(
        self,
        tenant: Tenant,
        phone_number_id: str,
        token: SecretStr,
        body: dict[str, Any],
        *,
        what: str,
        endpoint: str = "messages",
    ) -> bytes:
        """``POST {graph}/{version}/{phone_number_id}/{endpoint}``; the 200 body, else the refusal
        :func:`send_error` gives (``TransientError`` when Meta did not answer)."""
        base = f"{tenant.config.meta_graph_url.rstrip('/')}/{self._graph_version}"
        url = f"{base}/{quote(phone_number_id, safe='')}/{endpoint}"
        try:
            async with self._client().post(
                url, data=orjson.dumps(body), headers={**_bearer(token), "Content-Type": "application/json"},
                timeout=self._request_timeout,
            ) as response:  # fmt: skip
                raw = await response.read()
                if response.status != 200:
                    raise _send_failure(phone_number_id, response, raw)
        except (aiohttp.ClientError, TimeoutError) as exc:
            maybe_taken = not isinstance(exc, aiohttp.ClientConnectorError)  # connected: Meta may have it
            raise TransientError(f"{what} from {phone_number_id} failed: {exc!r}", maybe_taken=maybe_taken) from exc
        return raw


def _send_failure(phone_number_id: str, response: aiohttp.ClientResponse, raw: bytes) -> Exception:
    error = _graph_error(raw)
    code = error.get("code") if isinstance(error.get("code"), int) else None
    summary = f"send from {phone_number_id}: HTTP {response.status}" + (
        f", Graph code {code}: {error.get('message')}" if code is not None else ""
    )
    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
    return send_error(code, summary, http_status=response.status, retry_after=retry_after)


def _accepted(phone_number_id: str, raw: bytes) -> Accepted:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    messages = body.get("messages") if isinstance(body, dict) else None
    first = messages[0] if isinstance(messages, list) and messages and isinstance(messages[0], dict) else {}
    if not isinstance(first.get("id"), str) or not first["id"]:
        # Taken or not is unknown: retried, and the caller's bracket counts the resend.
        raise TransientError(f"send from {phone_number_id} answered 200 without a message id")
    contacts = body.get("contacts") if isinstance(body, dict) else None
    contact = contacts[0] if isinstance(contacts, list) and contacts and isinstance(contacts[0], dict) else {}
    wa_id = contact.get("wa_id")
    return Accepted(wamid=first["id"], wa_id=wa_id if isinstance(wa_id, str) else None)


def _bearer(token: SecretStr) -> dict[str, str]:
    return {"Authorization": f"Bearer {token.get_secret_value()}"}


def _media_info(media_id: str, raw: bytes) -> MediaInfo:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("url"), str) or not body["url"]:
        raise MediaRefused(f"media lookup of {media_id} answered 200 without a URL", status=200)
    size = body.get("file_size")
    try:
        file_size = int(size) if size is not None else None  # Meta sends a string
    except (TypeError, ValueError):
        file_size = None
    return MediaInfo(
        media_id=str(body.get("id") or media_id),
        url=body["url"],
        mime_type=str(body["mime_type"]) if body.get("mime_type") else None,
        sha256=str(body["sha256"]) if body.get("sha256") else None,
        file_size=file_size,
    )


def _graph_failure(response: aiohttp.ClientResponse, raw: bytes, *, media_id: str | None) -> Exception:
    """The error for a non-200 answer; ``media_id`` is None for a download URL."""
    status = response.status
    error = _graph_error(raw)
    code = error.get("code") if isinstance(error.get("code"), int) else None
    what = f"media lookup of {media_id}" if media_id is not None else "media download"
    summary = f"{what}: HTTP {status}" + (f", Graph code {code}: {error.get('message')}" if code is not None else "")
    if status == 401 or code in _AUTH_CODES:
        return MetaAuthError(summary)
    if status in (408, 429) or status >= 500 or code in _RETRY_CODES:
        return TransientError(summary, retry_after=retry_after_seconds(response.headers.get("Retry-After")))
    if media_id is None and status in (404, 410):
        return MediaUrlExpired(summary)
    if media_id is not None and (status in (404, 410) or code == _NO_SUCH_OBJECT_CODE):
        return MediaGone(summary)
    return MediaRefused(summary, status=status, code=code)


def _graph_error(raw: bytes) -> dict[str, Any]:
    """``{"error": {message, type, code, error_subcode}}``, or {} when the body is not that."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


class WhatsAppTokens:
    """Each tenant's WhatsApp token: Redis ``tenant:{id}:whatsapp:token`` (a day), else its credentials.

    The cached copy is Fernet-encrypted like every credential at rest. Redis is a cache: when it is
    down the token comes from the tenant record (which the caller already has) and nothing stops.
    """

    def __init__(self, redis: aioredis.Redis, box: SecretBox, settings: Settings, ttl_s: int = TOKEN_TTL_S) -> None:
        self._redis = redis
        self._box = box
        self._settings = settings
        self._ttl_s = ttl_s

    def key(self, tenant_id: str) -> str:
        return self._settings.redis_key(f"tenant:{tenant_id}:whatsapp:token")

    async def get(self, tenant: Tenant) -> SecretStr:
        try:
            cached = await self._redis.get(self.key(tenant.id))
        except RedisError as exc:
            log.warning(
                "redis unavailable for the WhatsApp token of tenant %s, using its credentials: %s", tenant.id, exc
            )
            return tenant.secrets.meta_access_token
        if cached is not None:
            try:
                text = cached if isinstance(cached, str) else cached.decode("ascii")
                return SecretStr(self._box.decrypt(text))
            except (ConfigurationError, UnicodeDecodeError):
                log.warning("cached WhatsApp token of tenant %s cannot be decrypted; replacing it", tenant.id)
        token = tenant.secrets.meta_access_token
        try:
            await self._redis.set(self.key(tenant.id), self._box.encrypt(token.get_secret_value()), ex=self._ttl_s)
        except RedisError as exc:
            log.warning("redis unavailable, WhatsApp token of tenant %s not cached: %s", tenant.id, exc)
        return token

    async def using(self, tenant: Tenant, action: Callable[[SecretStr], Awaitable[T]]) -> T:
        """Run ``action`` with the tenant's token; once more with its stored one if Meta refuses the
        cached one. Refused again: ``TenantHeld`` (``whatsapp_token_refused``), for an operator."""
        token = await self.get(tenant)
        try:
            return await action(token)
        except MetaAuthError as exc:
            refused = exc
        await self.drop(tenant.id)
        fresh = await self.get(tenant)
        if fresh.get_secret_value() != token.get_secret_value():
            log.warning("Meta refused the cached WhatsApp token of tenant %s; retrying with its stored one", tenant.id)
            try:
                return await action(fresh)
            except MetaAuthError as exc:
                refused = exc
        raise TenantHeld(
            f"Meta refused the WhatsApp token of tenant {tenant.id} (store a valid one): {refused}",
            tenant_id=tenant.id,
            reason="whatsapp_token_refused",
        ) from refused

    async def drop(self, tenant_id: str) -> None:
        """Forget the cached token (Meta refused it); the next ``get`` reads the tenant's credentials."""
        try:
            await self._redis.delete(self.key(tenant_id))
        except RedisError as exc:
            log.warning("redis unavailable, refused WhatsApp token of tenant %s not dropped: %s", tenant_id, exc)
