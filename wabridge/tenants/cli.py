"""``wabridge tenants add | list | show | update | disable | enable | generate-key``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import orjson
from pydantic import SecretStr, ValidationError

from wabridge.connectors import postgres
from wabridge.connectors.tenant_directory import invalidate_cached
from wabridge.errors import ConfigurationError
from wabridge.settings import Settings
from wabridge.tenants.crypto import SecretBox, generate_key
from wabridge.tenants.models import (
    SECRET_FIELDS,
    PhoneNumber,
    Tenant,
    TenantConfig,
    TenantSecrets,
    mask_secret,
)
from wabridge.tenants.store import TenantNotFound, TenantStore, merge_phone_numbers

T = TypeVar("T")


def _run(work: Callable[[TenantStore], Awaitable[T]], *, changes: str | None = None) -> T:
    """Run ``work`` against the store; ``changes`` names the tenant it modifies, whose caches are cleared."""
    settings = Settings()

    async def main() -> T:
        box = SecretBox.from_settings(settings)
        pool = await postgres.connect(settings, min_size=1, max_size=2)
        try:
            store = TenantStore(pool, box)
            before = None
            if changes is not None:
                with contextlib.suppress(TenantNotFound):
                    before = await store.get(changes)
            result = await work(store)
            if changes is not None:
                # The edges' caches must not keep serving the old version of the tenant (nor route
                # a phone number it gave up).
                after = await store.get(changes)
                await invalidate_cached(settings, *([before] if before else []), after)
            return result
        finally:
            await pool.close()

    try:
        return asyncio.run(main())
    except (ConfigurationError, ValidationError) as exc:
        raise click.ClickException(str(exc)) from exc


def _parse_numbers(values: tuple[str, ...]) -> list[PhoneNumber]:
    numbers = []
    for value in values:
        phone_number_id, sep, rest = value.partition("=")
        display, _, waba_id = rest.partition("@")
        if not sep or not phone_number_id or not display:
            raise click.BadParameter(
                f"{value!r}: expected PHONE_NUMBER_ID=DISPLAY_NUMBER[@WABA_ID], e.g. 1065403522=15550783881@1022901293"
            )
        numbers.append(
            PhoneNumber(phone_number_id=phone_number_id, display_phone_number=display, waba_id=waba_id or None)
        )
    return numbers


def describe(tenant: Tenant) -> dict[str, Any]:
    """What an operator may see: everything but the secrets, which are masked."""
    return {
        "id": tenant.id,
        "name": tenant.name,
        "active": tenant.active,
        "phone_numbers": [p.model_dump() for p in tenant.phone_numbers],
        "config": tenant.config.model_dump(),
        "secrets": {name: mask_secret(getattr(tenant.secrets, name)) for name in SECRET_FIELDS},
    }


def _config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option("--genesys-region", help="Genesys region domain, e.g. mypurecloud.com, usw2.pure.cloud"),
            click.option("--genesys-client-id", help="OAuth client id (client credentials grant)"),
            click.option("--genesys-integration-id", help="Open Messaging integration id"),
            click.option("--genesys-api-url", help="Override the API host (https://api.<region>)"),
            click.option("--genesys-login-url", help="Override the login host (https://login.<region>)"),
            click.option("--meta-graph-url", help="Override the Graph API host (https://graph.facebook.com)"),
            click.option("--rate-limit-per-minute", type=int, help="Webhooks per minute for this tenant"),
            click.option(
                "--meta-marketing-messages-api/--no-meta-marketing-messages-api",
                default=None,
                help="Send MARKETING templates through Meta's Marketing Messages API (once onboarded to it)",
            ),
        ]
    ):
        func = option(func)
    return func


def _secret_options(required: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(SECRET_FIELDS):
            flag = "--" + name.replace("_", "-")
            if required:
                func = click.option(flag, prompt=True, hide_input=True, help=f"{name} (prompted when omitted)")(func)
            else:
                func = click.option(flag, help=f"new {name}")(func)
        return func

    return decorate


def _config_values(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k in TenantConfig.model_fields and v is not None}


@click.group()
def tenants() -> None:
    """Onboard and manage tenants (businesses) without SQL."""


@tenants.command("generate-key")
def generate_key_command() -> None:
    """Print a new WABRIDGE_SECRETS_KEY for encrypting tenant credentials."""
    click.echo(generate_key())


@tenants.command()
@click.option("--id", "tenant_id", required=True, help="Short id: lowercase letters, digits, - and _")
@click.option("--name", required=True)
@click.option(
    "--phone-number",
    "phone_numbers",
    multiple=True,
    required=True,
    help="PHONE_NUMBER_ID=DISPLAY_NUMBER[@WABA_ID] (the WABA lists the number's templates); repeat for several",
)
@click.option("--update", "replace", is_flag=True, help="Replace the tenant with this id if it exists")
@_config_options
@_secret_options(required=True)
def add(tenant_id: str, name: str, phone_numbers: tuple[str, ...], replace: bool, **options: Any) -> None:
    """Add a tenant; an existing one is replaced only with --update (else `tenants update`)."""
    secrets = TenantSecrets(**{k: SecretStr(options[k]) for k in SECRET_FIELDS})
    tenant = Tenant(
        id=tenant_id,
        name=name,
        phone_numbers=tuple(_parse_numbers(phone_numbers)),
        config=TenantConfig(**_config_values(options)),
        secrets=secrets,
    )

    async def work(store: TenantStore) -> None:
        if not replace:
            try:
                await store.get(tenant_id)
            except TenantNotFound:
                pass
            else:
                raise ConfigurationError(
                    f"tenant {tenant_id} exists: `tenants add --update` replaces it whole, "
                    "`tenants update` changes some of its settings"
                )
        await store.upsert(tenant)

    _run(work, changes=tenant_id)
    click.echo(f"tenant {tenant_id} saved")


@tenants.command("rotate-key")
def rotate_key() -> None:
    """Re-encrypt every stored tenant secret with the first key of WABRIDGE_SECRETS_KEY.

    Run it after putting a new key first in WABRIDGE_SECRETS_KEY (old keys after it) on every
    process; afterwards the old keys can be removed. Cached encrypted copies in Redis are dropped.
    """

    async def work(store: TenantStore) -> tuple[int, int, int]:
        rewritten, current = await store.rotate_secrets()
        every = await store.list()
        settings = Settings()
        for tenant in every:
            await invalidate_cached(settings, tenant)
        return rewritten, current, len(every)

    rewritten, current, count = _run(work)
    click.echo(f"{rewritten} tenants re-encrypted, {current} already under the current key; caches of {count} cleared")


@tenants.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts (secrets masked)")
def list_tenants(as_json: bool) -> None:
    """One line per tenant."""
    every = _run(lambda store: store.list())
    if as_json:
        click.echo(orjson.dumps([describe(tenant) for tenant in every]).decode())
        return
    for tenant in every:
        numbers = ",".join(p.phone_number_id for p in tenant.phone_numbers)
        state = "active" if tenant.active else "disabled"
        click.echo(f"{tenant.id}\t{state}\t{tenant.name}\t{numbers}")


@tenants.command()
@click.argument("tenant_id")
def show(tenant_id: str) -> None:
    """A tenant as JSON, secrets masked."""
    tenant = _run(lambda store: store.get(tenant_id))
    click.echo(orjson.dumps(describe(tenant), option=orjson.OPT_INDENT_2).decode())


@tenants.command()
@click.argument("tenant_id")
@click.option("--name")
@click.option("--add-phone-number", "added", multiple=True, help="PHONE_NUMBER_ID=DISPLAY_NUMBER[@WABA_ID]")
@click.option("--remove-phone-number", "removed", multiple=True, help="PHONE_NUMBER_ID")
@_config_options
@_secret_options(required=False)
def update(tenant_id: str, name: str | None, added: tuple[str, ...], removed: tuple[str, ...], **options: Any) -> None:
    """Change some of a tenant's settings or credentials."""

    async def work(store: TenantStore) -> None:
        current = await store.get(tenant_id)
        secrets = current.secrets.model_copy(update={k: SecretStr(options[k]) for k in SECRET_FIELDS if options.get(k)})
        config = TenantConfig(**{**current.config.model_dump(), **_config_values(options)})
        updated = current.model_copy(
            update={
                "name": name or current.name,
                "phone_numbers": merge_phone_numbers(current.phone_numbers, _parse_numbers(added), removed),
                "config": config,
                "secrets": secrets,
            }
        )
        await store.upsert(Tenant.model_validate(updated.model_dump()))

    _run(work, changes=tenant_id)
    click.echo(f"tenant {tenant_id} updated")


@tenants.command()
@click.argument("tenant_id")
def disable(tenant_id: str) -> None:
    """Stop accepting this tenant's webhooks (Meta gets 403)."""
    _run(lambda store: store.set_active(tenant_id, False), changes=tenant_id)
    click.echo(f"tenant {tenant_id} disabled")


@tenants.command()
@click.argument("tenant_id")
def enable(tenant_id: str) -> None:
    """Accept this tenant's webhooks again."""
    _run(lambda store: store.set_active(tenant_id, True), changes=tenant_id)
    click.echo(f"tenant {tenant_id} enabled")
