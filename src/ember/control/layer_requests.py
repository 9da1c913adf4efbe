"""Layer API inputs → typed values, or the ``ClientError`` AWS sends. Pure.

Model constraints (botocore's shapes) are reported as one ``ValidationException`` in
AWS's words; service rules as ``InvalidParameterValueException``. Messages recorded
against real AWS: "Layer Version Cannot be less than 1" for a version number below 1.
"""

from __future__ import annotations

from ember.control import fields as f
from ember.control.fields import JsonObject, Violations
from ember.control.validation import KNOWN_RUNTIMES, decode_code
from ember.errors import InvalidParameterValueException
from ember.model.arns import validation_error, violation
from ember.model.layers import (
    LAYER_NAME_OR_ARN_PATTERN,
    MAX_LAYER_NAME_OR_ARN,
    LayerRef,
    PublishLayerInput,
    parse_layer_name,
)

# botocore shapes of AddLayerVersionPermission's members.
STATEMENT_ID_PATTERN = r"([a-zA-Z0-9-_]+)"
LAYER_ACTION_PATTERN = r"lambda:GetLayerVersion"
LAYER_PRINCIPAL_PATTERN = r"\d{12}|\*|arn:(aws[a-zA-Z-]*):iam::\d{12}:root"
ORGANIZATION_ID_PATTERN = r"o-[a-z0-9]{10,32}"
MAX_LAYER_LIST_ITEMS = 50
LAYER_RUNTIMES_CONSTRAINT = f"Member must satisfy enum value set: {f.java_list(KNOWN_RUNTIMES)}"


def layer_name(value: str) -> LayerRef:
    """A ``{LayerName}`` path parameter: a name or a layer ARN (``LayerNameOrArn``)."""
    checks = Violations()
    if checks.length(value, "layerName", MAX_LAYER_NAME_OR_ARN, 1):
        checks.pattern(value, "layerName", LAYER_NAME_OR_ARN_PATTERN)
    checks.raise_if_any()
    ref = parse_layer_name(value)
    assert ref is not None  # the pattern was checked just above
    return ref


def version_number(value: str) -> int:
    """A ``{VersionNumber}`` path parameter (a long); below 1 is AWS's own error."""
    try:
        number = int(value)
    except ValueError:
        raise validation_error(
            [violation(value, "versionNumber", "Member must be a number")]
        ) from None
    if number < 1:
        raise InvalidParameterValueException("Layer Version Cannot be less than 1")
    return number


def publish_input(name: str, body: JsonObject) -> PublishLayerInput:
    """A PublishLayerVersion body for layer ``name`` (already checked)."""
    if not isinstance(body, dict):
        raise f.type_error("body", "an object", body)
    checks = Violations()
    content = f.opt_object(body, "Content")
    checks.required(content, "content")
    description = f.opt_str(body, "Description") or ""
    checks.length(description, "description", 256)
    runtimes = f.opt_str_list(body, "CompatibleRuntimes") or []
    _check_runtimes(runtimes, checks)
    architectures = f.opt_str_list(body, "CompatibleArchitectures") or []
    _check_architectures(architectures, checks)
    license_info = f.opt_str(body, "LicenseInfo")
    if license_info is not None:
        checks.length(license_info, "licenseInfo", 512)
    checks.raise_if_any()
    assert content is not None  # required above
    return PublishLayerInput(
        name=name,
        zip_file=decode_code(content),
        description=description,
        compatible_runtimes=tuple(runtimes),
        compatible_architectures=tuple(architectures),
        license_info=license_info,
    )


def list_filters(
    runtime: str | None, architecture: str | None, max_items: str | None
) -> tuple[str | None, str | None, int]:
    """ListLayers / ListLayerVersions query: CompatibleRuntime, CompatibleArchitecture,
    MaxItems (1-50, default 50)."""
    checks = Violations()
    if runtime is not None:
        checks.enum(runtime, "compatibleRuntime", KNOWN_RUNTIMES)
    if architecture is not None:
        checks.enum(architecture, "compatibleArchitecture", f.ARCHITECTURES)
    limit = MAX_LAYER_LIST_ITEMS
    if max_items is not None:
        try:
            limit = int(max_items)
        except ValueError:
            checks.add(max_items, "maxItems", "Member must be a number")
        else:
            checks.range(limit, "maxItems", 1, MAX_LAYER_LIST_ITEMS)
    checks.raise_if_any()
    return runtime, architecture, limit


def permission_input(body: JsonObject) -> tuple[str, str, str, str | None]:
    """AddLayerVersionPermission body → (StatementId, Action, Principal, OrganizationId)."""
    if not isinstance(body, dict):
        raise f.type_error("body", "an object", body)
    checks = Violations()
    sid = f.opt_str(body, "StatementId")
    action = f.opt_str(body, "Action")
    principal = f.opt_str(body, "Principal")
    organization = f.opt_str(body, "OrganizationId")
    if checks.required(sid, "statementId"):
        assert sid is not None
        statement_id(sid, checks)
    if checks.required(action, "action"):
        assert action is not None
        if checks.length(action, "action", 22):
            checks.pattern(action, "action", LAYER_ACTION_PATTERN)
    if checks.required(principal, "principal"):
        assert principal is not None
        if checks.length(principal, "principal", 10000):
            checks.pattern(principal, "principal", LAYER_PRINCIPAL_PATTERN)
    if organization is not None and checks.length(organization, "organizationId", 34):
        checks.pattern(organization, "organizationId", ORGANIZATION_ID_PATTERN)
    checks.raise_if_any()
    assert sid is not None
    assert action is not None
    assert principal is not None
    return sid, action, principal, organization


def statement_id(value: str, checks: Violations | None = None) -> str:
    """A ``StatementId`` (1-100 characters of ``[a-zA-Z0-9-_]``)."""
    own = checks is None
    checks = checks or Violations()
    if checks.length(value, "statementId", 100, 1):
        checks.pattern(value, "statementId", STATEMENT_ID_PATTERN)
    if own:
        checks.raise_if_any()
    return value


def _check_runtimes(values: list[str], checks: Violations) -> None:
    shown = f.java_list(values)
    if len(values) > 15:
        checks.add(shown, "compatibleRuntimes", "Member must have length less than or equal to 15")
    elif any(value not in KNOWN_RUNTIMES for value in values):
        checks.add(shown, "compatibleRuntimes", LAYER_RUNTIMES_CONSTRAINT)


def _check_architectures(values: list[str], checks: Violations) -> None:
    shown = f.java_list(values)
    if len(values) > 2:
        checks.add(
            shown, "compatibleArchitectures", "Member must have length less than or equal to 2"
        )
    elif any(value not in f.ARCHITECTURES for value in values):
        checks.add(
            shown,
            "compatibleArchitectures",
            "Member must satisfy constraint: [Member must satisfy enum value set: "
            f"{f.java_list(f.ARCHITECTURES)}]",
        )
