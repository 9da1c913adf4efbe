"""What a function is: its user-set configuration, its code identity, its lifecycle state,
its published versions and its aliases.

A published version is a ``FunctionRecord`` whose ``version`` is its number ("1", "2", …):
an immutable snapshot of ``$LATEST``'s code and configuration. An alias is a named pointer
to one version, optionally with a second version and the weight of traffic it gets.

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
    # On $LATEST only: the highest version number ever published (numbers are never reused).
    last_version: int = 0

    @property
    def published(self) -> bool:
        return self.version != LATEST


@dataclass(frozen=True, slots=True)
class AliasRecord:
    """One alias of a function: ``name`` → ``function_version`` (+ one weighted extra).

    Invariant: ``revision_id`` changes on every persisted change; ``routing`` holds at most
    one version (never ``function_version`` itself) with a weight in [0, 1].
    """

    function_name: str
    name: str
    function_version: str
    revision_id: str
    description: str = ""
    routing: MappingProxyType[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def versions(self) -> tuple[str, ...]:
        """Every version this alias can route to, the primary first."""
        return (self.function_version, *self.routing)
