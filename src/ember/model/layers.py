"""What a layer version is, its resource policy, and layer ARNs. Pure: no I/O.

A layer is a name; its versions are numbered from 1 and a number is never reused, even
after the version is deleted. A version is immutable once published except for its
policy (AddLayerVersionPermission / RemoveLayerVersionPermission) and its ``deleted``
flag: a deleted version disappears from the API but keeps its content, so functions
that already reference it keep working (as on Lambda).

ARNs: ``arn:aws:lambda:<region>:<account>:layer:<name>`` (the layer) and
``...:layer:<name>:<version>`` (one version). Patterns are botocore's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ember.model.arns import PARTITION
from ember.model.functions import CodeInfo

# botocore service-2.json, shape ``LayerNameOrArn`` (every ``{LayerName}`` path parameter).
LAYER_NAME_OR_ARN_PATTERN = (
    r"(arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}"
    r":layer:[a-zA-Z0-9-_]{1,140}|[a-zA-Z0-9-_]{1,140})"
)
MAX_LAYER_NAME_OR_ARN = 2048
_REGION = r"(?P<region>(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1})"
_LAYER_ARN = r"arn:(aws[a-zA-Z-]*)?:lambda:" + _REGION + r":(?P<account>\d{12}):layer:"
_NAME_OR_ARN_RE = re.compile(
    r"(" + _LAYER_ARN + r"(?P<arn_name>[a-zA-Z0-9-_]{1,140})|(?P<name>[a-zA-Z0-9-_]{1,140}))"
)
_VERSION_ARN_RE = re.compile(_LAYER_ARN + r"(?P<name>[a-zA-Z0-9-_]+):(?P<version>[0-9]+)")

POLICY_VERSION = "2012-10-17"


def layer_arn(region: str, account: str, name: str) -> str:
    return f"arn:{PARTITION}:lambda:{region}:{account}:layer:{name}"


def layer_version_arn(region: str, account: str, name: str, version: int) -> str:
    return f"{layer_arn(region, account, name)}:{version}"


@dataclass(frozen=True, slots=True)
class LayerRef:
    """A layer named by a ``{LayerName}`` parameter or a version ARN."""

    name: str
    region: str | None = None  # None: a bare name (the caller's region)
    account: str | None = None
    version: int | None = None


def parse_layer_name(value: str) -> LayerRef | None:
    """A ``LayerNameOrArn`` value split into its parts; None if it does not match."""
    match = _NAME_OR_ARN_RE.fullmatch(value)
    if match is None:
        return None
    if match["name"] is not None:
        return LayerRef(match["name"])
    return LayerRef(match["arn_name"], match["region"], match["account"])


def parse_layer_version_arn(value: str) -> LayerRef | None:
    """``arn:aws:lambda:<region>:<account>:layer:<name>:<version>``; None if not one."""
    match = _VERSION_ARN_RE.fullmatch(value)
    if match is None:
        return None
    return LayerRef(match["name"], match["region"], match["account"], int(match["version"]))


@dataclass(frozen=True, slots=True)
class LayerStatement:
    """One AddLayerVersionPermission statement."""

    sid: str
    action: str
    principal: str  # an account id, ``*``, or ``arn:aws:iam::<account>:root``
    organization_id: str | None = None

    def document(self, resource: str) -> dict[str, Any]:
        """The statement as AWS renders it in policies (``Principal`` normalised)."""
        principal: Any = self.principal
        if re.fullmatch(r"\d{12}", self.principal):
            principal = {"AWS": f"arn:{PARTITION}:iam::{self.principal}:root"}
        elif self.principal != "*":
            principal = {"AWS": self.principal}
        statement: dict[str, Any] = {
            "Sid": self.sid,
            "Effect": "Allow",
            "Principal": principal,
            "Action": self.action,
            "Resource": resource,
        }
        if self.organization_id is not None:
            statement["Condition"] = {"StringEquals": {"aws:PrincipalOrgID": self.organization_id}}
        return statement


@dataclass(frozen=True, slots=True)
class LayerPolicy:
    """A layer version's resource policy; ``revision_id`` changes on every change."""

    revision_id: str
    statements: tuple[LayerStatement, ...] = ()

    def find(self, sid: str) -> LayerStatement | None:
        return next((s for s in self.statements if s.sid == sid), None)

    def document(self, resource: str) -> str:
        return json.dumps(
            {
                "Version": POLICY_VERSION,
                "Id": "default",
                "Statement": [s.document(resource) for s in self.statements],
            },
            separators=(",", ":"),
        )


@dataclass(frozen=True, slots=True)
class LayerVersion:
    """One published version of a layer (see the module docstring for what changes)."""

    name: str
    version: int
    code: CodeInfo  # the layer zip in the blob store (CodeSize, CodeSha256)
    unzipped_size: int
    created: float  # epoch seconds (CreatedDate)
    description: str = ""
    compatible_runtimes: tuple[str, ...] = ()
    compatible_architectures: tuple[str, ...] = ()
    license_info: str | None = None
    policy: LayerPolicy | None = None
    deleted: bool = False

    def matches(self, runtime: str | None, architecture: str | None) -> bool:
        """ListLayers / ListLayerVersions filters (a filter names a compatible value)."""
        if runtime is not None and runtime not in self.compatible_runtimes:
            return False
        return architecture is None or architecture in self.compatible_architectures


def dump_layer_version(layer: LayerVersion) -> str:
    """The store's JSON for a layer version (dataclass field names)."""
    policy = None
    if layer.policy is not None:
        policy = {
            "revision_id": layer.policy.revision_id,
            "statements": [
                {
                    "sid": s.sid,
                    "action": s.action,
                    "principal": s.principal,
                    "organization_id": s.organization_id,
                }
                for s in layer.policy.statements
            ],
        }
    return json.dumps(
        {
            "name": layer.name,
            "version": layer.version,
            "code": {
                "sha256_hex": layer.code.sha256_hex,
                "sha256_b64": layer.code.sha256_b64,
                "size": layer.code.size,
            },
            "unzipped_size": layer.unzipped_size,
            "created": layer.created,
            "description": layer.description,
            "compatible_runtimes": list(layer.compatible_runtimes),
            "compatible_architectures": list(layer.compatible_architectures),
            "license_info": layer.license_info,
            "policy": policy,
            "deleted": layer.deleted,
        },
        separators=(",", ":"),
    )


def load_layer_version(text: str) -> LayerVersion:
    data: dict[str, Any] = json.loads(text)
    raw_policy = data.get("policy")
    policy = None
    if raw_policy is not None:
        statements = tuple(LayerStatement(**s) for s in raw_policy.get("statements", ()))
        policy = LayerPolicy(raw_policy["revision_id"], statements)
    return LayerVersion(
        name=data["name"],
        version=int(data["version"]),
        code=CodeInfo(**data["code"]),
        unzipped_size=int(data.get("unzipped_size", 0)),
        created=float(data["created"]),
        description=data.get("description", ""),
        compatible_runtimes=tuple(data.get("compatible_runtimes", ())),
        compatible_architectures=tuple(data.get("compatible_architectures", ())),
        license_info=data.get("license_info"),
        policy=policy,
        deleted=bool(data.get("deleted", False)),
    )


@dataclass(frozen=True, slots=True)
class PublishLayerInput:
    """A validated PublishLayerVersion request (the zip is decoded, not yet inspected)."""

    name: str
    zip_file: bytes
    description: str = ""
    compatible_runtimes: tuple[str, ...] = ()
    compatible_architectures: tuple[str, ...] = ()
    license_info: str | None = None
