"""Records to wire shapes (botocore's model names), for responses. Pure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ember.model.functions import AliasRecord, FunctionRecord


def last_modified(epoch: float) -> str:
    """``2020-04-10T19:06:32.563+0000``: FunctionConfiguration's string timestamp."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def function_configuration(record: FunctionRecord, arn: str, runtime_arn: str) -> dict[str, Any]:
    config = record.config
    shape: dict[str, Any] = {
        "FunctionName": record.name,
        "FunctionArn": arn,
        "Runtime": config.runtime,
        "Role": config.role,
        "Handler": config.handler,
        "CodeSize": record.code.size,
        "Description": config.description,
        "Timeout": config.timeout,
        "MemorySize": config.memory_size,
        "LastModified": last_modified(record.last_modified),
        "CodeSha256": record.code.sha256_b64,
        "Version": record.version,
        "Environment": {"Variables": dict(config.environment)},
        "TracingConfig": {"Mode": config.tracing_mode},
        "RevisionId": record.revision_id,
        "State": str(record.state),
        "PackageType": "Zip",
        "Architectures": list(config.architectures),
        "EphemeralStorage": {"Size": config.ephemeral_storage},
        "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
        "RuntimeVersionConfig": {"RuntimeVersionArn": runtime_arn},
        "LoggingConfig": _logging(record),
    }
    _optional(shape, "StateReason", record.state_reason)
    _optional(shape, "StateReasonCode", record.state_reason_code)
    if record.last_update_status is not None:
        shape["LastUpdateStatus"] = str(record.last_update_status)
    _optional(shape, "LastUpdateStatusReason", record.last_update_status_reason)
    _optional(shape, "LastUpdateStatusReasonCode", record.last_update_status_reason_code)
    if config.layers:
        shape["Layers"] = [{"Arn": arn, "CodeSize": 0} for arn in config.layers]
    if config.dead_letter_target:
        shape["DeadLetterConfig"] = {"TargetArn": config.dead_letter_target}
    shape.update(config.echoed)
    return shape


def alias_configuration(alias: AliasRecord, arn: str) -> dict[str, Any]:
    """AliasConfiguration; ``RoutingConfig`` only when the alias routes to a second version."""
    shape: dict[str, Any] = {
        "AliasArn": arn,
        "Name": alias.name,
        "FunctionVersion": alias.function_version,
        "Description": alias.description,
        "RevisionId": alias.revision_id,
    }
    if alias.routing:
        shape["RoutingConfig"] = {"AdditionalVersionWeights": dict(alias.routing)}
    return shape


def _logging(record: FunctionRecord) -> dict[str, str]:
    logging = record.config.logging
    shape = {
        "LogFormat": logging.log_format,
        "LogGroup": logging.log_group or f"/aws/lambda/{record.name}",
    }
    if logging.application_log_level:
        shape["ApplicationLogLevel"] = logging.application_log_level
    if logging.system_log_level:
        shape["SystemLogLevel"] = logging.system_log_level
    return shape


def _optional(shape: dict[str, Any], key: str, value: object) -> None:
    if value is not None:
        shape[key] = value
