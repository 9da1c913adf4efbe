"""Function tags: TagResource, UntagResource, ListTags (``/2017-03-31/tags/{ARN}``).

Tags live on the function's record (``FunctionRecord.tags``, set at CreateFunction too)
and are changed through the registry, so a change is stored first, then notified with
``on_change``: it retires the function's idle environments like any configuration
change. That is what makes Ember's own setting tags (``model.tags``: ``ember:network``)
take effect for the next environment.

AWS's rules kept here: the resource is a full, unqualified function ARN (the model's
``TaggableResource`` pattern, else ``ValidationException``; a qualified ARN is refused
with "Tags on function aliases and versions are not supported..."); keys are 1-128
characters and values at most 256 (``ValidationException``). Ember refuses values of its
own setting tags that it would not understand (``InvalidParameterValueException``).
Scope: one ``FunctionTags`` per server; the parsing functions are pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ember.control.fields import Violations, check_tags, opt_str_map
from ember.control.registry import FunctionRegistry
from ember.errors import InvalidParameterValueException, ResourceNotFoundException
from ember.model.arns import validation_error, violation
from ember.model.tags import check_setting_tags

# botocore service-2.json, shape ``TaggableResource``
TAGGABLE_RESOURCE_PATTERN = (
    r"arn:(aws[a-zA-Z-]*):lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:"
    r"(function:[a-zA-Z0-9-_]+(:(\$LATEST|[a-zA-Z0-9-_]+))?|code-signing-config:csc-[a-z0-9]{17}"
    r"|event-source-mapping:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}"
    r"-[0-9a-fA-F]{12}|(capacity-provider|network-connector):[a-zA-Z0-9-_]{1,64})"
)
_FUNCTION_ARN = re.compile(
    r"arn:(aws[a-zA-Z-]*):lambda:(?P<region>[^:]+):(?P<account>\d{12}):function:"
    r"(?P<name>[a-zA-Z0-9-_]+)(:(?P<qualifier>.+))?"
)
MAX_RESOURCE_LENGTH = 10000
QUALIFIED = (
    "Tags on function aliases and versions are not supported. Please specify a function ARN."
)


def parse_resource(resource: str, region: str, account: str) -> str:
    """The function name a ``{Resource}`` ARN names (see the module docstring)."""
    if not 1 <= len(resource) <= MAX_RESOURCE_LENGTH:
        bound = "greater than or equal to 1" if not resource else "less than or equal to 10000"
        raise validation_error(
            [violation(resource, "resource", f"Member must have length {bound}")]
        )
    if re.fullmatch(TAGGABLE_RESOURCE_PATTERN, resource) is None:
        constraint = f"Member must satisfy regular expression pattern: {TAGGABLE_RESOURCE_PATTERN}"
        raise validation_error([violation(resource, "resource", constraint)])
    match = _FUNCTION_ARN.fullmatch(resource)
    if match is None:
        raise InvalidParameterValueException(
            "Ember supports tags on functions only; specify a function ARN."
        )
    if match["qualifier"] is not None:
        raise InvalidParameterValueException(QUALIFIED)
    if match["region"] != region:
        raise ResourceNotFoundException(
            f"Functions from '{match['region']}' are not reachable in this region ('{region}')"
        )
    if match["account"] != account:
        raise ResourceNotFoundException(f"Function not found: {resource}")
    return match["name"]


def parse_tags(body: Mapping[str, Any]) -> dict[str, str]:
    """TagResource's body: the required ``Tags`` map, checked."""
    tags = opt_str_map(body, "Tags")
    checks = Violations()
    if checks.required(tags, "tags"):
        assert tags is not None
        check_tags(tags, checks)
    checks.raise_if_any()
    assert tags is not None
    check_setting_tags(tags)
    return tags


def parse_tag_keys(keys: Sequence[str]) -> list[str]:
    """UntagResource's ``?tagKeys=`` (required; each 1-128 characters)."""
    checks = Violations()
    if not keys:
        checks.add(None, "tagKeys", "Member must not be null")
    elif not all(1 <= len(key) <= 128 for key in keys):
        checks.add(
            "[" + ", ".join(keys) + "]",
            "tagKeys",
            "Member must satisfy constraint: [Member must have length less than or equal to "
            "128, Member must have length greater than or equal to 1]",
        )
    checks.raise_if_any()
    return list(keys)


class FunctionTags:
    """The three tag operations against the registry. Scope: one per server."""

    def __init__(self, registry: FunctionRegistry, region: str, account: str) -> None:
        self._registry = registry
        self._region = region
        self._account = account

    def _name(self, resource: str) -> str:
        name = parse_resource(resource, self._region, self._account)
        self._registry.get(name)  # ResourceNotFoundException "Function not found: <arn>"
        return name

    def list(self, resource: str) -> dict[str, str]:
        return dict(self._registry.get(self._name(resource)).tags)

    async def tag(self, resource: str, body: Mapping[str, Any]) -> None:
        name = self._name(resource)
        tags = parse_tags(body)
        await self._registry.change_tags(name, lambda current: {**current, **tags})

    async def untag(self, resource: str, keys: Sequence[str]) -> None:
        name = self._name(resource)
        removed = set(parse_tag_keys(keys))
        await self._registry.change_tags(
            name, lambda current: {k: v for k, v in current.items() if k not in removed}
        )
