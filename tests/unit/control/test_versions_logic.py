"""The pure rules of versions and aliases: snapshots, preconditions, routing choice."""

from __future__ import annotations

import random
from dataclasses import replace
from types import MappingProxyType

import pytest

from ember.control import versions as v
from ember.control.aliases import parse_alias_input, pick
from ember.errors import (
    InvalidParameterValueException,
    PreconditionFailedException,
    ValidationException,
)
from ember.model.functions import (
    AliasRecord,
    CodeInfo,
    FunctionConfig,
    FunctionRecord,
    State,
    UpdateStatus,
)

LATEST = FunctionRecord(
    name="fn",
    config=FunctionConfig(runtime="python3.11", handler="app.handler", role="r", description="d"),
    code=CodeInfo("hex", "b64", 10),
    revision_id="rev",
    last_modified=5.0,
    state=State.ACTIVE,
    last_update_status=UpdateStatus.SUCCESSFUL,
    last_version=2,
)


def test_a_snapshot_is_the_numbered_copy_of_latest() -> None:
    version = v.snapshot(LATEST, 3, None)
    assert (version.version, version.config, version.code) == ("3", LATEST.config, LATEST.code)
    assert version.revision_id != LATEST.revision_id
    assert version.state is State.ACTIVE
    assert version.last_version == 0
    assert v.snapshot(LATEST, 3, "mine").config.description == "mine"


def test_a_snapshot_of_a_settling_latest_is_pending_until_settled() -> None:
    pending = v.snapshot(replace(LATEST, state=State.PENDING), 1, None)
    assert pending.state is State.PENDING
    updating = replace(LATEST, last_update_status=UpdateStatus.IN_PROGRESS)
    assert v.snapshot(updating, 1, None).state is State.PENDING
    assert v.settled(pending).state is State.ACTIVE


def test_unchanged_means_same_code_and_same_last_change() -> None:
    previous = v.snapshot(LATEST, 2, "other description")
    assert v.unchanged(LATEST, previous)
    assert not v.unchanged(LATEST, None)
    assert not v.unchanged(replace(LATEST, last_modified=6.0), previous)


def test_publish_preconditions_in_aws_order() -> None:
    v.check_preconditions(LATEST, "b64", "rev")
    v.check_preconditions(LATEST, None, None)
    with pytest.raises(PreconditionFailedException):
        v.check_preconditions(LATEST, "wrong", "wrong")  # the revision is checked first
    with pytest.raises(InvalidParameterValueException, match=r"CodeSHA256 \(wrong\)"):
        v.check_preconditions(LATEST, "wrong", None)


def test_versions_are_listed_latest_first_then_by_number() -> None:
    ten, two = v.snapshot(LATEST, 10, None), v.snapshot(LATEST, 2, None)
    assert [r.version for r in v.ordered(LATEST, [ten, two])] == ["$LATEST", "2", "10"]
    assert v.is_version_number("12")
    assert not v.is_version_number("$LATEST")
    assert not v.is_version_number("live")


def test_weighted_pick_is_deterministic_under_a_seed_and_near_its_weight() -> None:
    alias = AliasRecord("fn", "live", "1", "rev", routing=MappingProxyType({"2": 0.3}))
    picks = [pick(alias, random.Random(7)) for _ in range(3)]
    assert len(set(picks)) == 1  # same seed, same choice
    rng = random.Random(42)
    share = sum(pick(alias, rng) == "2" for _ in range(10000)) / 10000
    assert 0.28 < share < 0.32
    plain = AliasRecord("fn", "live", "1", "rev")
    assert {pick(plain, rng) for _ in range(100)} == {"1"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"Name": "123", "FunctionVersion": "1"}, "'name'"),
        ({"Name": "a" * 129, "FunctionVersion": "1"}, "'name'"),
        ({"Name": "bad.name", "FunctionVersion": "1"}, "'name'"),
        ({"FunctionVersion": "1"}, "Value null at 'name'"),
        ({"Name": "live"}, "Value null at 'functionVersion'"),
        ({"Name": "live", "FunctionVersion": "v1"}, "'functionVersion'"),
        ({"Name": "live", "FunctionVersion": "1", "Description": "x" * 257}, "'description'"),
    ],
)
def test_alias_input_violations(body: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationException, match=field):
        parse_alias_input(body, create=True)


def test_alias_input_reads_routing() -> None:
    parsed = parse_alias_input(
        {
            "Name": "live",
            "FunctionVersion": "1",
            "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.5}},
        },
        create=True,
    )
    assert parsed.routing == {"2": 0.5}
    assert parse_alias_input({"RoutingConfig": {}}, create=False).routing == {}
    assert parse_alias_input({}, create=False).routing is None
