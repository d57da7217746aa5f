"""The Meta simulator's admin API (``/__sim/…``): tenants, customers, faults and read-back.

GET|PUT|PATCH /__sim/config                 the whole MetaSimConfig (secrets masked on GET)
PUT|DELETE    /__sim/phone-numbers/{id}     a business number (token, app secret, webhook URL)
POST /__sim/inbound                         customers send messages (the customer driver)
POST /__sim/media?phone_number_id=&mime_type=   store raw bytes as customer media
POST /__sim/media/{id}/fail-next-downloads  fault: the next N downloads answer 404
POST /__sim/service-windows                 open a customer's 24-hour window
GET /__sim/sent · /__sim/read-marks · /__sim/webhooks   what was sent, marked read, posted
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

import orjson
from aiohttp import web
from pydantic import ValidationError

from wabridge.simulators.customer import InboundSpec
from wabridge.simulators.inspection import apply_admin_change, json_response
from wabridge.simulators.meta_config import MetaPhoneNumber, MetaSimConfig

if TYPE_CHECKING:
    from wabridge.simulators.meta import MetaSimulator


class MetaAdmin:
    def __init__(self, sim: MetaSimulator) -> None:
        self._sim = sim

    def add_routes(self, app: web.Application) -> None:
        add = app.router
        add.add_get("/__sim/config", self._get_config)
        add.add_put("/__sim/config", self._put_config)
        add.add_patch("/__sim/config", self._patch_config)
        add.add_put("/__sim/phone-numbers/{phone_number_id}", self._put_number)
        add.add_delete("/__sim/phone-numbers/{phone_number_id}", self._delete_number)
        add.add_post("/__sim/media", self._store_media)
        add.add_post("/__sim/media/{media_id}/fail-next-downloads", self._fail_downloads)
        add.add_post("/__sim/service-windows", self._open_window)
        add.add_post("/__sim/inbound", self._inbound)
        add.add_get("/__sim/sent", self._sent)
        add.add_get("/__sim/read-marks", self._read_marks)
        add.add_get("/__sim/webhooks", self._webhooks)

    async def _get_config(self, request: web.Request) -> web.Response:
        return json_response(self._sim.config.model_dump(mode="json"))

    async def _put_config(self, request: web.Request) -> web.Response:
        return await apply_admin_change(request, lambda body: self._sim.configure(MetaSimConfig.model_validate(body)))

    async def _patch_config(self, request: web.Request) -> web.Response:
        return await apply_admin_change(request, lambda body: self._sim.update(**body))

    async def _put_number(self, request: web.Request) -> web.Response:
        phone_number_id = request.match_info["phone_number_id"]
        return await apply_admin_change(
            request,
            lambda body: self._sim.upsert_phone_number(
                MetaPhoneNumber.model_validate({**body, "phone_number_id": phone_number_id})
            ),
        )

    async def _delete_number(self, request: web.Request) -> web.Response:
        self._sim.remove_phone_number(request.match_info["phone_number_id"])
        return web.Response(status=204)

    async def _store_media(self, request: web.Request) -> web.Response:
        phone_number_id = request.query.get("phone_number_id", "")
        if phone_number_id not in self._sim.phone_numbers:
            return json_response({"error": f"unknown phone_number_id {phone_number_id!r}"}, status=404)
        ref = self._sim.store_media(
            phone_number_id, await request.read(), request.query.get("mime_type", request.content_type)
        )
        return json_response({"id": ref.id, "sha256": ref.sha256_b64, "mime_type": ref.mime_type})

    async def _fail_downloads(self, request: web.Request) -> web.Response:
        media_id = request.match_info["media_id"]
        body = orjson.loads(await request.read() or b"{}")
        try:
            self._sim.fail_next_downloads(media_id, int(body.get("count", 1)))
        except KeyError:
            return json_response({"error": f"unknown media {media_id}"}, status=404)
        return web.Response(status=204)

    async def _open_window(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self._sim.open_service_window(body["phone_number_id"], body["wa_id"], body.get("at"))
        return web.Response(status=204)

    async def _inbound(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        try:
            specs = [InboundSpec.model_validate(item) for item in body["messages"]]
            result = await self._sim.send_inbound(
                body["phone_number_id"],
                specs,
                batch=bool(body.get("batch")),
                duplicate=bool(body.get("duplicate")),
                shuffle=bool(body.get("shuffle")),
                json_style=body.get("json_style", "utf8"),
                webhook_url=body.get("webhook_url"),
            )
        except ValidationError as error:
            return json_response({"error": str(error)}, status=400)
        except KeyError as error:
            return json_response({"error": f"unknown or unconfigured: {error}"}, status=404)
        return json_response(result)

    async def _sent(self, request: web.Request) -> web.Response:
        sent = self._sim.sent_messages(request.query.get("phone_number_id"))
        since = int(request.query.get("since", "0") or 0)  # for readers that poll: what came after
        return json_response({"sent": [asdict(message) for message in sent[since:]], "next": len(sent)})

    async def _read_marks(self, request: web.Request) -> web.Response:
        return json_response({"read_marks": self._sim.read_marks(request.query.get("phone_number_id"))})

    async def _webhooks(self, request: web.Request) -> web.Response:
        deliveries = self._sim.webhook_deliveries(request.query.get("phone_number_id"))
        return json_response({"webhooks": [asdict(delivery) for delivery in deliveries]})
