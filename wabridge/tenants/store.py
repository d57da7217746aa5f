"""Tenants in PostgreSQL: ``tenants``, ``tenant_phone_numbers``, ``tenant_credentials`` (encrypted)."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import Any

import asyncpg
import orjson
from pydantic import SecretStr

from wabridge.errors import ConfigurationError
from wabridge.schemas.meta import WABA_ROUTE_PREFIX as WABA_ROUTE
from wabridge.tenants.crypto import SecretBox
from wabridge.tenants.models import SECRET_FIELDS, PhoneNumber, Tenant, TenantConfig, TenantSecrets


class TenantNotFound(ConfigurationError):
    pass


class TenantStore:
    def __init__(self, pool: asyncpg.Pool, box: SecretBox) -> None:
        self._pool = pool
        self._box = box

    def _encrypt(self, secrets: TenantSecrets) -> str:
        encrypted = {name: self._box.encrypt(getattr(secrets, name).get_secret_value()) for name in SECRET_FIELDS}
        return orjson.dumps(encrypted).decode()

    def _decrypt(self, stored: str | dict[str, Any]) -> TenantSecrets:
        data = orjson.loads(stored) if isinstance(stored, str) else stored
        return TenantSecrets(**{name: SecretStr(self._box.decrypt(data[name])) for name in SECRET_FIELDS})

    async def upsert(self, tenant: Tenant) -> None:
        """Create the tenant or replace all of its data (phone numbers, config, credentials)."""
        async with self._pool.acquire() as conn, conn.transaction():
            owners = await conn.fetch(
                "SELECT phone_number_id, tenant_id FROM tenant_phone_numbers"
                " WHERE phone_number_id = ANY($1::text[]) AND tenant_id <> $2",
                [p.phone_number_id for p in tenant.phone_numbers],
                tenant.id,
            )
            if owners:
                taken = ", ".join(f"{r['phone_number_id']} (tenant {r['tenant_id']})" for r in owners)
                raise ConfigurationError(f"phone number ids already belong to another tenant: {taken}")
            await conn.execute(
                "INSERT INTO tenants (id, name, active, config) VALUES ($1, $2, $3, $4::jsonb)"
                " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, active = EXCLUDED.active,"
                " config = EXCLUDED.config, updated_at = NOW()",
                tenant.id,
                tenant.name,
                tenant.active,
                tenant.config.model_dump_json(),
            )
            await conn.execute("DELETE FROM tenant_phone_numbers WHERE tenant_id = $1", tenant.id)
            await conn.executemany(
                "INSERT INTO tenant_phone_numbers (phone_number_id, tenant_id, display_phone_number, waba_id)"
                " VALUES ($1, $2, $3, $4)",
                [(p.phone_number_id, tenant.id, p.display_phone_number, p.waba_id) for p in tenant.phone_numbers],
            )
            await conn.execute(
                "INSERT INTO tenant_credentials (tenant_id, credentials) VALUES ($1, $2::jsonb)"
                " ON CONFLICT (tenant_id) DO UPDATE SET credentials = EXCLUDED.credentials,"
                " updated_at = NOW()",
                tenant.id,
                self._encrypt(tenant.secrets),
            )

    async def rotate_secrets(self) -> tuple[int, int]:
        """Re-encrypt every tenant's credentials with the keyring's first key, in one transaction.

        Returns (tenants rewritten, tenants already current). A credential no key decrypts stops
        the rotation with nothing changed (``ConfigurationError``).
        """
        rewritten = current = 0
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT tenant_id, credentials FROM tenant_credentials ORDER BY tenant_id FOR UPDATE"
            )
            for row in rows:
                stored = row["credentials"]
                data: dict[str, str] = orjson.loads(stored) if isinstance(stored, str) else dict(stored)
                if all(self._box.is_current(data[name]) for name in SECRET_FIELDS):
                    current += 1
                    continue
                try:
                    rotated = {name: self._box.rotate(data[name]) for name in SECRET_FIELDS}
                except ConfigurationError as exc:
                    raise ConfigurationError(f"tenant {row['tenant_id']}: {exc}") from exc
                await conn.execute(
                    "UPDATE tenant_credentials SET credentials = $2::jsonb, updated_at = NOW() WHERE tenant_id = $1",
                    row["tenant_id"],
                    orjson.dumps(rotated).decode(),
                )
                rewritten += 1
        return rewritten, current

    async def get(self, tenant_id: str) -> Tenant:
        tenants = await self._load("WHERE t.id = $1", tenant_id)
        if not tenants:
            raise TenantNotFound(f"no tenant with id {tenant_id!r}")
        return tenants[0]

    async def find_by_phone_number_id(self, phone_number_id: str) -> Tenant | None:
        """The tenant of a phone number id, or of ``waba:{id}``: the WhatsApp Business Account of
        one of its numbers (Meta's template webhooks name only the WABA)."""
        if phone_number_id.startswith(WABA_ROUTE):
            where = (
                "WHERE t.id = (SELECT tenant_id FROM tenant_phone_numbers WHERE waba_id = $1"
                " ORDER BY tenant_id LIMIT 1)"
            )
            tenants = await self._load(where, phone_number_id.removeprefix(WABA_ROUTE))
        else:
            where = "WHERE t.id = (SELECT tenant_id FROM tenant_phone_numbers WHERE phone_number_id = $1)"
            tenants = await self._load(where, phone_number_id)
        return tenants[0] if tenants else None

    async def phone_number_ids(self) -> frozenset[str]:
        """Every phone number id some tenant owns, and ``waba:{id}`` for their numbers' WhatsApp
        Business Accounts (one query, no secrets decrypted)."""
        rows = await self._pool.fetch(
            "SELECT phone_number_id AS id FROM tenant_phone_numbers"
            " UNION SELECT $1 || waba_id FROM tenant_phone_numbers WHERE waba_id IS NOT NULL",
            WABA_ROUTE,
        )
        return frozenset(str(r["id"]) for r in rows)

    async def list(self) -> builtins.list[Tenant]:
        return await self._load("")

    async def list_readable(self) -> tuple[builtins.list[Tenant], dict[str, TenantConfig]]:
        """Every tenant whose credentials this deployment's keys decrypt, and the configuration of
        each one whose credentials they do not (by tenant id): one such tenant must not make every
        other tenant's lookups fail."""
        readable, unreadable = [], {}
        for row in await self._rows(""):
            try:
                readable.append(self._tenant(row))
            except ConfigurationError:
                unreadable[row["id"]] = TenantConfig.model_validate_json(row["config"])
        return readable, unreadable

    async def set_active(self, tenant_id: str, active: bool) -> None:
        result = await self._pool.execute(
            "UPDATE tenants SET active = $2, updated_at = NOW() WHERE id = $1", tenant_id, active
        )
        if result.endswith(" 0"):
            raise TenantNotFound(f"no tenant with id {tenant_id!r}")

    async def _load(self, where: str, *args: object) -> builtins.list[Tenant]:
        return [self._tenant(row) for row in await self._rows(where, *args)]

    async def _rows(self, where: str, *args: object) -> builtins.list[asyncpg.Record]:
        rows: builtins.list[asyncpg.Record] = await self._pool.fetch(
            # `where` is one of this class's fixed clauses; values go in as parameters.
            "SELECT t.id, t.name, t.active, t.config, c.credentials,"  # noqa: S608
            " COALESCE(json_agg(json_build_object('phone_number_id', p.phone_number_id,"
            " 'display_phone_number', p.display_phone_number, 'waba_id', p.waba_id) ORDER BY p.phone_number_id)"
            " FILTER (WHERE p.phone_number_id IS NOT NULL), '[]') AS phone_numbers"
            " FROM tenants t JOIN tenant_credentials c ON c.tenant_id = t.id"
            " LEFT JOIN tenant_phone_numbers p ON p.tenant_id = t.id "
            f"{where} GROUP BY t.id, c.credentials ORDER BY t.id",
            *args,
        )
        return rows

    def _tenant(self, row: asyncpg.Record) -> Tenant:
        return Tenant(
            id=row["id"],
            name=row["name"],
            active=row["active"],
            config=TenantConfig.model_validate_json(row["config"]),
            phone_numbers=tuple(PhoneNumber(**p) for p in orjson.loads(row["phone_numbers"])),
            secrets=self._decrypt(row["credentials"]),
        )


def merge_phone_numbers(
    current: Iterable[PhoneNumber], added: Iterable[PhoneNumber], removed: Iterable[str]
) -> tuple[PhoneNumber, ...]:
    by_id = {p.phone_number_id: p for p in current}
    for p in added:
        by_id[p.phone_number_id] = p
    for phone_number_id in removed:
        by_id.pop(phone_number_id, None)
    return tuple(by_id[k] for k in sorted(by_id))
