"""S3 / MinIO: the client, and the buckets with their versioning and lifecycle rules."""

from __future__ import annotations

import io
from dataclasses import dataclass
from urllib.parse import urlsplit

from miniopy_async.api import Minio
from miniopy_async.commonconfig import ENABLED, Filter
from miniopy_async.lifecycleconfig import (
    Expiration,
    LifecycleConfig,
    NoncurrentVersionExpiration,
    Rule,
    Transition,
)
from miniopy_async.versioningconfig import VersioningConfig

from wabridge.settings import Settings


@dataclass(frozen=True)
class BucketPolicy:
    name: str
    versioned: bool
    expire_days: int
    # (tier or storage class, days): only when the deployment names a tier (Settings.s3_cold_tier).
    cold: tuple[str, int] | None = None


def bucket_policies(settings: Settings) -> list[BucketPolicy]:
    """The seed's buckets: raw webhooks 30 d (versioned, to a cold tier after 7 d when one is
    configured); media 90 d inbound, 30 d outbound. Days come from the settings."""
    s = settings
    cold = (s.s3_cold_tier, s.s3_cold_after_days) if s.s3_cold_tier else None
    return [
        BucketPolicy(s.s3_bucket_webhooks, versioned=True, expire_days=s.s3_webhooks_retention_days, cold=cold),
        BucketPolicy(s.s3_bucket_media_inbound, versioned=False, expire_days=s.s3_media_inbound_retention_days),
        BucketPolicy(s.s3_bucket_media_outbound, versioned=False, expire_days=s.s3_media_outbound_retention_days),
    ]


def client(settings: Settings, *, public: bool = False) -> Minio:
    """A client for the S3 endpoint; ``public`` signs URLs for the host Genesys can reach."""
    endpoint = settings.s3_public_endpoint if public and settings.s3_public_endpoint else settings.s3_endpoint
    parts = urlsplit(endpoint)
    return Minio(
        parts.netloc,
        access_key=settings.s3_access_key.get_secret_value(),
        secret_key=settings.s3_secret_key.get_secret_value(),
        secure=parts.scheme == "https",
        region=settings.s3_region,
    )


def _lifecycle(policy: BucketPolicy) -> LifecycleConfig:
    """Expiry, which every S3 server accepts (a plain MinIO included); a transition only to a
    configured tier. In a versioned bucket expiry only hides the current version behind a delete
    marker, so noncurrent versions expire too, or they would be kept forever."""
    rule = Rule(
        ENABLED,
        rule_filter=Filter(prefix=""),
        rule_id=f"{policy.name}-retention",
        transition=Transition(days=policy.cold[1], storage_class=policy.cold[0]) if policy.cold else None,
        expiration=Expiration(days=policy.expire_days),
        noncurrent_version_expiration=(
            NoncurrentVersionExpiration(noncurrent_days=policy.expire_days) if policy.versioned else None
        ),
    )
    return LifecycleConfig([rule])


async def ensure_buckets(settings: Settings) -> list[str]:
    """Create the buckets and (re)apply their rules; idempotent. Returns the buckets it created."""
    created = []
    async with client(settings) as s3:
        for policy in bucket_policies(settings):
            if not await s3.bucket_exists(policy.name):
                await s3.make_bucket(policy.name)
                created.append(policy.name)
            if policy.versioned:
                await s3.set_bucket_versioning(policy.name, VersioningConfig(ENABLED))
            await s3.set_bucket_lifecycle(policy.name, _lifecycle(policy))
    return created


async def put_bytes(client: Minio, bucket: str, key: str, data: bytes, content_type: str = "application/json") -> None:
    await client.put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type)


async def get_bytes(client: Minio, bucket: str, key: str) -> bytes:
    """The object's bytes; its HTTP response released whatever happens (miniopy-async leaves that to us)."""
    response = await client.get_object(bucket, key)
    try:
        return bytes(await response.read())
    finally:
        response.release()


async def close(client: Minio) -> None:
    """Close ``client``'s HTTP session (miniopy-async leaves the method untyped)."""
    await client.close_session()  # type: ignore[no-untyped-call]
