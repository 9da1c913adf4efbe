"""What a function is: its user-set configuration, its code identity, its lifecycle state.

All records are frozen; a change makes a new record (``dataclasses.replace``), which is
what the store persists. Field names follow Python style; ``api/`` maps them to the
wire names of botocore's model.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

LATEST = "$LATEST"


class State(enum.StrEnum):
    PENDING = "Pending"
    ACTIVE = "Active"
    FAILED = "Failed"
    INACTIVE = "Inactive"


class UpdateStatus(enum.StrEnum):
    IN_PROGRESS = "InProgress"
    SUCCESSFUL = "Successful"
    FAILED = "Failed"


def frozen_map(values: dict[str, str] | None = None) -> MappingProxyType[str, str]:
    return MappingProxyType(dict(values or {}))


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    log_format: str = "Text"  # Text | JSON
    log_group: str | None = None  # None = /aws/lambda/<name>
    application_log_level: str | None = None  # TRACE..FATAL, JSON format only
    system_log_level: str | None = None  # DEBUG | INFO | WARN, JSON format only


@dataclass(frozen=True, slots=True)
class FunctionConfig:
    """Everything CreateFunction / UpdateFunctionConfiguration set (already validated)."""

    runtime: str
    handler: str
    role: str
    description: str = ""
    timeout: int = 3  # seconds, 1..900
    memory_size: int = 128  # MB, 128..10240
    ephemeral_storage: int = 512  # MB, 512..10240
    environment: MappingProxyType[str, str] = field(default_factory=frozen_map)
    architectures: tuple[str, ...] = ("x86_64",)
    tracing_mode: str = "PassThrough"
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    layers: tuple[str, ...] = ()  # layer version ARNs, in order
    layer_code_sizes: tuple[int, ...] = ()  # CodeSize of each of ``layers`` (same order)
    dead_letter_target: str | None = None
    # Accepted and echoed back unchanged, not acted on (VpcConfig, KMSKeyArn, ...):
    # wire name => wire value.
    echoed: MappingProxyType[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """Identity of an uploaded zip in the content-addressed blob store."""

    sha256_hex: str  # blob key
    sha256_b64: str  # CodeSha256 on the wire
    size: int  # CodeSize: bytes of the zip


@dataclass(frozen=True, slots=True)
class FunctionRecord:
    """One function's ``$LATEST``: configuration, code and lifecycle.

    Invariant: ``revision_id`` changes on every persisted change (config, code, state).
    """

    name: str
    config: FunctionConfig
    code: CodeInfo
    revision_id: str
    last_modified: float  # epoch seconds of the last config/code change
    state: State = State.PENDING
    state_reason: str | None = "The function is being created."
    state_reason_code: str | None = "Creating"
    last_update_status: UpdateStatus | None = None
    last_update_status_reason: str | None = None
    last_update_status_reason_code: str | None = None
    tags: MappingProxyType[str, str] = field(default_factory=frozen_map)
    version: str = LATEST
    reserved_concurrency: int | None = None  # PutFunctionConcurrency; None = unreserved
