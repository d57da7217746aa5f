"""Check a payload against Genesys's official SDK models (``PureCloudPlatformClientV2``), strictly.

Each JSON key is set through the SDK model's own property setter. The SDK's enum setters (version
269) do not raise on a value outside the enum; they store ``"outdated_sdk_version"`` instead, so
this checker turns that marker into a ``ValueError``. Stricter than the SDK's deserializer, a key the
model does not know fails too (the SDK silently ignores it), except what the reference documents
and the SDK's models lack: ``channel.metadata.customAttributes`` (string -> string) and a receipt's
``direction``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from PureCloudPlatformClientV2 import models as sdk_models

# Paths (dotted, list indices dropped) that the reference documents beyond the SDK's models:
# customAttributes (string -> string) and the receipt's "direction": "Outbound" of the reference example.
_STRING_MAP_EXTENSIONS = {"channel.metadata.customAttributes"}
_STRING_EXTENSIONS = {("OpenInboundNormalizedReceipt", "direction"): ("Outbound",)}
_OUTSIDE_ENUM = "outdated_sdk_version"
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


class SdkMismatch(AssertionError):
    pass


def build(model_name: str, data: Any) -> Any:
    """The SDK model instance for ``data``; raises ``ValueError`` or ``SdkMismatch`` when it is not one."""
    return _build(model_name, data, "")


def _build(type_name: str, data: Any, path: str) -> Any:
    if data is None:
        return None
    if type_name.startswith("list["):
        if not isinstance(data, list):
            raise SdkMismatch(f"{path}: expected a list, got {type(data).__name__}")
        inner = type_name[5:-1]
        return [_build(inner, item, path) for item in data]
    if type_name.startswith("dict("):
        if not isinstance(data, dict):
            raise SdkMismatch(f"{path}: expected an object, got {type(data).__name__}")
        inner = type_name[5:-1].split(", ", 1)[1]
        return {key: _build(inner, item, f"{path}.{key}") for key, item in data.items()}
    if type_name == "str":
        if not isinstance(data, str):
            raise SdkMismatch(f"{path}: expected a string, got {data!r}")
        return data
    if type_name == "bool":
        if not isinstance(data, bool):
            raise SdkMismatch(f"{path}: expected a boolean, got {data!r}")
        return data
    if type_name == "int":
        if not isinstance(data, int) or isinstance(data, bool):
            raise SdkMismatch(f"{path}: expected an integer, got {data!r}")
        return data
    if type_name == "datetime":
        if not isinstance(data, str) or not _TIME.match(data):
            raise SdkMismatch(f"{path}: expected ISO-8601 UTC with milliseconds, got {data!r}")
        return datetime.fromisoformat(data)
    model_class = getattr(sdk_models, type_name)
    if not isinstance(data, dict):
        raise SdkMismatch(f"{path}: expected a {type_name} object, got {data!r}")
    instance = model_class()
    by_json_key = {json_key: attr for attr, json_key in instance.attribute_map.items()}
    for key, item in data.items():
        child_path = f"{path}.{key}" if path else key
        if key not in by_json_key:
            allowed = _STRING_EXTENSIONS.get((type_name, child_path))
            if allowed is not None:
                if item not in allowed:
                    raise ValueError(f"{child_path}: {item!r} is not one of {allowed}")
                continue
            if child_path in _STRING_MAP_EXTENSIONS:
                if not isinstance(item, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in item.items()
                ):
                    raise SdkMismatch(f"{child_path}: must map strings to strings")
                continue
            raise SdkMismatch(f"{child_path}: not a field of {type_name}")
        attr = by_json_key[key]
        built = _build(instance.swagger_types[attr], item, child_path)
        setattr(instance, attr, built)
        # SDK 269's enum setters do not raise: they store this marker for a value outside the enum.
        if isinstance(built, str) and built != _OUTSIDE_ENUM and getattr(instance, attr) == _OUTSIDE_ENUM:
            raise ValueError(f"{child_path}: {item!r} is not an allowed value of {type_name}.{attr}")
    return instance
