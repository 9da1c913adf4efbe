"""FunctionRecord and AliasRecord <-> JSON text, for the store. Pure.

The JSON is the store's own format, not the wire format: field names are the
dataclasses' names, and a missing field takes its default (so records written by an
older Ember still load).
"""

from __future__ import annotations

import json
from dataclasses import fields, is_dataclass
from types import MappingProxyType
from typing import Any

from ember.model.functions import (
    AliasRecord,
    CodeInfo,
    FunctionConfig,
    FunctionRecord,
    LoggingConfig,
    State,
    UpdateStatus,
)


def dump_record(record: FunctionRecord) -> str:
    return json.dumps(_plain(record), separators=(",", ":"))


def load_record(text: str) -> FunctionRecord:
    data: dict[str, Any] = json.loads(text)
    config = dict(data["config"])
    config["environment"] = MappingProxyType(config.get("environment", {}))
    config["echoed"] = MappingProxyType(config.get("echoed", {}))
    config["architectures"] = tuple(config.get("architectures", ("x86_64",)))
    config["layers"] = tuple(config.get("layers", ()))
    config["logging"] = LoggingConfig(**config.get("logging", {}))
    data["config"] = FunctionConfig(**_known(FunctionConfig, config))
    data["code"] = CodeInfo(**data["code"])
    data["tags"] = MappingProxyType(data.get("tags", {}))
    data["state"] = State(data["state"])
    if data.get("last_update_status") is not None:
        data["last_update_status"] = UpdateStatus(data["last_update_status"])
    return FunctionRecord(**_known(FunctionRecord, data))


def dump_alias(alias: AliasRecord) -> str:
    return json.dumps(_plain(alias), separators=(",", ":"))


def load_alias(text: str) -> AliasRecord:
    data: dict[str, Any] = json.loads(text)
    data["routing"] = MappingProxyType(
        {version: float(weight) for version, weight in data.get("routing", {}).items()}
    )
    return AliasRecord(**_known(AliasRecord, data))


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _plain(value: object) -> object:
    """Dataclasses to dicts, mappings to dicts, tuples to lists; scalars as they are."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, MappingProxyType | dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
