"""The Meta WhatsApp Cloud API simulator: Graph API (media, messages, uploads), status webhooks and
the customers' inbound webhooks. Faithful to ``reference/whatsapp-cloud-api.md``.

    async with MetaSimulator(config).serve(port=0) as meta:
        meta.url  # the Graph API base: f"{meta.url}/v26.0/{phone_number_id}/messages"
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from wabridge.simulators.customer import (
    MEDIA_KINDS,
    InboundSpec,
    JsonStyle,
    MediaRef,
    build_message,
    build_webhook,
    encode_webhook,
    new_wamid,
    post_webhook,
    sha256_b64,
)
from wabridge.simulators.faults import RateLimiter
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
from wabridge.simulators.meta_admin import MetaAdmin
from wabridge.simulators.meta_config import MetaPhoneNumber, MetaSimConfig
from wabridge.simulators.meta_templates import MetaTemplate, TemplateRefused, check_template_send

logger = logging.getLogger("wabridge.simulators.meta")

GRAPH_VERSION = r"{version:v\d+\.\d+}"
SEND_TYPES = frozenset(
    {
        "text",
        "image",
        "video",
        "audio",
        "document",
        "sticker",
        "template",
        "interactive",
        "reaction",
        "location",
        "contacts",
    }
)
_MEDIA_SEND_TYPES = frozenset({"image", "video", "audio", "document", "sticker"})

# A business-scoped user id: the country code, a period, then letters and digits (a parent BSUID
# adds ``ENT.``), e.g. ``US.13491208655302741918`` (Meta, "Business-scoped user IDs"). A phone
# number (``wa_id``) has digits only.
_BSUID = re.compile(r"^[A-Z]{2}\.[A-Za-z0-9.]{1,128}$")


def is_bsuid(value: str) -> bool:
    return bool(_BSUID.match(value))


# Status failures Meta reports in the webhook (reference: error codes).
_WINDOW_CLOSED = {
    "code": 131047,
    "title": "Re-engagement message",
    "message": "Re-engagement message",
    "error_data": {
        "details": "Message failed to send because more than 24 hours have passed since the "
        "customer last replied to this number."
    },
}
_RATE_LIMITED = {
    "code": 130429,
    "title": "Rate limit hit",
    "message": "Rate limit hit",
    "error_data": {"details": "Cloud API message throughput has been reached."},
}
_OPTED_OUT = {
    "code": 131050,
    "title": "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages "
    "on WhatsApp from your business.",
    "message": "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages "
    "on WhatsApp from your business.",
    "error_data": {"details": "The recipient opted out of marketing messages."},
}
# A BSUID in ``to`` is not delivered (Meta, "Business-scoped user IDs": sends to a BSUID use
# ``recipient``); Meta accepts the request and the message fails as undeliverable.
_UNDELIVERABLE = {
    "code": 131026,
    "title": "Message undeliverable",
    "message": "Message undeliverable",
    "error_data": {"details": "Message failed to send because the recipient in 'to' is not a phone number."},
}
_MEDIA_DOWNLOAD_FAILED = {
    "code": 131053,
    "title": "Media upload error",
    "message": "Media upload error",
    "error_data": {"details": "Downloading media from the link failed."},
}


def graph_error(
    status: int, message: str, code: int, *, subcode: int | None = None, error_type: str = "OAuthException"
) -> web.Response:
    """An error in the Graph API's shape (``{"error": {message, type, code, error_subcode, fbtrace_id}}``)."""
    error: dict[str, Any] = {
        "message": message,
        "type": error_type,
        "code": code,
        "fbtrace_id": secrets.token_urlsafe(16),
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return json_response({"error": error}, status=status)


def _no_such_object(object_id: str, verb: str = "get") -> web.Response:
    return graph_error(
        400,
        f"Unsupported {verb} request. Object with ID '{object_id}' does not exist, cannot be loaded due to "
        "missing permissions, or does not support this operation.",
        100,
        subcode=33,
        error_type="GraphMethodException",
    )


def _invalid_token() -> web.Response:
    return graph_error(401, "Invalid OAuth access token - Cannot parse access token", 190)


@dataclass(slots=True)
class StoredMedia:
    media_id: str
    owner_phone_number_id: str
    data: bytes
    mime_type: str
    sha256_b64: str
    uploaded_at: float
    failing_downloads: int = 0  # fault: the next N downloads answer 404
    corrupt_downloads: int = 0  # fault: the next N downloads serve damaged bytes (a bad transfer)


@dataclass(slots=True)
class SentMessage:
    """A message the bridge sent through ``/messages`` and the statuses Meta reported for it."""

    wamid: str
    phone_number_id: str
    to: str  # the customer as addressed: a phone number (``to``) or a BSUID (``recipient``)
    type: str
    body: dict[str, Any]
    accepted_at: str
    statuses: list[dict[str, Any]] = field(default_factory=list)
    addressed_by: str = "to"  # which field named the customer: to | recipient
    endpoint: str = "messages"  # or marketing_messages (the Marketing Messages API)

    @property
    def delivered(self) -> bool:
        return any(status["status"] == "delivered" for status in self.statuses)


@dataclass(slots=True)
class WebhookDelivery:
    """One webhook POST the simulator made (an inbound message batch or a status)."""

    kind: str  # inbound | status
    phone_number_id: str
    url: str
    body_bytes: int
    attempts: list[int | None] = field(default_factory=list)
    sent_at: str = ""


class MetaSimulator:
    """The WhatsApp Cloud API for any number of business phone numbers, per-process state."""

    def __init__(
        self, config: MetaSimConfig | None = None, *, seed: int | None = None, max_logged_requests: int = 100_000
    ) -> None:
        self.config = config or MetaSimConfig()
        self.requests = RequestLog(max_entries=max_logged_requests)
        self.url = ""
        self._media: dict[str, StoredMedia] = {}
        # Faults for the next media a customer sends to a number: (404s, corrupted downloads).
        self._next_media_faults: dict[str, tuple[int, int]] = {}
        # phone_number_id -> refusals its next sends get: (HTTP status, Graph code, Retry-After)
        self._send_faults: dict[str, list[tuple[int, int, str | None]]] = {}
        self._upload_faults: dict[str, list[tuple[int, int]]] = {}  # phone_number_id -> (HTTP status, code)
        self._media_urls: dict[str, tuple[str, float]] = {}  # url key -> (media id, expires at)
        self._windows: dict[tuple[str, str], float] = {}  # (phone_number_id, wa_id) -> last inbound
        self._sent: dict[str, SentMessage] = {}
        self._read_marks: list[dict[str, Any]] = []
        self._opted_out: set[tuple[str, str]] = set()  # (phone_number_id, wa_id): marketing stopped
        # (phone_number_id, phone or BSUID) -> (phone, BSUID): one customer under either address.
        self._customers: dict[tuple[str, str], tuple[str | None, str | None]] = {}
        self._webhooks: list[WebhookDelivery] = []
        self._send_rate = RateLimiter(window_s=1.0)
        self._rng = random.Random(seed)
        self._tasks = BackgroundTasks()
        self._session: aiohttp.ClientSession | None = None

    # --- configuration ------------------------------------------------------------------------

    @property
    def phone_numbers(self) -> dict[str, MetaPhoneNumber]:
        return {number.phone_number_id: number for number in self.config.phone_numbers}

    def configure(self, config: MetaSimConfig) -> None:
        self.config = config

    def update(self, **changes: Any) -> None:
        """Change top-level settings, e.g. ``media_url_ttl_s=0.2`` or ``read_after_s=None``."""
        self.config = MetaSimConfig.model_validate({**dict(self.config), **changes})

    def upsert_phone_number(self, number: MetaPhoneNumber) -> None:
        others = [n for n in self.config.phone_numbers if n.phone_number_id != number.phone_number_id]
        self.update(phone_numbers=[*others, number])

    def remove_phone_number(self, phone_number_id: str) -> None:
        self.update(phone_numbers=[n for n in self.config.phone_numbers if n.phone_number_id != phone_number_id])

    def open_service_window(self, phone_number_id: str, wa_id: str, at: float | None = None) -> None:
        """Record the customer's last message (opens the 24-hour window from ``at``, default now).
        ``wa_id`` may be the customer's phone number or BSUID; both of a known customer open."""
        for address in self._addresses(phone_number_id, wa_id):
            self._windows[(phone_number_id, address)] = time.time() if at is None else at

    def know_customer(self, phone_number_id: str, wa_id: str | None, user_id: str | None) -> None:
        """The customer's phone number and BSUID, as Meta knows them: statuses of sends to either
        name both, and the window and opt-outs are the customer's, whichever address a send uses.
        ``wa_id`` None: a username-only customer whose phone Meta does not share."""
        if user_id is not None:
            self._customers[(phone_number_id, user_id)] = (wa_id, user_id)
        if wa_id is not None:
            self._customers[(phone_number_id, wa_id)] = (wa_id, user_id)

    def _identity_of(self, phone_number_id: str, address: str) -> tuple[str | None, str | None]:
        """(phone, BSUID) of the customer at ``address``, as far as the simulator knows them."""
        known = self._customers.get((phone_number_id, address))
        if known is not None:
            return known
        return (None, address) if is_bsuid(address) else (address, None)

    def _addresses(self, phone_number_id: str, address: str) -> set[str]:
        phone, user_id = self._identity_of(phone_number_id, address)
        return {a for a in (phone, user_id, address) if a}

    def opt_out(self, phone_number_id: str, wa_id: str) -> None:
        """The customer stops marketing messages from this number: marketing template sends fail with 131050."""
        self._opted_out.update((phone_number_id, address) for address in self._addresses(phone_number_id, wa_id))

    def fail_next_downloads(self, media_id: str, count: int = 1) -> None:
        """Fault: the next ``count`` downloads of this media's URL answer 404 (as an expired URL does)."""
        self._media[media_id].failing_downloads = count

    def fault_next_media(self, phone_number_id: str, *, failing_downloads: int = 0, corrupt_downloads: int = 0) -> None:
        """Fault for the next media sent to this number (its id does not exist yet): 404s, damaged bytes."""
        self._next_media_faults[phone_number_id] = (failing_downloads, corrupt_downloads)

    def fault_next_sends(
        self, phone_number_id: str, status: int, code: int, *, count: int = 1, retry_after: str | None = None
    ) -> None:
        """Fault: the number's next ``count`` sends are refused at once with this Graph error (a
        rate limit answered synchronously, a 5xx, an invalid parameter…)."""
        self._send_faults.setdefault(phone_number_id, []).extend([(status, code, retry_after)] * count)

    def fault_next_uploads(self, phone_number_id: str, status: int, code: int, *, count: int = 1) -> None:
        """Fault: the number's next ``count`` media uploads are refused with this Graph error."""
        self._upload_faults.setdefault(phone_number_id, []).extend([(status, code)] * count)

    def store_media(self, phone_number_id: str, data: bytes, mime_type: str, filename: str = "") -> MediaRef:
        """Hold media as if the customer had sent it to this number; the id works with the Graph API."""
        media_id = str(self._rng.randrange(10**15, 10**16))
        digest = sha256_b64(data)
        failing, corrupt = self._next_media_faults.pop(phone_number_id, (0, 0))
        self._media[media_id] = StoredMedia(
            media_id, phone_number_id, data, mime_type, digest, time.time(), failing, corrupt
        )
        return MediaRef(id=media_id, mime_type=mime_type, sha256_b64=digest, filename=filename)

    # --- read-back for tests ------------------------------------------------------------------

    def sent_messages(self, phone_number_id: str | None = None) -> list[SentMessage]:
        return [m for m in self._sent.values() if phone_number_id in (None, m.phone_number_id)]

    def media(self, media_id: str) -> StoredMedia | None:
        """Media the simulator holds (a customer's, or one the bridge uploaded)."""
        return self._media.get(media_id)

    def read_marks(self, phone_number_id: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self._read_marks if phone_number_id in (None, m["phone_number_id"])]

    def webhook_deliveries(self, phone_number_id: str | None = None) -> list[WebhookDelivery]:
        return [w for w in self._webhooks if phone_number_id in (None, w.phone_number_id)]

    # --- serving ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[request_log_middleware(self.requests, logger)], client_max_size=110 * 1024 * 1024
        )
        app.cleanup_ctx.append(self._client_session)
        app.router.add_get("/whatsapp_business/attachments/", self._download_media)
        app.router.add_post(f"/{GRAPH_VERSION}/{{phone_number_id}}/messages", self._send_message)
        app.router.add_post(f"/{GRAPH_VERSION}/{{phone_number_id}}/marketing_messages", self._send_marketing)
        app.router.add_get(f"/{GRAPH_VERSION}/{{waba_id}}/message_templates", self._list_templates)
        app.router.add_post(f"/{GRAPH_VERSION}/{{phone_number_id}}/media", self._upload_media)
        app.router.add_get(f"/{GRAPH_VERSION}/{{media_id}}", self._get_media)
        MetaAdmin(self).add_routes(app)
        app.router.add_get("/healthz", _healthz)
        add_inspection_routes(app, self.requests, tag_query="phone_number_id")
        return app

    @asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[MetaSimulator]:
        async with serve_app(self.app(), host, port) as url:
            self.url = url
            yield self

    async def _client_session(self, app: web.Application) -> AsyncIterator[None]:
        self._session = aiohttp.ClientSession()
        yield
        await self._tasks.cancel_all()
        await self._session.close()

    def _authorized_numbers(self, request: web.Request) -> set[str] | None:
        """The phone numbers the Bearer token may act for; None when the token is missing or unknown."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        numbers = {
            n.phone_number_id
            for n in self.config.phone_numbers
            if secrets.compare_digest(n.access_token.get_secret_value().encode(), token.encode())
        }
        return numbers or None

    # --- media --------------------------------------------------------------------------------

    async def _get_media(self, request: web.Request) -> web.Response:
        media_id = request.match_info["media_id"]
        numbers = self._authorized_numbers(request)
        if numbers is None:
            return _invalid_token()
        media = self._media.get(media_id)
        asked_for = request.query.get("phone_number_id")
        if (
            media is None
            or media.owner_phone_number_id not in numbers
            or (asked_for is not None and asked_for != media.owner_phone_number_id)
        ):
            return _no_such_object(media_id)
        request[TAG_KEY] = media.owner_phone_number_id
        url_key = secrets.token_urlsafe(24)
        self._media_urls[url_key] = (media_id, time.monotonic() + self.config.media_url_ttl_s)
        return json_response(
            {
                "messaging_product": "whatsapp",
                "url": f"{self.url}/whatsapp_business/attachments/?mid={media_id}&hash={url_key}",
                "mime_type": media.mime_type,
                "sha256": media.sha256_b64,
                "file_size": str(len(media.data)),
                "id": media_id,
            }
        )

    async def _download_media(self, request: web.Request) -> web.Response:
        issued = self._media_urls.get(request.query.get("hash", ""))
        if issued is None:
            return web.Response(status=404, text="Not Found")
        media = self._media[issued[0]]
        request[TAG_KEY] = media.owner_phone_number_id
        numbers = self._authorized_numbers(request)
        if numbers is None:
            return _invalid_token()
        if media.owner_phone_number_id not in numbers:
            return web.Response(status=403, text="Forbidden")
        if time.monotonic() >= issued[1]:
            return web.Response(status=404, text="URL expired")
        if media.failing_downloads > 0:
            media.failing_downloads -= 1
            return web.Response(status=404, text="Not Found")
        if media.corrupt_downloads > 0:
            media.corrupt_downloads -= 1
            damaged = bytes([media.data[0] ^ 0xFF]) + media.data[1:] if media.data else b"\x00"
            return web.Response(body=damaged, content_type=media.mime_type)
        return web.Response(body=media.data, content_type=media.mime_type)

    async def _upload_media(self, request: web.Request) -> web.Response:
        phone_number_id = request.match_info["phone_number_id"]
        request[TAG_KEY] = phone_number_id
        numbers = self._authorized_numbers(request)
        if numbers is None:
            return _invalid_token()
        if phone_number_id not in numbers:
            return _no_such_object(phone_number_id, "post")
        if self._upload_faults.get(phone_number_id):
            status, code = self._upload_faults[phone_number_id].pop(0)
            return graph_error(status, f"(#{code}) upload refused by a fault of the simulator", code)
        if not request.content_type.startswith("multipart/"):
            return graph_error(400, "(#100) The parameter file is required.", 100, error_type="OAuthException")
        form = await request.post()
        upload = form.get("file")
        if form.get("messaging_product") != "whatsapp" or not isinstance(upload, web.FileField):
            return graph_error(400, "(#100) The parameters messaging_product and file are required.", 100)
        mime_type = str(form.get("type") or upload.content_type)
        ref = self.store_media(phone_number_id, upload.file.read(), mime_type, upload.filename)
        return json_response({"id": ref.id})

    # --- sending ------------------------------------------------------------------------------

    async def _send_marketing(self, request: web.Request) -> web.Response:
        """The Marketing Messages API (``POST /{phone-number-id}/marketing_messages``): MARKETING
        templates only, otherwise as ``/messages``."""
        return await self._send_message(request, marketing=True)

    async def _list_templates(self, request: web.Request) -> web.Response:
        """``GET /{waba-id}/message_templates``: the WABA's templates, ``limit`` a page, with
        Meta's cursor paging (``after``)."""
        waba_id = request.match_info["waba_id"]
        numbers = self._authorized_numbers(request)
        if numbers is None:
            return _invalid_token()
        if not any(n.waba_id == waba_id and n.phone_number_id in numbers for n in self.config.phone_numbers):
            return _no_such_object(waba_id)
        templates = [t for t in self.config.templates if t.waba_id == waba_id]
        try:
            limit = max(1, min(int(request.query.get("limit", "25")), 100))
            start = int(request.query.get("after") or 0)
        except ValueError:
            return graph_error(400, "(#100) Invalid parameter", 100)
        page = templates[start : start + limit]
        body: dict[str, Any] = {"data": [t.listed() for t in page], "paging": {"cursors": {"before": str(start)}}}
        if start + limit < len(templates):
            body["paging"]["cursors"]["after"] = str(start + limit)
            body["paging"]["next"] = str(request.url.update_query({"after": str(start + limit)}))
        return json_response(body)

    def upsert_template(self, template: MetaTemplate) -> None:
        """Add or replace a template (WABA, name, language) in the registry."""
        others = [
            t
            for t in self.config.templates
            if (t.waba_id, t.name, t.language) != (template.waba_id, template.name, template.language)
        ]
        self.update(templates=[*others, template])

    async def change_template(
        self, waba_id: str, name: str, language: str, *, status: str | None = None, category: str | None = None
    ) -> None:
        """Meta changes a template's status (approved, paused, disabled…) or category, and tells the
        WABA's webhook: ``message_template_status_update`` (``event``) or ``template_category_update``
        (``previous_category``, ``new_category``), as Meta's "Template webhooks" pages show them."""
        [template] = [t for t in self.config.templates if (t.waba_id, t.name, t.language) == (waba_id, name, language)]
        updated = template.model_copy(update={k: v for k, v in (("status", status), ("category", category)) if v})
        self.upsert_template(updated)
        number = next(n for n in self.config.phone_numbers if n.waba_id == waba_id)
        common = {
            "message_template_id": int(template.id),
            "message_template_name": name,
            "message_template_language": language,
        }
        if status is not None:
            field, value = "message_template_status_update", {"event": status, **common, "reason": None}
        else:
            field = "template_category_update"
            value = {**common, "previous_category": template.category, "new_category": category}
        payload = {
            "object": "whatsapp_business_account",
            "entry": [{"id": waba_id, "time": int(time.time()), "changes": [{"value": value, "field": field}]}],
        }
        await self._post_webhook(number, "template", encode_webhook(payload), number.webhook_url)

    def _template_refusal(self, number: MetaPhoneNumber, to: str, body: dict[str, Any]) -> web.Response | None:
        """Meta's synchronous refusal of a template send, if any (``meta_templates``)."""
        if body.get("type") != "template":
            return None
        try:
            check_template_send(
                self.config.templates, number.waba_id, body["template"], to_bsuid=is_bsuid(to), opted_out=False
            )
        except TemplateRefused as refused:
            return graph_error(400, refused.message, refused.code)
        return None

    def _template_category(self, number: MetaPhoneNumber, body: dict[str, Any]) -> str | None:
        template = body.get("template") if body.get("type") == "template" else None
        if not isinstance(template, dict):
            return None
        language = template.get("language")
        code = language.get("code") if isinstance(language, dict) else None
        found = next(
            (
                t
                for t in self.config.templates
                if t.waba_id == number.waba_id and t.name == template.get("name") and t.language == code
            ),
            None,
        )
        return found.category if found else None

    async def _send_message(self, request: web.Request, *, marketing: bool = False) -> web.Response:
        phone_number_id = request.match_info["phone_number_id"]
        request[TAG_KEY] = phone_number_id
        numbers = self._authorized_numbers(request)
        if numbers is None:
            return _invalid_token()
        number = self.phone_numbers.get(phone_number_id)
        if number is None or phone_number_id not in numbers:
            return _no_such_object(phone_number_id, "post")
        if self._send_faults.get(phone_number_id):
            status, code, retry_after = self._send_faults[phone_number_id].pop(0)
            refused = graph_error(status, f"(#{code}) refused by a fault of the simulator", code)
            if retry_after is not None:
                refused.headers["Retry-After"] = retry_after
            return refused
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return graph_error(400, "(#100) Invalid JSON", 100)
        if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
            return graph_error(400, "(#100) The parameter messaging_product is required.", 100)
        if body.get("status") == "read":
            return self._mark_read(phone_number_id, body)
        problem = self._send_problem(phone_number_id, body)
        if problem is not None:
            return graph_error(400, f"(#100) {problem}", 100)
        if marketing and self._template_category(number, body) != "MARKETING":
            return graph_error(400, "(#100) The Marketing Messages API sends MARKETING templates only.", 100)
        # ``to`` wins when both are present (Meta, "Business-scoped user IDs").
        if body.get("to"):
            raw_to = str(body["to"])
            to = raw_to if is_bsuid(raw_to) else "".join(ch for ch in raw_to if ch.isdigit())
            addressed_by, contact = "to", {"input": raw_to, "wa_id": to}
        else:
            to, addressed_by = str(body["recipient"]), "recipient"
            contact = {"input": to, "user_id": to}
        refusal = self._template_refusal(number, to, body)
        if refusal is not None:
            return refusal
        wamid = new_wamid()
        sent = SentMessage(
            wamid, phone_number_id, to, body["type"], body, utc_now_iso(), addressed_by=addressed_by,
            endpoint="marketing_messages" if marketing else "messages",
        )  # fmt: skip
        self._sent[wamid] = sent
        # The number's throughput is counted as the request arrives, not when the task below runs.
        over_rate = self._send_rate.acquire(number.phone_number_id, number.messages_per_second) is not None
        self._tasks.spawn(self._report_statuses(number, sent, over_rate))
        return json_response({"messaging_product": "whatsapp", "contacts": [contact], "messages": [{"id": wamid}]})

    def _send_problem(self, phone_number_id: str, body: dict[str, Any]) -> str | None:
        kind = body.get("type", "text")
        if not body.get("to") and not body.get("recipient"):
            return "The parameter to or recipient is required."
        if not body.get("to") and not is_bsuid(str(body["recipient"])):
            return "The parameter recipient must be a business-scoped user ID."
        if kind not in SEND_TYPES:
            return f"Param type must be one of {sorted(SEND_TYPES)}"
        payload = body.get(kind)
        if not isinstance(payload, dict):
            return f"The parameter {kind} is required."
        if kind == "text" and not isinstance(payload.get("body"), str):
            return "The parameter text['body'] is required."
        if kind in _MEDIA_SEND_TYPES:
            if "id" not in payload and "link" not in payload:
                return f"Param {kind} must contain either id or link."
            media = self._media.get(str(payload.get("id"))) if "id" in payload else None
            if "id" in payload and (media is None or media.owner_phone_number_id != phone_number_id):
                return f"Param {kind}['id'] is not a valid whatsapp business account media attachment ID"
        if kind == "template" and (not payload.get("name") or not isinstance(payload.get("language"), dict)):
            return "The parameters template['name'] and template['language'] are required."
        if kind == "interactive":
            return interactive_problem(payload)
        return None

    def _mark_read(self, phone_number_id: str, body: dict[str, Any]) -> web.Response:
        if not body.get("message_id"):
            return graph_error(400, "(#100) The parameter message_id is required.", 100)
        self._read_marks.append(
            {
                "phone_number_id": phone_number_id,
                "message_id": body["message_id"],
                "typing_indicator": body.get("typing_indicator"),
                "at": utc_now_iso(),
            }
        )
        return json_response({"success": True})

    async def _failure_for(self, number: MetaPhoneNumber, sent: SentMessage, over_rate: bool) -> dict[str, Any] | None:
        """Why Meta would fail this accepted message, decided as Meta does, after accepting it."""
        if over_rate:
            return _RATE_LIMITED
        if sent.addressed_by == "to" and is_bsuid(sent.to):
            return _UNDELIVERABLE
        marketing = self._template_category(number, sent.body) == "MARKETING"
        if marketing and (number.phone_number_id, sent.to) in self._opted_out:
            return _OPTED_OUT
        if number.enforce_service_window and sent.type != "template":
            last_inbound = self._windows.get((number.phone_number_id, sent.to))
            if last_inbound is None or time.time() - last_inbound > self.config.service_window_s:
                return _WINDOW_CLOSED
        link = sent.body.get(sent.type, {}).get("link") if sent.type in _MEDIA_SEND_TYPES else None
        if link is not None and not await self._link_reachable(link):
            return _MEDIA_DOWNLOAD_FAILED
        return None

    async def _link_reachable(self, link: str) -> bool:
        assert self._session is not None
        try:
            async with self._session.get(link, timeout=aiohttp.ClientTimeout(total=10)) as response:
                await response.read()
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False

    async def _report_statuses(self, number: MetaPhoneNumber, sent: SentMessage, over_rate: bool) -> None:
        # The rate window is counted when the send arrives, not when the webhook goes out.
        failure = await self._failure_for(number, sent, over_rate)
        if failure is not None:
            plan: list[tuple[str, float, dict[str, Any] | None]] = [("failed", self.config.sent_after_s, failure)]
        else:
            plan = [("sent", self.config.sent_after_s, None), ("delivered", self.config.delivered_after_s, None)]
            if self.config.read_after_s is not None:
                plan.append(("read", self.config.read_after_s, None))
        started = time.monotonic()
        for status, after_s, error in plan:
            await asyncio.sleep(max(0.0, started + after_s - time.monotonic()))
            await self._send_status(number, sent, status, error)

    async def _send_status(
        self, number: MetaPhoneNumber, sent: SentMessage, status: str, error: dict[str, Any] | None
    ) -> None:
        item: dict[str, Any] = {"id": sent.wamid, "status": status, "timestamp": str(int(time.time()))}
        # A send by BSUID reports ``recipient_user_id`` (and the phone once Meta may share it); a
        # send by phone, ``recipient_id`` (and the BSUID where the user has one).
        phone, user_id = self._identity_of(number.phone_number_id, sent.to)
        if phone is not None:
            item["recipient_id"] = phone
        if user_id is not None:
            item["recipient_user_id"] = user_id
        if status in ("sent", "delivered") and error is None:
            item["conversation"] = {"id": secrets.token_hex(16), "origin": {"type": "service"}}
            item["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "service"}
        if error is not None:
            item["errors"] = [error]
        if "biz_opaque_callback_data" in sent.body:
            item["biz_opaque_callback_data"] = sent.body["biz_opaque_callback_data"]
        sent.statuses.append(item)
        payload = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": number.waba_id,
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": number.display_phone_number,
                                    "phone_number_id": number.phone_number_id,
                                },
                                "statuses": [item],
                            },
                        }
                    ],
                }
            ],
        }
        await self._post_webhook(number, "status", encode_webhook(payload), number.webhook_url)

    async def _post_webhook(
        self, number: MetaPhoneNumber, kind: str, raw: bytes, url: str | None
    ) -> WebhookDelivery | None:
        if not url:
            return None
        assert self._session is not None
        delivery = WebhookDelivery(kind, number.phone_number_id, url, len(raw), sent_at=utc_now_iso())
        self._webhooks.append(delivery)
        for attempt in range(self.config.webhook_retries + 1):
            if attempt:
                await asyncio.sleep(self.config.webhook_retry_delay_s)
            status = await post_webhook(
                self._session,
                url,
                number.app_secret.get_secret_value(),
                raw,
                timeout_s=self.config.webhook_timeout_s,
            )
            delivery.attempts.append(status)
            if status == 200:  # Meta retries anything but 200
                break
        return delivery

    # --- customers (inbound webhooks) ---------------------------------------------------------

    async def send_user_preference(self, phone_number_id: str, wa_id: str, value: str, name: str = "Customer") -> None:
        """The customer stops (``stop``) or resumes (``resume``) marketing messages: the
        ``user_preferences`` webhook, and template sends fail with 131050 while stopped."""
        number = self.phone_numbers[phone_number_id]
        addresses = {(phone_number_id, address) for address in self._addresses(phone_number_id, wa_id)}
        if value == "stop":
            self._opted_out |= addresses
        else:
            self._opted_out -= addresses
        change_value = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": number.display_phone_number, "phone_number_id": phone_number_id},
            "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
            "user_preferences": [
                {
                    "wa_id": wa_id,
                    "detail": "User requested to stop marketing messages" if value == "stop" else "User resumed",
                    "category": "marketing_messages",
                    "value": value,
                    "timestamp": int(time.time()),
                }
            ],
        }
        payload = {
            "object": "whatsapp_business_account",
            "entry": [{"id": number.waba_id, "changes": [{"field": "user_preferences", "value": change_value}]}],
        }
        await self._post_webhook(number, "preference", encode_webhook(payload), number.webhook_url)

    async def send_inbound(
        self,
        phone_number_id: str,
        specs: list[InboundSpec],
        *,
        batch: bool = False,
        duplicate: bool = False,
        shuffle: bool = False,
        json_style: JsonStyle = "utf8",
        webhook_url: str | None = None,
    ) -> dict[str, Any]:
        """Customers send ``specs`` to this number: media stored here, windows opened, webhooks posted.

        ``batch`` puts every message in one POST (one change per customer); ``duplicate`` posts each
        body twice; ``shuffle`` posts in random order. Returns the wamids and each POST's HTTP status.
        """
        number = self.phone_numbers[phone_number_id]
        built = []
        media_ids = []
        for spec in specs:
            media = None
            if spec.kind in MEDIA_KINDS:
                sample = sample_for(spec.kind)
                media = self.store_media(phone_number_id, sample.data, sample.mime_type, f"document.{sample.extension}")
                media_ids.append(media.id)
            message, contact = build_message(spec, media)
            built.append((message, contact))
            self.know_customer(phone_number_id, None if spec.bsuid_only else spec.wa_id, spec.user_id)
            self.open_service_window(phone_number_id, spec.user_id if spec.bsuid_only and spec.user_id else spec.wa_id)
        groups = [built] if batch else [[item] for item in built]
        bodies = [
            encode_webhook(
                build_webhook(
                    waba_id=number.waba_id,
                    display_phone_number=number.display_phone_number,
                    phone_number_id=phone_number_id,
                    messages=group,
                ),
                json_style,
            )
            for group in groups
        ]
        if duplicate:
            bodies = [body for body in bodies for _ in range(2)]
        if shuffle:
            self._rng.shuffle(bodies)
        url = webhook_url or number.webhook_url
        if not url:
            raise KeyError(f"phone number {phone_number_id} has no webhook URL")
        deliveries = [await self._post_webhook(number, "inbound", body, url) for body in bodies]
        return {
            "wamids": [message["id"] for message, _ in built],
            "media_ids": media_ids,
            "posts": [delivery.attempts if delivery else [] for delivery in deliveries],
        }


def interactive_problem(payload: dict[str, Any]) -> str | None:
    """What Meta refuses in an interactive reply-buttons or list message (its documented limits:
    "Interactive reply buttons messages", "Interactive list messages", checked 2026-12)."""
    kind = payload.get("type")
    body = payload.get("body")
    text = body.get("text") if isinstance(body, dict) else None
    action = payload.get("action")
    if not isinstance(text, str) or not text or not isinstance(action, dict):
        return "The parameters interactive['body']['text'] and interactive['action'] are required."
    header = payload.get("header")
    if header is not None and (
        not isinstance(header, dict)
        or header.get("type") != "text"
        or not isinstance(header.get("text"), str)
        or not 1 <= len(header["text"]) <= 60
    ):
        return "A text header needs a text of 1 to 60 characters."
    if kind == "button":
        buttons = action.get("buttons")
        if len(text) > 1024 or not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
            return "Interactive buttons need a body of at most 1024 characters and 1 to 3 buttons."
        ids = []
        for button in buttons:
            reply = button.get("reply") if isinstance(button, dict) else None
            if not isinstance(reply, dict) or button.get("type") != "reply":
                return "Each button must be {type: reply, reply: {id, title}}."
            title, button_id = reply.get("title"), reply.get("id")
            if not isinstance(title, str) or not 1 <= len(title) <= 20:
                return "Button title length must be between 1 and 20 characters."
            if not isinstance(button_id, str) or not 1 <= len(button_id) <= 256:
                return "Button id length must be between 1 and 256 characters."
            ids.append(button_id)
        return None if len(set(ids)) == len(ids) else "Button ids must be unique."
    if kind == "list":
        sections = action.get("sections")
        label = action.get("button")
        if len(text) > 4096 or not isinstance(label, str) or not 1 <= len(label) <= 20:
            return "A list needs a body of at most 4096 characters and a button label of 1 to 20."
        if not isinstance(sections, list) or not 1 <= len(sections) <= 10:
            return "A list needs 1 to 10 sections."
        rows = [row for section in sections if isinstance(section, dict) for row in section.get("rows") or []]
        if not 1 <= len(rows) <= 10:
            return "A list needs 1 to 10 rows in all."
        if len(sections) > 1 and not all(isinstance(sec, dict) and sec.get("title") for sec in sections):
            return "Each section needs a title when there are several."
        for row in rows:
            if not isinstance(row, dict) or not isinstance(row.get("title"), str) or not 1 <= len(row["title"]) <= 24:
                return "Row title length must be between 1 and 24 characters."
            if not isinstance(row.get("id"), str) or not 1 <= len(row["id"]) <= 200:
                return "Row id length must be between 1 and 200 characters."
            if len(str(row.get("description") or "")) > 72:
                return "Row description must be at most 72 characters."
        ids = [row["id"] for row in rows]
        return None if len(set(ids)) == len(ids) else "Row ids must be unique."
    return f"Interactive type {kind!r} is not supported by this simulator."


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
