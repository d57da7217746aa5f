"""A worker with a table keyed like its source topic and a routed view, for the two-worker test.

Each event of ``wa-inbound`` adds its ``seq`` to the key's list in the ``seen`` table.
``GET /seen/{customer}?tenantId=`` and ``POST /seen/{customer}?tenantId=`` (echoes the body) are
served by the worker that owns ``tenantId:customer``, whichever worker is asked.
"""

from __future__ import annotations

import json
import os
from typing import Any

from faust.types import EventT
from faust.web import Request, Response, View

from wabridge.settings import Settings
from wabridge.streams.app import create_app, create_table, run_worker, stage_topic
from wabridge.streams.lanes import run_in_lanes
from wabridge.streams.topics import WA_INBOUND
from wabridge.streams.web import BadKey, route_to_key_owner

settings = Settings()
app = create_app(settings)
source = stage_topic(app, settings, WA_INBOUND)
seen = create_table(app, "seen", default=list)


async def remember(event: EventT) -> None:
    seq = json.loads(event.value)["seq"]
    seen[event.key] = [*seen[event.key], seq]


@app.agent(source, concurrency=1)
async def record_seen(stream):  # type: ignore[no-untyped-def]
    await run_in_lanes(stream, remember)


def customer_key(request: Request) -> str:
    tenant = request.query.get("tenantId")
    if not tenant:
        raise BadKey("tenantId is required")
    return f"{tenant}:{request.match_info['customer']}"


def _served(extra: dict[str, Any]) -> dict[str, Any]:
    return {"served_by": settings.worker_port, "pid": os.getpid(), **extra}


@app.page("/seen/{customer}")
class SeenView(View):
    @route_to_key_owner(seen, customer_key)
    async def get(self, request: Request, customer: str) -> Response:
        key = customer_key(request)
        if key not in seen:
            return self.json(_served({"key": key}), status=404)
        return self.json(_served({"key": key, "seen": seen[key]}))

    @route_to_key_owner(seen, customer_key)
    async def post(self, request: Request, customer: str) -> Response:
        body = await request.json()
        return self.json(_served({"key": customer_key(request), "echo": body}))


if __name__ == "__main__":
    run_worker(app, settings)
