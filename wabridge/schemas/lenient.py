"""Reading untrusted JSON leniently: a value of the wrong shape counts as empty, never as an error.

Shared by the parsers of what Meta and Genesys send (``schemas.genesys``) and the transforms that
read Meta's message objects (``transforms.inbound``), where a field may hold anything.
"""

from __future__ import annotations

from typing import Any


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def as_dicts(value: Any) -> list[dict[str, Any]]:
    """The JSON objects in ``value`` if it is a list (other items skipped), else none."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
