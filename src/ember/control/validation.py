"""CreateFunction / UpdateFunctionConfiguration / UpdateFunctionCode bodies → typed inputs.

Pure: the decoded JSON body in, frozen records out (``FunctionConfig`` and the inputs
below), or a ``ClientError`` in AWS's words. Checking happens in AWS's order:

1. the function name (CreateFunction only; it is reported on its own);
2. member types (``InvalidRequestContentException`` at the first wrong one) and model
   constraints, all collected into one ``ValidationException`` (see ``fields``);
3. service rules, first failure wins (``InvalidParameterValueException``): package type,
   code source, runtime (installed / deprecated / unknown), reserved environment keys,
   the 4 KB environment, layer count and duplicates.

JSON members the model does not know are ignored, as AWS ignores them. Members Ember
accepts without acting on them (VpcConfig, KMSKeyArn, ...) are kept in
``FunctionConfig.echoed`` exactly as given. Choices where AWS's behaviour is not pinned
down: a ``LoggingConfig`` in ``Text`` format drops its log levels, and one in ``JSON``
format gets ``INFO``/``INFO`` for levels it does not set.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from ember.control import fields as f
from ember.control.fields import JsonObject, Violations
from ember.errors import InvalidParameterValueException
from ember.model.arns import parse_function_ref, validation_error, violation
from ember.model.functions import FunctionConfig, LoggingConfig, frozen_map
from ember.model.tags import check_setting_tags

# The ``Runtime`` enum of botocore's model (1.44.5): every identifier AWS knows.
KNOWN_RUNTIMES: tuple[str, ...] = (
    "nodejs", "nodejs4.3", "nodejs6.10", "nodejs8.10", "nodejs10.x", "nodejs12.x",
    "nodejs14.x", "nodejs16.x", "nodejs18.x", "nodejs20.x", "nodejs22.x", "nodejs24.x",
    "java8", "java8.al2", "java11", "java17", "java21", "java25",
    "python2.7", "python3.6", "python3.7", "python3.8", "python3.9", "python3.10",
    "python3.11", "python3.12", "python3.13", "python3.14",
    "dotnetcore1.0", "dotnetcore2.0", "dotnetcore2.1", "dotnetcore3.1", "dotnet6", "dotnet8",
    "dotnet10", "nodejs4.3-edge", "go1.x", "ruby2.5", "ruby2.7", "ruby3.2", "ruby3.3",
    "ruby3.4", "ruby4.0", "provided", "provided.al2", "provided.al2023",
    "nodejs26.x", "python3.15", "java8.al2023", "java11.al2023", "java17.al2023", "custom",
)  # fmt: skip
# What AWS accepts for create/update, in the order of its own error message (lambda-spec
# §5.6, recorded Nov 2025); the enum set an unknown value is reported against.
AWS_SUPPORTED_RUNTIMES: tuple[str, ...] = (
    "nodejs20.x", "python3.14", "provided.al2023", "python3.12", "python3.13", "nodejs24.x",
    "nodejs22.x", "java25", "python3.10", "python3.11", "java21", "ruby3.3", "ruby3.4",
    "ruby3.2", "python3.8", "python3.9", "java17", "nodejs16.x", "dotnet10", "dotnet8",
    "java11", "dotnet6", "nodejs18.x", "provided.al2", "java8.al2",
)  # fmt: skip
# Known identifiers AWS refuses on create/update ("no longer supported").
DEPRECATED_RUNTIMES: frozenset[str] = frozenset(
    {
        "nodejs", "nodejs4.3", "nodejs4.3-edge", "nodejs6.10", "nodejs8.10", "nodejs10.x",
        "nodejs12.x", "nodejs14.x", "java8", "python2.7", "python3.6", "python3.7",
        "dotnetcore1.0", "dotnetcore2.0", "dotnetcore2.1", "dotnetcore3.1", "go1.x",
        "ruby2.5", "ruby2.7", "provided",
    }
)  # fmt: skip
# Members stored and echoed, not acted on: wire name => JSON type.
ECHOED_ON_UPDATE: Mapping[str, type] = MappingProxyType(
    {
        "VpcConfig": dict, "KMSKeyArn": str, "FileSystemConfigs": list, "ImageConfig": dict,
        "SnapStart": dict, "CapacityProviderConfig": dict, "DurableConfig": dict,
        "RuntimeConfig": dict, "AcceleratorConfig": dict,
    }
)  # fmt: skip
ECHOED_ON_CREATE: Mapping[str, type] = MappingProxyType(
    {**ECHOED_ON_UPDATE, "CodeSigningConfigArn": str, "TenancyConfig": dict}
)

MANDATORY_RUNTIME_HANDLER = (
    "Runtime and Handler are mandatory parameters for functions created with deployment packages."
)
NO_CODE_SOURCE = "Please provide a source for function code."
IMAGES_UNSUPPORTED = (
    "Container image functions (PackageType Image, Code.ImageUri) are not supported by Ember "
    "yet. Package the function as a .zip file (PackageType Zip, Code.ZipFile)."
)
S3_UNSUPPORTED = (
    "Ember does not support S3 code locations (S3Bucket/S3Key/S3ObjectVersion). "
    "Upload the deployment package directly as ZipFile."
)
BAD_BASE64 = "Could not decode ZipFile: the value must be the base64 encoding of a .zip file."


@dataclass(frozen=True, slots=True)
class CreateFunctionInput:
    """A validated CreateFunction request (the zip is decoded, not yet inspected)."""

    name: str
    config: FunctionConfig
    zip_file: bytes
    publish: bool = False
    tags: MappingProxyType[str, str] = field(default_factory=frozen_map)


@dataclass(frozen=True, slots=True)
class UpdateCodeInput:
    """A validated UpdateFunctionCode request (``architectures`` None = unchanged)."""

    zip_file: bytes
    publish: bool = False
    revision_id: str | None = None
    dry_run: bool = False
    architectures: tuple[str, ...] | None = None


# ---------------------------------------------------------------- public entry points


def parse_create_function(
    body: JsonObject,
    runtimes: Collection[str],
    *,
    region: str | None = None,
    account: str | None = None,
) -> CreateFunctionInput:
    """Validate a CreateFunction body; ``runtimes`` are the installed runtime identifiers.

    ``region``/``account``: when given, a FunctionName ARN must name them (see
    ``ember.model.arns``).
    """
    body = _object_body(body)
    name = _function_name(body, region, account)
    checks = Violations()
    role = f.opt_str(body, "Role")
    code = f.opt_object(body, "Code")
    package_type = f.opt_str(body, "PackageType") or "Zip"
    checks.required(role, "role")
    checks.required(code, "code")
    checks.enum(package_type, "packageType", f.PACKAGE_TYPES)
    changes = _config_fields(body, checks, LoggingConfig(), ECHOED_ON_CREATE, {})
    changes.update(f.read_architectures(body, checks))
    tags = f.read_tags(body, checks)
    publish = f.opt_bool(body, "Publish") or False
    checks.raise_if_any()
    check_setting_tags(tags)
    assert role is not None
    assert code is not None  # both checked as required above
    if package_type == "Image":
        raise InvalidParameterValueException(IMAGES_UNSUPPORTED)
    zip_file = decode_code(code)
    if changes.get("runtime") is None or changes.get("handler") is None:
        raise InvalidParameterValueException(MANDATORY_RUNTIME_HANDLER)
    _check_service_rules(changes, runtimes)
    config = FunctionConfig(**{**changes, "role": role})
    return CreateFunctionInput(name, config, zip_file, publish, frozen_map(tags))


def parse_update_configuration(
    body: JsonObject, current: FunctionConfig, runtimes: Collection[str]
) -> tuple[FunctionConfig, str | None]:
    """Validate an UpdateFunctionConfiguration body against ``current``.

    Returns the new configuration (members absent from the body keep their current
    values) and the ``RevisionId`` precondition, if one was given.
    """
    body = _object_body(body)
    checks = Violations()
    changes = _config_fields(body, checks, current.logging, ECHOED_ON_UPDATE, current.echoed)
    revision_id = f.opt_str(body, "RevisionId")
    checks.raise_if_any()
    _check_service_rules(changes, runtimes)
    return replace(current, **changes), revision_id


def parse_update_code(body: JsonObject) -> UpdateCodeInput:
    """Validate an UpdateFunctionCode body (its code members sit at the top level)."""
    body = _object_body(body)
    checks = Violations()
    architectures = f.read_architectures(body, checks).get("architectures")
    publish = f.opt_bool(body, "Publish") or False
    dry_run = f.opt_bool(body, "DryRun") or False
    revision_id = f.opt_str(body, "RevisionId")
    checks.raise_if_any()
    return UpdateCodeInput(decode_code(body), publish, revision_id, dry_run, architectures)


def decode_code(code: JsonObject) -> bytes:
    """The zip bytes of a ``Code`` object (or UpdateFunctionCode body): base64 ZipFile only."""
    if code.get("ImageUri") is not None:
        raise InvalidParameterValueException(IMAGES_UNSUPPORTED)
    if any(code.get(key) is not None for key in ("S3Bucket", "S3Key", "S3ObjectVersion")):
        raise InvalidParameterValueException(S3_UNSUPPORTED)
    text = f.opt_str(code, "ZipFile")
    if text is None:
        raise InvalidParameterValueException(NO_CODE_SOURCE)
    try:
        return base64.b64decode(re.sub(r"\s+", "", text), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParameterValueException(BAD_BASE64) from None


def check_runtime(runtime: str, installed: Collection[str]) -> None:
    """Installed runtimes pass; others fail as deprecated, not installed, or unknown."""
    if runtime in installed:
        return
    if runtime in DEPRECATED_RUNTIMES:
        raise InvalidParameterValueException(
            f"The runtime parameter of {runtime} is no longer supported for creating or "
            "updating AWS Lambda functions. We recommend you use a supported runtime while "
            "creating or updating functions."
        )
    if runtime in KNOWN_RUNTIMES:
        available = ", ".join(sorted(installed)) or "none"
        raise InvalidParameterValueException(
            f"The runtime parameter of {runtime} is not available on this Ember server. "
            f"Installed runtimes: {available}."
        )
    raise InvalidParameterValueException(
        f"Value {runtime} at 'runtime' failed to satisfy constraint: Member must satisfy enum "
        f"value set: {f.java_list(AWS_SUPPORTED_RUNTIMES)} or be a valid ARN"
    )


# ---------------------------------------------------------------- the body and its name


def _object_body(body: Any) -> JsonObject:
    if not isinstance(body, Mapping):
        raise f.type_error("body", "an object", body)
    return body


def _function_name(body: JsonObject, region: str | None, account: str | None) -> str:
    value = f.opt_str(body, "FunctionName")
    if value is None:
        raise validation_error([violation(None, "functionName", "Member must not be null")])
    name, qualifier = parse_function_ref(value, region, account, create=True)
    if qualifier is not None:
        raise InvalidParameterValueException(
            f"Function name {value} includes a qualifier: CreateFunction creates $LATEST. "
            "Publish versions with PublishVersion and name them with CreateAlias."
        )
    return name


# ---------------------------------------------------------------- configuration members


def _config_fields(
    body: JsonObject,
    checks: Violations,
    logging: LoggingConfig,
    echoed_names: Mapping[str, type],
    echoed: Mapping[str, Any],
) -> dict[str, Any]:
    """``FunctionConfig`` keyword arguments for the members present in ``body``."""
    changes: dict[str, Any] = {}
    changes.update(_strings(body, checks))
    changes.update(_numbers(body, checks))
    changes.update(_environment(body, checks))
    changes.update(_tracing(body, checks))
    changes.update(_layers_and_dlq(body, checks))
    raw_logging = f.opt_object(body, "LoggingConfig")
    if raw_logging is not None:
        changes["logging"] = _logging(raw_logging, logging, checks)
    extra = _echoed(body, checks, echoed_names)
    if extra:
        changes["echoed"] = MappingProxyType({**echoed, **extra})
    return changes


def _strings(body: JsonObject, checks: Violations) -> dict[str, Any]:
    out: dict[str, Any] = {}
    role = f.opt_str(body, "Role")
    if role is not None and checks.length(role, "role", 10000):
        checks.pattern(role, "role", f.ROLE_PATTERN)
    runtime = f.opt_str(body, "Runtime")
    handler = f.opt_str(body, "Handler")
    if handler is not None and checks.length(handler, "handler", 128):
        checks.pattern(handler, "handler", f.HANDLER_PATTERN)
    description = f.opt_str(body, "Description")
    if description is not None:
        checks.length(description, "description", 256)
    for key, value in (
        ("role", role),
        ("runtime", runtime),
        ("handler", handler),
        ("description", description),
    ):
        if value is not None:
            out[key] = value
    return out


def _numbers(body: JsonObject, checks: Violations) -> dict[str, Any]:
    out: dict[str, Any] = {}
    timeout = f.opt_int(body, "Timeout")
    if timeout is not None and checks.range(timeout, "timeout", 1, 900):
        out["timeout"] = timeout
    memory = f.opt_int(body, "MemorySize")
    if memory is not None and checks.range(memory, "memorySize", 128, 10240):
        out["memory_size"] = memory
    storage = f.opt_object(body, "EphemeralStorage")
    if storage is not None:
        size = f.opt_int(storage, "Size", "EphemeralStorage.Size")
        if checks.required(size, "ephemeralStorage.size"):
            assert size is not None
            if checks.range(size, "ephemeralStorage.size", 512, 10240):
                out["ephemeral_storage"] = size
    return out


def _environment(body: JsonObject, checks: Violations) -> dict[str, Any]:
    env = f.opt_object(body, "Environment")
    if env is None:
        return {}
    variables = f.opt_str_map(env, "Variables", "Environment.Variables") or {}
    f.check_env_keys(variables, checks)
    return {"environment": frozen_map(variables)}


def _tracing(body: JsonObject, checks: Violations) -> dict[str, Any]:
    tracing = f.opt_object(body, "TracingConfig")
    mode = None if tracing is None else f.opt_str(tracing, "Mode", "TracingConfig.Mode")
    if mode is None or not checks.enum(mode, "tracingConfig.mode", f.TRACING_MODES):
        return {}
    return {"tracing_mode": mode}


def _layers_and_dlq(body: JsonObject, checks: Violations) -> dict[str, Any]:
    out: dict[str, Any] = {}
    layers = f.opt_str_list(body, "Layers")
    if layers is not None and f.check_layers(layers, checks):
        out["layers"] = tuple(layers)
    dlq = f.opt_object(body, "DeadLetterConfig")
    if dlq is not None:
        target = f.opt_str(dlq, "TargetArn", "DeadLetterConfig.TargetArn") or ""
        if checks.pattern(target, "deadLetterConfig.targetArn", f.TARGET_ARN_PATTERN):
            out["dead_letter_target"] = target or None
    return out


def _logging(raw: JsonObject, base: LoggingConfig, checks: Violations) -> LoggingConfig:
    """``base`` with the members of ``raw`` applied, levels normalised to the format."""
    log_format = f.opt_str(raw, "LogFormat", "LoggingConfig.LogFormat")
    app_level = f.opt_str(raw, "ApplicationLogLevel", "LoggingConfig.ApplicationLogLevel")
    sys_level = f.opt_str(raw, "SystemLogLevel", "LoggingConfig.SystemLogLevel")
    group = f.opt_str(raw, "LogGroup", "LoggingConfig.LogGroup")
    if log_format is not None:
        checks.enum(log_format, "loggingConfig.logFormat", f.LOG_FORMATS)
    if app_level is not None:
        checks.enum(app_level, "loggingConfig.applicationLogLevel", f.APPLICATION_LOG_LEVELS)
    if sys_level is not None:
        checks.enum(sys_level, "loggingConfig.systemLogLevel", f.SYSTEM_LOG_LEVELS)
    if group is not None and checks.length(group, "loggingConfig.logGroup", 512, 1):
        checks.pattern(group, "loggingConfig.logGroup", f.LOG_GROUP_PATTERN)
    merged = LoggingConfig(
        log_format=log_format or base.log_format,
        log_group=group or base.log_group,
        application_log_level=app_level or base.application_log_level,
        system_log_level=sys_level or base.system_log_level,
    )
    if merged.log_format != "JSON":
        return replace(merged, application_log_level=None, system_log_level=None)
    return replace(
        merged,
        application_log_level=merged.application_log_level or "INFO",
        system_log_level=merged.system_log_level or "INFO",
    )


def _echoed(body: JsonObject, checks: Violations, names: Mapping[str, type]) -> dict[str, Any]:
    """The accepted-but-not-acted-on members present, deep-copied as given."""
    out: dict[str, Any] = {}
    for name, kind in names.items():
        value = f.expect_kind(body, name, kind)
        if value is not None:
            out[name] = copy.deepcopy(value)
    snap_start = out.get("SnapStart")
    if snap_start is not None:
        apply_on = f.opt_str(snap_start, "ApplyOn", "SnapStart.ApplyOn")
        if apply_on is not None:
            checks.enum(apply_on, "snapStart.applyOn", f.SNAP_START_APPLY_ON)
    return out


# ---------------------------------------------------------------- service rules


def _check_service_rules(changes: Mapping[str, Any], runtimes: Collection[str]) -> None:
    runtime = changes.get("runtime")
    if runtime is not None:
        check_runtime(runtime, runtimes)
    environment = changes.get("environment")
    if environment is not None:
        f.check_environment(environment)
    layers = changes.get("layers")
    if layers is not None:
        f.check_layer_rules(layers)
