"""Function ARNs and function references (name, ``name:qualifier``, partial or full ARN).

Pure: no I/O. Patterns are the ones botocore's model declares (what AWS prints in its
``ValidationException`` messages); the messages follow AWS's constraint-violation style::

    1 validation error detected: Value '<v>' at 'functionName' failed to satisfy
    constraint: Member must satisfy regular expression pattern: <pattern>

Two rule sets exist, as in AWS: CreateFunction's ``FunctionName`` shape (name ≤ 64,
ARN forms ≤ 140, no dots) and the ``NamespacedFunctionName`` shape every other
operation uses (≤ 256 in total). Ember also refuses names over 64 characters for the
other operations: no such function can exist.

Cross-region and cross-account references (Ember serves one region of one account):

* an ARN naming another region raises ``ResourceNotFoundException`` "Functions from
  '<theirs>' are not reachable in this region ('<ours>')", the text real AWS sends;
* an ARN naming another account raises ``ResourceNotFoundException`` "Function not
  found: <arn>" (AWS would answer ``AccessDeniedException`` for a function it cannot
  show you; Ember has no other accounts, so the function does not exist).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from ember.errors import (
    InvalidParameterValueException,
    ResourceNotFoundException,
    ValidationException,
)

PARTITION = "aws"

# botocore service-2.json, shape ``FunctionName`` (CreateFunction and friends).
FUNCTION_NAME_PATTERN = (
    r"(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?"
    r"(\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?"
)
# botocore service-2.json, shape ``NamespacedFunctionName`` (Get/Invoke/Delete/...).
NAMESPACED_FUNCTION_NAME_PATTERN = (
    r"(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?"
    r"(\d{12}:)?(function:)?([a-zA-Z0-9-_\.]+)(:(\$LATEST(\.PUBLISHED)?|[a-zA-Z0-9-_]+))?"
)
# botocore shape ``Qualifier`` (the ``?Qualifier=`` query parameter).
QUALIFIER_PATTERN = r"(|[a-zA-Z0-9$_-]+)"

MAX_NAME_LENGTH = 64
MAX_CREATE_ARN_LENGTH = 140
MAX_REF_LENGTH = 256
MAX_QUALIFIER_LENGTH = 128


_ARN_PREFIX = r"(?P<arn>arn:(aws[a-zA-Z-]*)?:lambda:)?"
_REGION = r"(?P<region>(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?"
_ACCOUNT = r"(?P<account>\d{12}:)?(?P<function>function:)?"
# The same two patterns with named groups for the parts read back out.
_CREATE_RE = re.compile(
    _ARN_PREFIX
    + _REGION
    + _ACCOUNT
    + r"(?P<name>[a-zA-Z0-9-_]+)(:(?P<qualifier>\$LATEST|[a-zA-Z0-9-_]+))?"
)
_NAMESPACED_RE = re.compile(
    _ARN_PREFIX
    + _REGION
    + _ACCOUNT
    + r"(?P<name>[a-zA-Z0-9-_\.]+)(:(?P<qualifier>\$LATEST(\.PUBLISHED)?|[a-zA-Z0-9-_]+))?"
)
_QUALIFIER_RE = re.compile(QUALIFIER_PATTERN)


def function_arn(region: str, account: str, name: str, qualifier: str | None = None) -> str:
    """``arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]``."""
    arn = f"arn:{PARTITION}:lambda:{region}:{account}:function:{name}"
    return arn if qualifier is None else f"{arn}:{qualifier}"


def violation(value: object, field: str, constraint: str) -> str:
    """One constraint violation in AWS's words; ``value=None`` renders as ``null``."""
    shown = "null" if value is None else f"'{value}'"
    return f"Value {shown} at '{field}' failed to satisfy constraint: {constraint}"


def validation_message(violations: Sequence[str]) -> str:
    """``N validation error(s) detected: a; b`` (AWS joins them with ``; ``)."""
    count = len(violations)
    noun = "error" if count == 1 else "errors"
    return f"{count} validation {noun} detected: " + "; ".join(violations)


def validation_error(violations: Sequence[str]) -> ValidationException:
    """The ``ValidationException`` AWS sends for these model-constraint violations."""
    return ValidationException(validation_message(violations))


def _name_violations(value: str, *, create: bool) -> list[str]:
    """Pattern and length violations of a function reference, in AWS's order."""
    if create:
        regex, pattern = _CREATE_RE, FUNCTION_NAME_PATTERN
        limit = MAX_NAME_LENGTH if ":" not in value else MAX_CREATE_ARN_LENGTH
    else:
        regex, pattern = _NAMESPACED_RE, NAMESPACED_FUNCTION_NAME_PATTERN
        limit = MAX_REF_LENGTH
    found: list[str] = []
    match = regex.fullmatch(value)
    if match is None:
        constraint = f"Member must satisfy regular expression pattern: {pattern}"
        found.append(violation(value, "functionName", constraint))
    if len(value) > limit:
        constraint = f"Member must have length less than or equal to {limit}"
        found.append(violation(value, "functionName", constraint))
    elif match is not None and len(match["name"]) > MAX_NAME_LENGTH:
        # An ARN whose name part is too long (a bare name was caught just above on
        # create; elsewhere no function of that name can exist).
        constraint = f"Member must have length less than or equal to {MAX_NAME_LENGTH}"
        found.append(violation(match["name"], "functionName", constraint))
    return found


def _raise_name_violations(value: str, found: list[str], *, create: bool) -> None:
    """AWS summarises all violations on CreateFunction only, and answers a bare name
    there with ``InvalidParameterValueException`` (recorded against real AWS)."""
    if not found:
        return
    if not create:
        raise validation_error(found[:1])
    if ":" not in value:
        raise InvalidParameterValueException(validation_message(found))
    raise validation_error(found)


def parse_function_ref(
    value: str, region: str | None, account: str | None, *, create: bool = False
) -> tuple[str, str | None]:
    """Split a function reference into ``(name, qualifier)``.

    Accepts ``name``, ``name:qualifier``, ``<account>:function:name[:q]`` and
    ``arn:aws:lambda:<region>:<account>:function:name[:q]``. ``create=True`` applies
    CreateFunction's rules (see the module docstring); the caller decides what a
    qualifier means there. A region or account other than ours raises
    ``ResourceNotFoundException`` (module docstring); ``None`` for ``region`` or
    ``account`` skips that check.
    """
    if not value:
        raise validation_error(
            [violation(value, "functionName", "Member must have length greater than or equal to 1")]
        )
    _raise_name_violations(value, _name_violations(value, create=create), create=create)
    match = (_CREATE_RE if create else _NAMESPACED_RE).fullmatch(value)
    assert match is not None  # pattern checked just above
    name, qualifier = match["name"], match["qualifier"]
    their_region = (match["region"] or "").rstrip(":")
    their_account = (match["account"] or "").rstrip(":")
    if region is not None and their_region and their_region != region:
        raise ResourceNotFoundException(
            f"Functions from '{their_region}' are not reachable in this region ('{region}')"
        )
    if account is not None and their_account and their_account != account:
        arn = function_arn(region or their_region, their_account, name, qualifier)
        raise ResourceNotFoundException(f"Function not found: {arn}")
    return name, qualifier


def validate_qualifier(qualifier: str) -> str:
    """Check a ``?Qualifier=`` value against the model (pattern, length 1-128)."""
    if not qualifier:
        raise validation_error(
            [
                violation(
                    qualifier, "qualifier", "Member must have length greater than or equal to 1"
                )
            ]
        )
    if len(qualifier) > MAX_QUALIFIER_LENGTH:
        raise validation_error(
            [
                violation(
                    qualifier,
                    "qualifier",
                    f"Member must have length less than or equal to {MAX_QUALIFIER_LENGTH}",
                )
            ]
        )
    if _QUALIFIER_RE.fullmatch(qualifier) is None:
        raise validation_error(
            [
                violation(
                    qualifier,
                    "qualifier",
                    f"Member must satisfy regular expression pattern: {QUALIFIER_PATTERN}",
                )
            ]
        )
    return qualifier


def merge_qualifier(name_qualifier: str | None, query_qualifier: str | None) -> str | None:
    """The qualifier of a request: from the function name, the query, or both (equal).

    The query value is validated (``validate_qualifier``); a conflict raises AWS's
    ``InvalidParameterValueException``.
    """
    if query_qualifier is None:
        return name_qualifier
    validate_qualifier(query_qualifier)
    if name_qualifier is not None and name_qualifier != query_qualifier:
        raise InvalidParameterValueException(
            "The derived qualifier from the function name does not match the specified qualifier."
        )
    return query_qualifier


def runtime_version_arn(region: str, runtime: str) -> str:
    """``arn:aws:lambda:<region>::runtime:<id>``: the id is a hash of the runtime name."""
    digest = hashlib.sha256(runtime.encode()).hexdigest()
    return f"arn:aws:lambda:{region}::runtime:{digest}"
