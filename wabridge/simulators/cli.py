"""``wabridge sim …``: run the simulators, and drive their customers and agents from a shell."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

import aiohttp
import click
import orjson
from pydantic import SecretStr

from wabridge.settings import Settings
from wabridge.simulators.agent import AgentDriver
from wabridge.simulators.customer import MESSAGE_KINDS, CustomerDriver, InboundSpec
from wabridge.simulators.genesys import GenesysSimulator
from wabridge.simulators.genesys_config import GenesysClient, GenesysIntegration, GenesysSimConfig
from wabridge.simulators.meta import MetaSimulator
from wabridge.simulators.meta_config import MetaPhoneNumber, MetaSimConfig


@click.group()
@click.pass_context
def sim(ctx: click.Context) -> None:
    """Local stand-ins for Meta's WhatsApp Cloud API and Genesys Cloud Open Messaging."""
    settings = Settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(message)s")
    ctx.obj = settings


async def _serve_until_signalled(simulator: MetaSimulator | GenesysSimulator, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with simulator.serve(host=host, port=port) as running:
        click.echo(f"{type(simulator).__name__} listening on {running.url}", err=True)
        await stop.wait()


def _load_json(path: Path | None) -> dict[str, Any]:
    return orjson.loads(path.read_bytes()) if path else {}


@sim.command("meta")
@click.option("--host", default=None, help="Default: WABRIDGE_SIM_META_HOST.")
@click.option("--port", type=int, default=None, help="Default: WABRIDGE_SIM_META_PORT.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, path_type=Path),
    help="JSON with the shape of PUT /__sim/config.",
)
@click.option("--phone-number-id", help="Register one business number (with the options below).")
@click.option("--access-token")
@click.option("--app-secret")
@click.option("--webhook-url", help="Where inbound and status webhooks go.")
@click.option("--display-phone-number", default="15550783881", show_default=True)
@click.option("--waba-id", default="102290129340398", show_default=True)
@click.option("--media-url-ttl", type=float, default=None, help="Seconds a media URL lives (Meta: 300).")
@click.pass_obj
def meta_command(
    settings: Settings,
    host: str | None,
    port: int | None,
    config_path: Path | None,
    phone_number_id: str | None,
    access_token: str | None,
    app_secret: str | None,
    webhook_url: str | None,
    display_phone_number: str,
    waba_id: str,
    media_url_ttl: float | None,
) -> None:
    """Run the Meta WhatsApp Cloud API simulator."""
    config = MetaSimConfig.model_validate(_load_json(config_path))
    simulator = MetaSimulator(config)
    if phone_number_id:
        if not access_token or not app_secret:
            raise click.UsageError("--phone-number-id needs --access-token and --app-secret")
        simulator.upsert_phone_number(
            MetaPhoneNumber(
                phone_number_id=phone_number_id,
                access_token=SecretStr(access_token),
                app_secret=SecretStr(app_secret),
                webhook_url=webhook_url,
                display_phone_number=display_phone_number,
                waba_id=waba_id,
            )
        )
    if media_url_ttl is not None:
        simulator.update(media_url_ttl_s=media_url_ttl)
    asyncio.run(
        _serve_until_signalled(
            simulator, host or settings.sim_meta_host, settings.sim_meta_port if port is None else port
        )
    )


@sim.command("genesys")
@click.option("--host", default=None, help="Default: WABRIDGE_SIM_GENESYS_HOST.")
@click.option("--port", type=int, default=None, help="Default: WABRIDGE_SIM_GENESYS_PORT.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, path_type=Path),
    help="JSON with the shape of PUT /__sim/config.",
)
@click.option("--client-id", help="Register one OAuth client (with --client-secret).")
@click.option("--client-secret")
@click.option("--token-ttl", type=int, default=86_400, show_default=True, help="expires_in of issued tokens.")
@click.option("--integration-id", help="Register one Open Messaging integration.")
@click.option("--webhook-url", help="The integration's outbound notification webhook URL.")
@click.option("--webhook-secret", help="The integration's outbound webhook signing secret.")
@click.option(
    "--rate-limit", type=int, default=None, help="Requests/minute per client (Genesys: 300); 0 switches it off."
)
@click.pass_obj
def genesys_command(
    settings: Settings,
    host: str | None,
    port: int | None,
    config_path: Path | None,
    client_id: str | None,
    client_secret: str | None,
    token_ttl: int,
    integration_id: str | None,
    webhook_url: str | None,
    webhook_secret: str | None,
    rate_limit: int | None,
) -> None:
    """Run the Genesys Cloud (OAuth + Open Messaging) simulator."""
    simulator = GenesysSimulator(GenesysSimConfig.model_validate(_load_json(config_path)))
    if client_id:
        if not client_secret:
            raise click.UsageError("--client-id needs --client-secret")
        simulator.upsert_client(
            GenesysClient(client_id=client_id, client_secret=SecretStr(client_secret), token_ttl_s=token_ttl)
        )
    if integration_id:
        simulator.upsert_integration(
            GenesysIntegration(
                integration_id=integration_id,
                outbound_webhook_url=webhook_url,
                outbound_webhook_secret=SecretStr(webhook_secret) if webhook_secret else None,
            )
        )
    if rate_limit is not None:
        simulator.update(rate_limit_per_minute=rate_limit)
    asyncio.run(
        _serve_until_signalled(
            simulator, host or settings.sim_genesys_host, settings.sim_genesys_port if port is None else port
        )
    )


@sim.group()
def customer() -> None:
    """Send WhatsApp customer messages through a running Meta simulator."""


@customer.command("types")
def customer_types() -> None:
    """List the message kinds the customer driver generates."""
    for kind in MESSAGE_KINDS:
        click.echo(kind)


@customer.command("send")
@click.option(
    "--type",
    "kinds",
    multiple=True,
    type=click.Choice(MESSAGE_KINDS),
    default=["text"],
    show_default=True,
    help="Repeat for several messages.",
)
@click.option("--phone-number-id", required=True, help="The business number the customer writes to.")
@click.option("--meta-url", default=None, help="Meta simulator base URL; default from settings.")
@click.option("--to-webhook", default=None, help="Post here instead of the number's configured webhook URL.")
@click.option("--wa-id", default="16505551234", show_default=True)
@click.option(
    "--customers",
    type=int,
    default=1,
    show_default=True,
    help="Spread the messages over this many customers (wa_id + 0, 1, …).",
)
@click.option("--name", default="Sheena Nelson", show_default=True)
@click.option("--text", default=None, help="Text body, media caption or order note.")
@click.option("--user-id", default=None, help="BSUID (contacts[].user_id, from_user_id).")
@click.option("--bsuid-only", is_flag=True, help="Omit wa_id/from, as for users with a username.")
@click.option("--reply-to", default=None, help="wamid the message replies to (context).")
@click.option("--forwarded", is_flag=True)
@click.option("--ad-referral", is_flag=True)
@click.option("--batch", is_flag=True, help="All messages in one POST.")
@click.option("--duplicate", is_flag=True, help="Post every body twice.")
@click.option("--shuffle", is_flag=True, help="Post in random order.")
@click.option("--json-style", type=click.Choice(["utf8", "meta_escaped"]), default="utf8", show_default=True)
@click.pass_obj
def customer_send(
    settings: Settings,
    kinds: tuple[str, ...],
    phone_number_id: str,
    meta_url: str | None,
    to_webhook: str | None,
    wa_id: str,
    customers: int,
    name: str,
    text: str | None,
    user_id: str | None,
    bsuid_only: bool,
    reply_to: str | None,
    forwarded: bool,
    ad_referral: bool,
    batch: bool,
    duplicate: bool,
    shuffle: bool,
    json_style: str,
) -> None:
    """Generate, sign and post inbound webhooks; prints the wamids and the HTTP statuses."""
    specs = [
        InboundSpec(
            kind=kind,
            wa_id=str(int(wa_id) + index % customers),
            name=name,
            text=text,
            user_id=user_id,
            bsuid_only=bsuid_only,
            reply_to=reply_to,
            forwarded=forwarded,
            ad_referral=ad_referral,
        )
        for index, kind in enumerate(kinds)
    ]
    base = meta_url or f"http://{settings.sim_meta_host}:{settings.sim_meta_port}"

    async def run() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            return await CustomerDriver(base, session).send(
                phone_number_id,
                specs,
                batch=batch,
                duplicate=duplicate,
                shuffle=shuffle,
                json_style="meta_escaped" if json_style == "meta_escaped" else "utf8",
                webhook_url=to_webhook,
            )

    click.echo(orjson.dumps(asyncio.run(run()), option=orjson.OPT_INDENT_2).decode())


@sim.group()
def agent() -> None:
    """Send Genesys agent messages (outbound webhooks) through a running Genesys simulator."""


@agent.command("send")
@click.option("--integration-id", required=True)
@click.option("--to", "to_id", required=True, help="The customer id (the wa_id the bridge sent as from.id).")
@click.option("--text", default=None)
@click.option("--attachment", "attachments", multiple=True, type=click.Choice(["image", "video", "audio", "document"]))
@click.option("--typing", is_flag=True, help="Send a typing Event instead of Text.")
@click.option("--genesys-url", default=None, help="Genesys simulator base URL; default from settings.")
@click.option("--no-wait", is_flag=True, help="Return before Genesys's retries finish.")
@click.pass_obj
def agent_send(
    settings: Settings,
    integration_id: str,
    to_id: str,
    text: str | None,
    attachments: tuple[str, ...],
    typing: bool,
    genesys_url: str | None,
    no_wait: bool,
) -> None:
    """Post an agent message to the integration's outbound webhook, signed, with Genesys's retries."""
    base = genesys_url or f"http://{settings.sim_genesys_host}:{settings.sim_genesys_port}"

    async def run() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            driver = AgentDriver(base, session)
            if typing:
                return await driver.send_typing(integration_id, to_id, wait=not no_wait)
            return await driver.send_text(
                integration_id, to_id, text or "", attachments=list(attachments), wait=not no_wait
            )

    click.echo(orjson.dumps(asyncio.run(run()), option=orjson.OPT_INDENT_2).decode())
