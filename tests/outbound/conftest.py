"""The outbound handler's tests use the delivery tests' Genesys simulator and client."""

from tests.delivery.conftest import (  # noqa: F401 - fixtures, re-exported for this package
    delivery_redis,
    genesys_auth,
    genesys_client,
    genesys_sim,
)
