"""Meta WhatsApp Cloud API and Genesys Cloud Open Messaging stand-ins, faithful to ``reference/``.

Both are real aiohttp servers with per-process state, configurable by constructor and at runtime
(``/__sim/…`` admin endpoints), and both log every request they receive (``GET /__sim/requests``).
"""

from wabridge.simulators.agent import AgentDriver, build_agent_text, build_agent_typing, sign_outbound
from wabridge.simulators.customer import (
    MESSAGE_KINDS,
    CustomerDriver,
    InboundSpec,
    build_message,
    build_webhook,
    encode_webhook,
    sign_webhook,
)
from wabridge.simulators.faults import FaultPlan, Latency
from wabridge.simulators.genesys import GenesysSimulator
from wabridge.simulators.genesys_config import GenesysClient, GenesysIntegration, GenesysSimConfig
from wabridge.simulators.hosting import SimulatorRequestError
from wabridge.simulators.meta import MetaSimulator
from wabridge.simulators.meta_config import MetaPhoneNumber, MetaSimConfig

__all__ = [
    "MESSAGE_KINDS",
    "AgentDriver",
    "CustomerDriver",
    "FaultPlan",
    "GenesysClient",
    "GenesysIntegration",
    "GenesysSimConfig",
    "GenesysSimulator",
    "InboundSpec",
    "Latency",
    "MetaPhoneNumber",
    "MetaSimConfig",
    "MetaSimulator",
    "SimulatorRequestError",
    "build_agent_text",
    "build_agent_typing",
    "build_message",
    "build_webhook",
    "encode_webhook",
    "sign_outbound",
    "sign_webhook",
]
