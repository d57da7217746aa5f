"""S3 / MinIO: the client, and the buckets with their versioning and lifecycle rules."""

from __future__ import annotations

import io
from dataclasses import dataclass
from urllib.parse import urlsplit

from miniopy_async.api import Minio
from miniopy_async.commonconfig import ENABLED, Filter
from miniopy_async.lifecycleconfig import Expiration, LifecycleConfig, Rule, Transition
from miniopy_async.versioningconfig import VersioningConfig

from wabridge.settings import Settings

# The storage class raw webhooks move to after 7 days (S3 Glacier; MinIO maps it to its tier).
COLD_STORAGE_CLASS = "GLACIER"


@dataclass(frozen=True)
class BucketPolicy:
    name: str
    versioned: bool
    expire_days: int
    cold_after_days: int | None = None


def bucket_policies(settings: Settings) -> list[BucketPolicy]:
    """The seed's buckets: raw webhooks 7 d to cold and 30 d delete (versioned); media 90 d / 30 d."""
    return [
        BucketPolicy(settings.s3_bucket_webhooks, versioned=True, expire_days=30, cold_after_days=7),
        BucketPolicy(settings.s3_bucket_media_inbound, versioned=False, expire_days=90),
        BucketPolicy(settings.s3_bucket_media_outbound, versioned=False, expire_days=30),
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
    transition = (
        Transition(days=policy.cold_after_days, storage_class=COLD_STORAGE_CLASS)
        if policy.cold_after_days is not None
        else None
    )
    rule = Rule(
        ENABLED,
        rule_filter=Filter(prefix=""),
        rule_id=f"{policy.name}-retention",
        transition=transition,
        expiration=Expiration(days=policy.expire_days),
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
