"""The Genesys simulator's admin API (``/__sim/…``): tenants, faults, read-back and the agent.

GET|PUT|PATCH /__sim/config            the whole GenesysSimConfig (secrets masked on GET)
PUT|DELETE    /__sim/clients/{id}      an OAuth client; POST /__sim/clients/{id}/revoke
PUT|DELETE    /__sim/integrations/{id} an Open Messaging integration
PUT|DELETE    /__sim/faults/{integration|client}/{id}   a FaultPlan
GET /__sim/inbound · /__sim/attachments · /__sim/outbound   what Genesys accepted, fetched, sent
GET /__sim/arrivals?since=&prefix=&kind=&limit=   accepted inbound, compact and incremental (benchmarks)
POST /__sim/agent/messages             an agent message (outbound webhook)
GET  /__sim/redirect?to=URL            a download link that redirects to URL
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from wabridge.simulators.faults import FaultPlan
from wabridge.simulators.genesys_config import GenesysClient, GenesysIntegration, GenesysSimConfig
from wabridge.simulators.inspection import apply_admin_change, json_response

if TYPE_CHECKING:
    from wabridge.simulators.genesys import AcceptedInbound, GenesysSimulator


class GenesysAdmin:
    def __init__(self, sim: GenesysSimulator) -> None:
        self._sim = sim

    def add_routes(self, app: web.Application) -> None:
        add = app.router
        add.add_get("/__sim/config", self._get_config)
        add.add_put("/__sim/config", self._put_config)
        add.add_patch("/__sim/config", self._patch_config)
        add.add_put("/__sim/clients/{client_id}", self._put_client)
        add.add_put("/__sim/integrations/{integration_id}", self._put_integration)
        add.add_delete("/__sim/clients/{client_id}", self._delete_client)
        add.add_delete("/__sim/integrations/{integration_id}", self._delete_integration)
        add.add_post("/__sim/clients/{client_id}/revoke", self._revoke)
        add.add_put("/__sim/faults/{scope}/{key}", self._put_faults)
        add.add_delete("/__sim/faults/{scope}/{key}", self._delete_faults)
        add.add_get("/__sim/inbound", self._inbound)
        add.add_get("/__sim/attachments", self._attachments)
        add.add_get("/__sim/outbound", self._outbound)
        add.add_get("/__sim/arrivals", self._arrivals)
        add.add_post("/__sim/agent/messages", self._agent_message)
        add.add_get("/__sim/redirect", self._redirect)

    async def _redirect(self, request: web.Request) -> web.Response:
        """A download link that redirects to ``to``: how a test makes Genesys's own host send the
        worker elsewhere (the worker must not follow it off its allow-list)."""
        raise web.HTTPFound(request.query.get("to", "/"))

    async def _get_config(self, request: web.Request) -> web.Response:
        return json_response(self._sim.config.model_dump(mode="json"))

    async def _put_config(self, request: web.Request) -> web.Response:
        return await apply_admin_change(
            request, lambda body: self._sim.configure(GenesysSimConfig.model_validate(body))
        )

    async def _patch_config(self, request: web.Request) -> web.Response:
        return await apply_admin_change(request, lambda body: self._sim.update(**body))

    async def _put_client(self, request: web.Request) -> web.Response:
        client_id = request.match_info["client_id"]
        return await apply_admin_change(
            request,
            lambda body: self._sim.upsert_client(GenesysClient.model_validate({**body, "client_id": client_id})),
        )

    async def _put_integration(self, request: web.Request) -> web.Response:
        integration_id = request.match_info["integration_id"]
        return await apply_admin_change(
            request,
            lambda body: self._sim.upsert_integration(
                GenesysIntegration.model_validate({**body, "integration_id": integration_id})
            ),
        )

    async def _delete_client(self, request: web.Request) -> web.Response:
        self._sim.remove_client(request.match_info["client_id"])
        return web.Response(status=204)

    async def _delete_integration(self, request: web.Request) -> web.Response:
        self._sim.remove_integration(request.match_info["integration_id"])
        return web.Response(status=204)

    async def _revoke(self, request: web.Request) -> web.Response:
        return json_response({"revoked": self._sim.revoke_tokens(request.match_info["client_id"])})

    async def _put_faults(self, request: web.Request) -> web.Response:
        scope, key = request.match_info["scope"], request.match_info["key"]
        if scope not in ("integration", "client"):
            return json_response({"error": "scope must be integration or client"}, status=404)
        return await apply_admin_change(
            request, lambda body: self._sim.set_faults(scope, key, FaultPlan.model_validate(body))
        )

    async def _delete_faults(self, request: web.Request) -> web.Response:
        scope, key = request.match_info["scope"], request.match_info["key"]
        if scope not in ("integration", "client"):
            return json_response({"error": "scope must be integration or client"}, status=404)
        self._sim.set_faults(scope, key, None)
        return web.Response(status=204)

    async def _inbound(self, request: web.Request) -> web.Response:
        items = self._sim.accepted(request.query.get("integration"), request.query.get("kind"))
        return json_response({"inbound": [asdict(item) for item in items]})

    async def _attachments(self, request: web.Request) -> web.Response:
        fetches = self._sim.attachment_fetches(request.query.get("integration"))
        return json_response({"attachments": [asdict(fetch) for fetch in fetches]})

    async def _outbound(self, request: web.Request) -> web.Response:
        deliveries = self._sim.outbound_deliveries(request.query.get("integration"))
        return json_response({"outbound": [delivery.to_json() for delivery in deliveries]})

    async def _arrivals(self, request: web.Request) -> web.Response:
        """What Genesys accepted from position ``since`` on, one small record each, in acceptance order.

        ``position`` counts every accepted request; ``next`` is where the following poll starts, so a
        benchmark reads each arrival once however long the run, and ``total`` is how many there are.
        ``prefix`` keeps the records whose ``channel.messageId`` starts with it, ``kind`` the kind
        (default ``message``), and ``limit`` caps how many records one poll reads.
        """
        try:
            since = max(0, int(request.query.get("since", "0")))
            limit = int(request.query["limit"]) if "limit" in request.query else None
        except ValueError:
            return json_response({"error": "since and limit are integers"}, status=400)
        prefix = request.query.get("prefix", "")
        kind = request.query.get("kind", "message")
        accepted = self._sim.accepted()
        window = accepted[since:] if limit is None else accepted[since : since + max(0, limit)]
        arrivals = [
            _arrival(position, item)
            for position, item in enumerate(window, start=since)
            if item.kind == kind and str(item.body.get("channel", {}).get("messageId", "")).startswith(prefix)
        ]
        return json_response({"arrivals": arrivals, "next": since + len(window), "total": len(accepted)})

    async def _agent_message(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        try:
            delivery = await self._sim.send_agent_message(
                body["integration_id"],
                body["to_id"],
                text=body.get("text"),
                attachments=body.get("attachments"),
                content=body.get("content"),
                typing=body.get("type") == "Event",
                to_id_type=body.get("to_id_type", "Phone"),
                wait=bool(body.get("wait", True)),
            )
        except KeyError as error:
            return json_response({"error": str(error)}, status=409)
        return json_response(delivery.to_json())


def _arrival(position: int, item: AcceptedInbound) -> dict[str, Any]:
    channel = item.body.get("channel", {})
    return {
        "position": position,
        "kind": item.kind,
        "integration_id": item.integration_id,
        "message_id": channel.get("messageId"),
        "from_id": channel.get("from", {}).get("id"),
        "time": channel.get("time"),
        # Wall clock, microseconds: end-to-end latency is measured against the sender's clock.
        "received_at_epoch": datetime.fromisoformat(item.received_at).timestamp(),
    }
