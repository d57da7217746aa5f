"""``wabridge demo``: one customer's short conversation through the running bridge, as the agent saw
it, and the agent's answer as the customer's phone got it.

The customer side goes through the Meta simulator (``POST /__sim/inbound`` generates each webhook,
signs it and posts it to the webhook edge, as Meta would); the agent side is read back from the
Genesys simulator (``GET /__sim/inbound``: what Genesys accepted). A message that has not reached
Genesys is looked up in the worker's State API, so a failure says how far the message got. Then
the agent answers (``POST /__sim/agent/messages`` on the Genesys simulator, Genesys's outbound
webhook); the demo shows it as the Meta simulator took it for the customer (``GET /__sim/sent``),
and the ``Delivered`` receipts Genesys got back: a text, a photo and quick replies, of which the
customer taps one (a structured response to the agent's question).
Needs ``wabridge run`` (``make run``) in another terminal.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import click
import orjson

from wabridge.dev.demo import DEMO_TENANT
from wabridge.dev.stack import process_endpoints
from wabridge.errors import ConfigurationError
from wabridge.settings import Settings
from wabridge.simulators.agent import AgentDriver, quick_replies
from wabridge.simulators.customer import CustomerDriver, InboundSpec, new_wamid
from wabridge.simulators.hosting import SimulatorRequestError
from wabridge.streams import internal_auth

_CUSTOMER_NAME = "Sheena Nelson"
_CUSTOMER_WA_ID = "16505551234"
_COMPONENTS = {
    "sim_meta": "the Meta simulator",
    "sim_genesys": "the Genesys simulator",
    "webhook": "the webhook edge",
    "bridge": "the bridge",
    "worker": "the worker",
}
_POLL_S = 0.25
# The State API is asked about missing messages less often than Genesys is polled.
_TRACKING_POLL_S = 2.0


@dataclass(frozen=True, slots=True)
class DemoMessage:
    label: str  # what the customer does, as the demo prints it
    spec: InboundSpec

    @property
    def wamid(self) -> str:
        assert self.spec.wamid is not None
        return self.spec.wamid


def _say(label: str, kind: str, wamid: str | None = None, **fields: Any) -> DemoMessage:
    spec = InboundSpec(kind=kind, wa_id=_CUSTOMER_WA_ID, name=_CUSTOMER_NAME, wamid=wamid or new_wamid(), **fields)
    return DemoMessage(label, spec)


def demo_conversation() -> list[DemoMessage]:
    """The customer's messages, in order. Their wamids are chosen here so the reply and the reaction can
    name earlier messages, and so a message the edge refused is still known by its id."""
    first, photo = new_wamid(), new_wamid()
    return [
        _say("text", "text", first, text="Hi! My order #1042 has not arrived yet."),
        _say("image with a caption", "image", photo, text="This is the label on the box"),
        _say("document", "document", text="And the invoice"),
        _say("voice note", "voice"),
        _say("location", "location"),
        _say("reply to the first message", "text", text="It was due last Monday.", reply_to=first),
        _say("reaction to the image", "reaction", reacted_message_id=photo),
    ]


def shorten_url(url: str, width: int = 64) -> str:
    """Scheme, host and path without the query (a presigned URL's signature), middle elided to fit."""
    parts = urlsplit(url)
    short = f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else url
    if parts.query:
        short += "?…"
    if len(short) <= width:
        return short
    keep = width - 1
    return short[: keep // 2] + "…" + short[-(keep - keep // 2) :]


def _clock(iso: str | None) -> str:
    if not iso:
        return "--:--:--"
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return iso


def agent_view(body: dict[str, Any], latency_s: float | None = None) -> list[str]:
    """One message as the agent saw it: sender, time, text and attachments, one item per line."""
    channel = body.get("channel") or {}
    sender = channel.get("from") or {}
    name = sender.get("nickname") or sender.get("id") or "(unknown sender)"
    after = f" (+{latency_s:.2f}s)" if latency_s is not None else ""
    lines = [f"{_clock(channel.get('time'))}{after}  {name}:"]
    lines.extend(f"    {line}" for line in str(body.get("text") or "").splitlines())
    for item in body.get("content") or []:
        attachment = item.get("attachment") if isinstance(item, dict) else None
        if not attachment:
            continue
        described = [
            attachment.get("mediaType") or "?",
            attachment.get("mime") or "",
            attachment.get("filename") or "",
            shorten_url(str(attachment.get("url") or "")),
        ]
        lines.append("    [attachment] " + "  ".join(part for part in described if part))
    return lines


def summary_line(sent: int, delivered: int, failed: int, elapsed_s: float) -> str:
    return f"sent {sent}, delivered {delivered}, failed {failed}, in {elapsed_s:.1f}s"


@dataclass
class DemoResult:
    sent: int
    delivered: int
    failed: dict[str, str] = field(default_factory=dict)  # wamid -> why
    elapsed_s: float = 0.0
    answer_problem: str | None = None  # why the agent's answer did not reach the customer

    @property
    def ok(self) -> bool:
        return not self.failed and self.delivered == self.sent and self.answer_problem is None


class _Demo:
    """The run's I/O: the customer driver, the Genesys read-back and the State API."""

    def __init__(self, settings: Settings, session: aiohttp.ClientSession, echo: Any, timeout_s: float) -> None:
        self._urls = process_endpoints(settings)
        self._worker_headers = internal_auth.authorization(settings)
        self._session = session
        self.echo = echo
        self.timeout_s = timeout_s

    async def check_running(self) -> None:
        async def answers(url: str) -> bool:
            try:
                async with self._session.get(url + "/healthz", timeout=aiohttp.ClientTimeout(total=3)) as response:
                    return response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                return False

        healthy = await asyncio.gather(*(answers(self._urls[name]) for name in _COMPONENTS))
        down = [
            f"{what} ({self._urls[name]})"
            for (name, what), up in zip(_COMPONENTS.items(), healthy, strict=True)
            if not up
        ]
        if down:
            raise ConfigurationError(
                f"not reachable: {', '.join(down)}. Start `make run` (or `wabridge run`) in another terminal "
                "first, and wait until it says everything is up"
            )

    async def send(self, message: DemoMessage) -> tuple[float, str | None]:
        """Post one message; when it was sent, and why it failed if the edge never took it."""
        driver = CustomerDriver(self._urls["sim_meta"], self._session)
        sent_at = time.time()
        result = await driver.send(DEMO_TENANT.phone_number_id, [message.spec])
        [attempts] = result["posts"]
        status = attempts[-1] if attempts else None
        answered = "no answer" if status is None else f"HTTP {status}"
        self.echo(f"  customer sends {message.label:28} webhook → edge: {answered}")
        if status != 200:
            return sent_at, f"the webhook edge did not accept it ({answered} after {len(attempts)} attempts)"
        return sent_at, None

    async def accepted(self, kind: str = "message") -> list[dict[str, Any]]:
        """What Genesys took for the demo's integration: ``message``, ``receipt`` or ``structured_response``."""
        url = f"{self._urls['sim_genesys']}/__sim/inbound"
        query = {"integration": DEMO_TENANT.genesys_integration_id, "kind": kind}
        async with self._session.get(url, params=query) as response:
            response.raise_for_status()
            inbound: list[dict[str, Any]] = orjson.loads(await response.read())["inbound"]
            return inbound

    async def agent_sends(
        self,
        text: str,
        *,
        attachments: list[str] | None = None,
        content: list[dict[str, Any]] | None = None,
        to: str = _CUSTOMER_WA_ID,
        to_id_type: str = "Phone",
    ) -> str:
        """The agent sends to the customer (the Genesys simulator's outbound webhook); its Genesys id."""
        driver = AgentDriver(self._urls["sim_genesys"], self._session)
        integration = DEMO_TENANT.genesys_integration_id
        if content:
            delivery = await driver.send_structured(integration, to, content, text=text)
        else:
            delivery = await driver.send_text(integration, to, text, attachments=attachments, to_id_type=to_id_type)
        return str(delivery["message_id"])

    async def customer_received(self, customer: str = _CUSTOMER_WA_ID) -> list[dict[str, Any]]:
        """Every message the Meta simulator took for the customer (phone number or BSUID), in order."""
        url = f"{self._urls['sim_meta']}/__sim/sent"
        async with self._session.get(url, params={"phone_number_id": DEMO_TENANT.phone_number_id}) as response:
            response.raise_for_status()
            sent: list[dict[str, Any]] = orjson.loads(await response.read())["sent"]
        return [message for message in sent if message["to"] == customer]

    async def receipts(self, genesys_message_id: str) -> list[str]:
        """The receipt statuses Genesys took for the agent's message."""
        inbound = await self.accepted("receipt")
        return [item["body"]["status"] for item in inbound if item["body"].get("id") == genesys_message_id]

    async def tracked_status(self, wamid: str) -> tuple[str | None, str | None]:
        """(status, error) of the message's inbound tracking row; (None, None) when not tracked or not known."""
        url = f"{self._urls['worker']}/state/message/{quote(wamid, safe='')}"
        query = {"tenantId": DEMO_TENANT.tenant_id, "direction": "inbound"}
        try:
            async with self._session.get(
                url, params=query, headers=self._worker_headers, timeout=aiohttp.ClientTimeout(total=3)
            ) as response:
                if response.status != 200:
                    return None, None
                row = orjson.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError):
            return None, None
        return row.get("status"), row.get("error")


async def _wait_for_agent(
    demo: _Demo, conversation: list[DemoMessage], sent_at: dict[str, float], result: DemoResult, started: float
) -> None:
    """Print each message as Genesys accepted it, until all are there, failed, or the timeout passes."""
    deadline = started + demo.timeout_s
    pending = [m.wamid for m in conversation if m.wamid not in result.failed]
    next_tracking_check = time.monotonic() + _TRACKING_POLL_S
    while pending:
        for item in await demo.accepted():
            wamid = item["body"].get("channel", {}).get("messageId")
            if wamid in pending:
                pending.remove(wamid)
                result.delivered += 1
                latency = datetime.fromisoformat(item["received_at"]).timestamp() - sent_at[wamid]
                for line in agent_view(item["body"], latency):
                    demo.echo("  " + line)
        now = time.monotonic()
        if not pending or now >= deadline:
            break
        if now >= next_tracking_check:
            next_tracking_check = now + _TRACKING_POLL_S
            for wamid in list(pending):
                status, error = await demo.tracked_status(wamid)
                if status == "failed":
                    pending.remove(wamid)
                    result.failed[wamid] = f"the bridge tracked it as failed: {error}"
        await asyncio.sleep(_POLL_S)
    result.elapsed_s = time.monotonic() - started
    for wamid in pending:
        status, _ = await demo.tracked_status(wamid)
        how_far = f"tracked as {status!r}" if status else "not tracked yet"
        result.failed[wamid] = f"not at Genesys {demo.timeout_s:g}s after the first message ({how_far})"


_AGENT_ANSWER = "Sorry about that, Sheena! Your parcel left our warehouse this morning and arrives tomorrow."
_AGENT_PHOTO = "This is your parcel at our depot"
_AGENT_QUESTION = "Shall we bring it to your door or to a pick-up point?"
_CHOICES = ("To my door", "Pick-up point")


def phone_view(message: dict[str, Any]) -> list[str]:
    """One message as the customer's WhatsApp shows it, one item per line."""
    kind = message.get("type")
    body = message.get("body") or {}
    payload = body.get(kind) or {}
    if kind == "text":
        return str(payload.get("body") or "").splitlines()
    if kind == "interactive":
        buttons = payload.get("action", {}).get("buttons") or []
        rows = [r for s in payload.get("action", {}).get("sections") or [] for r in s.get("rows") or []]
        titles = [b.get("reply", {}).get("title") for b in buttons] or [r.get("title") for r in rows]
        return [str(payload.get("body", {}).get("text") or ""), "  ".join(f"[ {t} ]" for t in titles)]
    described = f"[{kind}" + (f" {payload['id']}" if payload.get("id") else "") + "]"
    return [f"{described} {payload.get('caption') or ''}".rstrip()]


async def _until(check: Any, deadline: float) -> Any:
    """``await check()`` until it returns something truthy or the deadline passes; its last answer."""
    while True:
        found = await check()
        if found or time.monotonic() >= deadline:
            return found
        await asyncio.sleep(_POLL_S)


async def _agent_answers(demo: _Demo, result: DemoResult) -> None:
    """The agent answers with text, a photo and quick replies; print what the customer's phone got and
    the receipts Genesys got back; the customer taps a reply, which the agent sees as an answer to it."""
    demo.echo("")
    demo.echo("the agent answers, and the customer's phone shows (Meta simulator):")
    started = time.monotonic()
    deadline = started + demo.timeout_s
    before = len(await demo.customer_received())
    sent_ids = [
        await demo.agent_sends(_AGENT_ANSWER),
        await demo.agent_sends(_AGENT_PHOTO, attachments=["image"]),
        await demo.agent_sends(_AGENT_QUESTION, content=quick_replies(*_CHOICES)),
    ]

    async def arrived() -> list[dict[str, Any]]:
        received = (await demo.customer_received())[before:]
        return received if len(received) >= len(sent_ids) else []

    received = await _until(arrived, deadline)
    if not received:
        result.answer_problem = f"the agent's answers were not at Meta {demo.timeout_s:g}s after they were sent"
        return
    for message in received:
        for line in phone_view(message):
            demo.echo(f"  {line}")
    demo.echo(f"    (all at Meta {time.monotonic() - started:.2f} s after the agent sent them)")

    async def all_delivered() -> bool:
        receipts = [await demo.receipts(genesys_id) for genesys_id in sent_ids]
        return all("Delivered" in statuses for statuses in receipts)

    if not await _until(all_delivered, deadline):
        result.answer_problem = "Genesys did not get a Delivered receipt for each of the agent's answers"
        return
    demo.echo(
        f"  Genesys receipts for the agent's messages: Delivered x{len(sent_ids)} ({time.monotonic() - started:.2f} s)"
    )

    question = received[-1]
    tap = _say(f'taps "{_CHOICES[0]}"', "button_reply", reply_to=question["wamid"], choice_title=_CHOICES[0],
               choice_id=quick_replies(*_CHOICES)[0]["quickReply"]["payload"])  # fmt: skip
    demo.echo("")
    await demo.send(tap)

    async def answered() -> list[dict[str, Any]]:
        responses = await demo.accepted("structured_response")
        return [r for r in responses if r["body"].get("originatingMessageId") == sent_ids[-1]]

    responses = await _until(answered, deadline)
    if not responses:
        result.answer_problem = "the customer's tap did not reach Genesys as an answer to the agent's question"
        return
    button = responses[0]["body"]["buttonResponse"]
    demo.echo(f'  the agent sees: "{button["text"]}" ({button["type"]}), in answer to "{_AGENT_QUESTION}"')


# A customer who adopted a WhatsApp username: Meta names them only by a business-scoped user id.
_USERNAME_BSUID = "US.13491208655300000042"
_USERNAME = "ana.m"
_USERNAME_QUESTION = "Hi, is the shop open on Sunday?"
_USERNAME_ANSWER = "Hi Ana, yes: Sundays 10:00 to 16:00."


async def _username_customer(demo: _Demo, result: DemoResult) -> None:
    """A customer known only by username writes; the agent's reply reaches them by their BSUID."""
    demo.echo("")
    demo.echo(f"a customer with the WhatsApp username {_USERNAME!r} (no phone number shared) writes:")
    deadline = time.monotonic() + demo.timeout_s
    message = DemoMessage(
        "text (username only)",
        InboundSpec(
            kind="text", user_id=_USERNAME_BSUID, username=_USERNAME, bsuid_only=True, name="",
            text=_USERNAME_QUESTION, wamid=new_wamid(),
        ),
    )  # fmt: skip
    _, refused = await demo.send(message)
    if refused:
        result.answer_problem = f"the username customer's message: {refused}"
        return

    async def arrived() -> list[dict[str, Any]]:
        return [m for m in await demo.accepted() if m["body"].get("channel", {}).get("messageId") == message.wamid]

    found = await _until(arrived, deadline)
    if not found:
        result.answer_problem = "the username customer's message did not reach the agent"
        return
    for line in agent_view(found[0]["body"]):
        demo.echo("  " + line)
    await demo.agent_sends(_USERNAME_ANSWER, to=_USERNAME_BSUID, to_id_type="Opaque")

    async def answered() -> list[dict[str, Any]]:
        return await demo.customer_received(_USERNAME_BSUID)

    received = await _until(answered, deadline)
    if not received:
        result.answer_problem = "the agent's reply did not reach the username customer"
        return
    for line in phone_view(received[0]):
        demo.echo(f"  {_USERNAME}'s phone: {line}")
    demo.echo(f"    (sent to Meta by BSUID, in 'recipient': {received[0]['body'].get('recipient')})")


async def run_demo(settings: Settings, timeout_s: float, echo: Any = click.echo) -> DemoResult:
    """Send the conversation, show what the agent saw, and say how it went."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        demo = _Demo(settings, session, echo, timeout_s)
        await demo.check_running()
        conversation = demo_conversation()
        echo(f"{_CUSTOMER_NAME} writes to {DEMO_TENANT.name}, phone number id {DEMO_TENANT.phone_number_id}:")
        started = time.monotonic()
        sent_at: dict[str, float] = {}
        result = DemoResult(sent=len(conversation), delivered=0)
        for message in conversation:
            sent_at[message.wamid], refused = await demo.send(message)
            if refused:
                result.failed[message.wamid] = refused

        echo("")
        echo(f"the agent sees (Genesys simulator, integration {DEMO_TENANT.genesys_integration_id}):")
        await _wait_for_agent(demo, conversation, sent_at, result, started)
        if not result.failed:
            await _agent_answers(demo, result)
        if not result.failed and result.answer_problem is None:
            await _username_customer(demo, result)
        if result.failed:
            echo("")
            echo("failed:")
            for message in conversation:
                if message.wamid in result.failed:
                    echo(f"  {message.label} ({message.wamid}): {result.failed[message.wamid]}")
        if result.answer_problem:
            echo("")
            echo(f"failed: {result.answer_problem}")
        echo("")
        echo(summary_line(result.sent, result.delivered, len(result.failed), result.elapsed_s))
        return result


@click.command()
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds from the first message until every message must be at Genesys",
)
def demo(timeout_s: float) -> None:
    """Send a short customer conversation through the running bridge (`make run`), show what the agent saw,
    then let the agent answer and show what the customer's phone got."""
    try:
        result = asyncio.run(run_demo(Settings(), timeout_s))
    except (ConfigurationError, SimulatorRequestError) as exc:
        raise click.ClickException(str(exc)) from exc
    except aiohttp.ClientError as exc:
        raise click.ClickException(f"a simulator stopped answering during the demo: {exc}") from exc
    sys.exit(0 if result.ok else 1)
