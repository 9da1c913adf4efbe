"""Reading and checking the members of a Lambda request body, one field at a time.

Pure: JSON values in, plain values or ``ClientError`` out; never another exception.
Two kinds of failure, as on AWS:

* a member of the wrong JSON type cannot be deserialised at all: it raises
  ``InvalidRequestContentException`` ("Could not parse request body into json: ...")
  at once, the error family Lambda's front end uses for bodies it cannot read;
* a value that breaks a model constraint (length, range, pattern, enum) is recorded in
  a ``Violations`` and all of them are reported together in one ``ValidationException``
  ("2 validation errors detected: ...; ..."), in AWS's wording.

Rules that are not model constraints raise ``InvalidParameterValueException`` at once:
the environment and layer rules are here (bottom), the runtime rule in ``validation``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ember.errors import InvalidParameterValueException, InvalidRequestContentException
from ember.model.arns import validation_error, violation

JsonObject = Mapping[str, Any]

ROLE_PATTERN = r"arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+"
HANDLER_PATTERN = r"[^\s]+"
ENV_KEY_PATTERN = r"[a-zA-Z]([a-zA-Z0-9_])+"
LOG_GROUP_PATTERN = r"[\.\-_/#A-Za-z0-9]+"
TARGET_ARN_PATTERN = r"(arn:(aws[a-zA-Z-]*)?:[a-z0-9-.]+:.*)|()"
LAYER_VERSION_ARN_PATTERN = (
    r"(arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}"
    r":layer:[a-zA-Z0-9-_]+:[0-9]+)|(arn:[a-zA-Z0-9-]+:lambda:::awslayer:[a-zA-Z0-9-_]+)"
)

# lambda-spec §4.1 (Lambda developer guide, "Reserved environment variables").
RESERVED_ENV_KEYS: frozenset[str] = frozenset(
    {
        "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
    }
)  # fmt: skip
ENV_LIMIT_BYTES = 4096
MAX_LAYERS = 5

ARCHITECTURES = ("x86_64", "arm64")
TRACING_MODES = ("Active", "PassThrough")
LOG_FORMATS = ("JSON", "Text")
APPLICATION_LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
SYSTEM_LOG_LEVELS = ("DEBUG", "INFO", "WARN")
PACKAGE_TYPES = ("Zip", "Image")
SNAP_START_APPLY_ON = ("PublishedVersions", "None")

_JSON_TYPES = {
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    list: "an array",
    dict: "an object",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def type_error(path: str, expected: str, value: Any) -> InvalidRequestContentException:
    """The error for a member that cannot be deserialised as its model type."""
    return InvalidRequestContentException(
        f"Could not parse request body into json: Could not deserialize '{path}': "
        f"expected {expected}, got {_json_type(value)}."
    )


# ---------------------------------------------------------------- typed readers


def opt_str(obj: JsonObject, key: str, path: str | None = None) -> str | None:
    """``obj[key]`` as a string; absent or null is None."""
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise type_error(path or key, "a string", value)


def opt_int(obj: JsonObject, key: str, path: str | None = None) -> int | None:
    """``obj[key]`` as an integer (an integral JSON number); absent or null is None."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise type_error(path or key, "an integer", value)


def opt_bool(obj: JsonObject, key: str, path: str | None = None) -> bool | None:
    value = obj.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise type_error(path or key, "a boolean", value)


def opt_object(obj: JsonObject, key: str, path: str | None = None) -> JsonObject | None:
    value = obj.get(key)
    if value is None or isinstance(value, dict):
        return value
    raise type_error(path or key, "an object", value)


def opt_str_list(obj: JsonObject, key: str, path: str | None = None) -> list[str] | None:
    """``obj[key]`` as a list of strings; absent or null is None."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise type_error(path or key, "an array of strings", value)
    return list(value)


def opt_str_map(obj: JsonObject, key: str, path: str | None = None) -> dict[str, str] | None:
    """``obj[key]`` as a string-to-string map; absent or null is None."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise type_error(path or key, "an object of strings", value)
    return dict(value)


def expect_kind(obj: JsonObject, key: str, kind: type) -> Any:
    """``obj[key]`` (absent or null is None) when it is a ``kind``; for echoed members."""
    value = obj.get(key)
    if value is None or (isinstance(value, kind) and not isinstance(value, bool)):
        return value
    raise type_error(key, _JSON_TYPES.get(kind, kind.__name__), value)


# ---------------------------------------------------------------- constraint checks


def java_list(values: Sequence[object]) -> str:
    """How AWS (Java) renders a list in messages: ``[a, b]``."""
    return "[" + ", ".join(str(v) for v in values) + "]"


class Violations:
    """Model-constraint violations found in one request, reported together.

    Scope: one parse of one request body. ``raise_if_any`` raises the single
    ``ValidationException`` AWS would send; nothing else reads the list.
    """

    def __init__(self) -> None:
        self.found: list[str] = []  # in field order, AWS's wording

    def add(self, value: object, field: str, constraint: str) -> None:
        self.found.append(violation(value, field, constraint))

    def required(self, value: object, field: str) -> bool:
        """Record ``Member must not be null`` when ``value`` is None; True when present."""
        if value is None:
            self.add(None, field, "Member must not be null")
            return False
        return True

    def length(self, value: str, field: str, maximum: int, minimum: int = 0) -> bool:
        if len(value) < minimum:
            self.add(value, field, f"Member must have length greater than or equal to {minimum}")
            return False
        if len(value) > maximum:
            self.add(value, field, f"Member must have length less than or equal to {maximum}")
            return False
        return True

    def range(self, value: int, field: str, minimum: int, maximum: int) -> bool:
        if value < minimum:
            self.add(value, field, f"Member must have value greater than or equal to {minimum}")
            return False
        if value > maximum:
            self.add(value, field, f"Member must have value less than or equal to {maximum}")
            return False
        return True

    def pattern(self, value: str, field: str, pattern: str) -> bool:
        if re.fullmatch(pattern, value) is None:
            self.add(value, field, f"Member must satisfy regular expression pattern: {pattern}")
            return False
        return True

    def enum(self, value: str, field: str, allowed: Sequence[str]) -> bool:
        if value not in allowed:
            self.add(value, field, f"Member must satisfy enum value set: {java_list(allowed)}")
            return False
        return True

    def raise_if_any(self) -> None:
        if self.found:
            raise validation_error(self.found)


# ---------------------------------------------------------------- list and map members


def check_architectures(values: list[str], checks: Violations) -> bool:
    """Exactly one of ``x86_64`` / ``arm64``."""
    shown = java_list(values)
    if not values:
        checks.add(shown, "architectures", "Member must have length greater than or equal to 1")
        return False
    if len(values) > 1:
        checks.add(shown, "architectures", "Member must have length less than or equal to 1")
        return False
    if values[0] not in ARCHITECTURES:
        checks.add(
            shown,
            "architectures",
            "Member must satisfy constraint: [Member must satisfy enum value set: "
            f"{java_list(ARCHITECTURES)}, Member must not be null]",
        )
        return False
    return True


def check_layers(values: list[str], checks: Violations) -> bool:
    """Each member a layer *version* ARN of 1-2048 characters."""
    if all(
        1 <= len(arn) <= 2048 and re.fullmatch(LAYER_VERSION_ARN_PATTERN, arn) for arn in values
    ):
        return True
    checks.add(
        java_list(values),
        "layers",
        "Member must satisfy constraint: [Member must have length less than or equal to 2048, "
        "Member must have length greater than or equal to 1, Member must satisfy regular "
        f"expression pattern: {LAYER_VERSION_ARN_PATTERN}, Member must not be null]",
    )
    return False


def check_env_keys(variables: Mapping[str, str], checks: Violations) -> bool:
    """Keys match ``[a-zA-Z]([a-zA-Z0-9_])+``. The map is sensitive: AWS omits the value."""
    if all(re.fullmatch(ENV_KEY_PATTERN, key) for key in variables):
        return True
    checks.found.append(
        "Value at 'environment.variables' failed to satisfy constraint: Map keys must satisfy "
        f"constraint: [Member must satisfy regular expression pattern: {ENV_KEY_PATTERN}]"
    )
    return False


def check_tags(tags: Mapping[str, str], checks: Violations) -> bool:
    """Tag keys 1-128 characters, values at most 256."""
    shown = "{" + ", ".join(f"{k}={v}" for k, v in tags.items()) + "}"
    if not all(1 <= len(key) <= 128 for key in tags):
        checks.add(
            shown,
            "tags",
            "Map keys must satisfy constraint: [Member must have length less than or equal to "
            "128, Member must have length greater than or equal to 1]",
        )
        return False
    if not all(len(value) <= 256 for value in tags.values()):
        checks.add(
            shown,
            "tags",
            "Map values must satisfy constraint: [Member must have length less than or equal "
            "to 256]",
        )
        return False
    return True


def read_architectures(body: JsonObject, checks: Violations) -> dict[str, Any]:
    """``{"architectures": (...)}`` when ``Architectures`` is present and valid, else ``{}``."""
    values = opt_str_list(body, "Architectures")
    if values is None or not check_architectures(values, checks):
        return {}
    return {"architectures": tuple(values)}


def read_tags(body: JsonObject, checks: Violations) -> dict[str, str]:
    """The ``Tags`` map (empty when absent), its lengths checked."""
    tags = opt_str_map(body, "Tags") or {}
    check_tags(tags, checks)
    return tags


# ---------------------------------------------------------------- service rules


def check_environment(variables: Mapping[str, str]) -> None:
    """No reserved keys; at most 4 KB measured on the compact JSON serialisation."""
    reserved = [key for key in variables if key in RESERVED_ENV_KEYS]
    if reserved:
        raise InvalidParameterValueException(
            "Lambda was unable to configure your environment variables because the environment "
            "variables you have provided contains reserved keys that are currently not "
            f"supported for modification. Reserved keys used in this request: {', '.join(reserved)}"
        )
    measured = json.dumps(dict(variables), separators=(",", ":"), ensure_ascii=False)
    if len(measured.encode("utf-8")) > ENV_LIMIT_BYTES:
        raise InvalidParameterValueException(
            "Lambda was unable to configure your environment variables because the environment "
            f"variables you have provided exceeded the 4KB limit. String measured: {measured}"
        )


def check_layer_rules(layers: tuple[str, ...]) -> None:
    """At most 5 layers, and never two versions of one layer."""
    if len(layers) > MAX_LAYERS:
        raise InvalidParameterValueException("Cannot reference more than 5 layers.")
    seen: dict[str, str] = {}  # layer ARN (no version) => the version ARN that named it
    for arn in layers:
        layer = arn.rsplit(":", 1)[0] if ":layer:" in arn else arn
        if layer in seen:
            raise InvalidParameterValueException(
                "Two different versions of the same layer are not allowed to be referenced in "
                f"the same function. {seen[layer]} and {arn} are versions of the same layer."
            )
        seen[layer] = arn
