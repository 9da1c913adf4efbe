"""Aliases through boto3: CRUD and errors, qualifiers, weighted routing, persistence."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import EmberServer, start_server
from tests.integration.test_versions import ARN, create, error, invoke, update_code

SEED = "20261123"  # EMBER_ROUTING_SEED: the weighted choices below are the same every run


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmberServer]:
    running = start_server(tmp_path_factory.mktemp("ember-data"), env={"EMBER_ROUTING_SEED": SEED})
    yield running
    running.stop()


def two_versions(client: Any, name: str) -> None:
    """``name`` with version 1 (mark "one") and version 2 (mark "two")."""
    create(client, name)
    client.publish_version(FunctionName=name)
    update_code(client, name, "two")
    client.publish_version(FunctionName=name)


def test_alias_lifecycle(lambda_client: Any) -> None:
    two_versions(lambda_client, "crud")
    created = lambda_client.create_alias(
        FunctionName="crud", Name="live", FunctionVersion="1", Description="stable"
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["AliasArn"] == ARN + "crud:live"
    assert (created["Name"], created["FunctionVersion"]) == ("live", "1")
    assert created["Description"] == "stable"
    assert "RoutingConfig" not in created
    got = lambda_client.get_alias(FunctionName="crud", Name="live")
    assert got["RevisionId"] == created["RevisionId"]

    with pytest.raises(ClientError) as excinfo:
        lambda_client.update_alias(FunctionName="crud", Name="live", RevisionId="stale")
    assert error(excinfo)[:2] == ("PreconditionFailedException", 412)
    updated = lambda_client.update_alias(
        FunctionName="crud", Name="live", FunctionVersion="2", RevisionId=created["RevisionId"]
    )
    assert (updated["FunctionVersion"], updated["Description"]) == ("2", "stable")
    assert updated["RevisionId"] != created["RevisionId"]
    assert invoke(lambda_client, "crud:live")[0]["mark"] == "two"

    lambda_client.create_alias(FunctionName=ARN + "crud", Name="beta", FunctionVersion="$LATEST")
    listed = lambda_client.list_aliases(FunctionName="crud")["Aliases"]
    assert [a["Name"] for a in listed] == ["beta", "live"]
    only = lambda_client.list_aliases(FunctionName="crud", FunctionVersion="2")["Aliases"]
    assert [a["Name"] for a in only] == ["live"]
    pages = lambda_client.get_paginator("list_aliases").paginate(
        FunctionName="crud", PaginationConfig={"PageSize": 1}
    )
    assert [[a["Name"] for a in p["Aliases"]] for p in pages] == [["beta"], ["live"]]

    assert lambda_client.delete_alias(FunctionName="crud", Name="live")[
        "ResponseMetadata"
    ]["HTTPStatusCode"] == 204  # fmt: skip
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_alias(FunctionName="crud", Name="live")
    assert error(excinfo) == (
        "ResourceNotFoundException", 404, f"Cannot find alias arn: {ARN}crud:live"
    )  # fmt: skip
    with pytest.raises(ClientError) as excinfo:
        lambda_client.invoke(FunctionName="crud:live", Payload=b"{}")
    assert error(excinfo)[:2] == ("ResourceNotFoundException", 404)


def test_alias_errors(lambda_client: Any) -> None:
    two_versions(lambda_client, "strict")
    lambda_client.create_alias(FunctionName="strict", Name="live", FunctionVersion="1")
    cases: list[tuple[dict[str, Any], tuple[str, int, str | None]]] = [
        (
            {"Name": "live", "FunctionVersion": "2"},
            ("ResourceConflictException", 409, f"Alias already exists: {ARN}strict:live"),
        ),
        (
            {"Name": "next", "FunctionVersion": "9"},
            ("ResourceNotFoundException", 404, f"Function not found: {ARN}strict:9"),
        ),
        ({"Name": "123", "FunctionVersion": "1"}, ("ValidationException", 400, None)),
        (
            {"Name": "w", "FunctionVersion": "1",
             "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.1, "3": 0.1}}},
            ("InvalidParameterValueException", 400,
             "Number of items in AdditionalVersionWeights cannot be greater than 1"),
        ),
        (
            {"Name": "w", "FunctionVersion": "1",
             "RoutingConfig": {"AdditionalVersionWeights": {"2": 1.5}}},
            ("ValidationException", 400, None),
        ),
        (
            {"Name": "w", "FunctionVersion": "1",
             "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.5}}},
            ("InvalidParameterValueException", 400,
             "Invalid function version 1. Function version 1 is already included in "
             "routing configuration."),
        ),
        (
            {"Name": "w", "FunctionVersion": "$LATEST",
             "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.5}}},
            ("InvalidParameterValueException", 400,
             "$LATEST is not supported for an alias pointing to more than 1 version"),
        ),
        (
            {"Name": "w", "FunctionVersion": "1",
             "RoutingConfig": {"AdditionalVersionWeights": {"7": 0.5}}},
            ("ResourceNotFoundException", 404, f"Function not found: {ARN}strict:7"),
        ),
    ]  # fmt: skip
    for params, expected in cases:
        with pytest.raises(ClientError) as excinfo:
            lambda_client.create_alias(FunctionName="strict", **params)
        code, status, message = error(excinfo)
        assert (code, status) == expected[:2], params
        if expected[2] is not None:
            assert message == expected[2]
    with pytest.raises(ClientError) as excinfo:
        lambda_client.create_alias(FunctionName="absent", Name="live", FunctionVersion="1")
    assert error(excinfo) == ("ResourceNotFoundException", 404, f"Function not found: {ARN}absent")
    assert [a["Name"] for a in lambda_client.list_aliases(FunctionName="strict")["Aliases"]] == [
        "live"
    ]  # nothing else was created


def test_weighted_versions_need_the_same_role(lambda_client: Any) -> None:
    two_versions(lambda_client, "roles")
    lambda_client.update_function_configuration(
        FunctionName="roles", Role="arn:aws:iam::000000000000:role/another"
    )
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName="roles")
    lambda_client.publish_version(FunctionName="roles")  # version 3, another role
    with pytest.raises(ClientError) as excinfo:
        lambda_client.create_alias(
            FunctionName="roles",
            Name="mixed",
            FunctionVersion="1",
            RoutingConfig={"AdditionalVersionWeights": {"3": 0.5}},
        )
    assert error(excinfo)[:2] == ("InvalidParameterValueException", 400)
    assert "same execution role" in error(excinfo)[2]


def test_an_alias_is_a_qualifier_everywhere(lambda_client: Any) -> None:
    two_versions(lambda_client, "named")
    lambda_client.create_alias(FunctionName="named", Name="live", FunctionVersion="1")
    for ref, extra in [
        ("named:live", {}),
        (ARN + "named:live", {}),
        ("named", {"Qualifier": "live"}),
    ]:
        result, executed = invoke(lambda_client, ref, **extra)
        assert (result["mark"], result["version"], executed) == ("one", "1", "1")
        assert result["invoked_arn"] == ARN + "named:live"
        config = lambda_client.get_function_configuration(FunctionName=ref, **extra)
        assert (config["FunctionArn"], config["Version"]) == (ARN + "named:live", "1")
        got = lambda_client.get_function(FunctionName=ref, **extra)["Configuration"]
        assert got["FunctionArn"] == ARN + "named:live"
    assert lambda_client.get_alias(FunctionName="named:live", Name="live")["Name"] == "live"


def test_a_version_an_alias_routes_to_cannot_be_deleted(lambda_client: Any) -> None:
    two_versions(lambda_client, "pinned")
    lambda_client.create_alias(
        FunctionName="pinned",
        Name="live",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}},
    )
    for version in ("1", "2"):
        with pytest.raises(ClientError) as excinfo:
            lambda_client.delete_function(FunctionName="pinned", Qualifier=version)
        assert error(excinfo) == (
            "ResourceConflictException",
            409,
            "Unable to delete version because the following aliases reference it: [live]",
        )
    cleared = lambda_client.update_alias(
        FunctionName="pinned", Name="live", RoutingConfig={"AdditionalVersionWeights": {}}
    )
    assert "RoutingConfig" not in cleared
    lambda_client.delete_function(FunctionName="pinned", Qualifier="2")  # no longer routed to

    lambda_client.delete_function(FunctionName="pinned")  # takes its aliases along
    create(lambda_client, "pinned")
    assert lambda_client.list_aliases(FunctionName="pinned")["Aliases"] == []


def test_weighted_routing_splits_by_weight(lambda_client: Any) -> None:
    two_versions(lambda_client, "canary")
    alias = lambda_client.create_alias(
        FunctionName="canary",
        Name="live",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.3}},
    )
    assert alias["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.3}}
    streams = {v: invoke(lambda_client, f"canary:{v}")[0]["stream"] for v in ("1", "2")}
    runs: Counter[str] = Counter()
    for _ in range(200):
        result, executed = invoke(lambda_client, "canary:live")
        assert result["version"] == executed  # the header says which version ran
        assert result["mark"] == {"1": "one", "2": "two"}[executed]
        assert result["stream"] == streams[executed]  # the version's own environment
        assert result["invoked_arn"] == ARN + "canary:live"
        runs[executed] += 1
    assert runs["1"] + runs["2"] == 200
    assert 40 <= runs["2"] <= 80, runs  # 60 expected; the seed makes the count fixed


def test_aliases_survive_a_restart(tmp_path: Any) -> None:
    first = start_server(tmp_path)
    try:
        client = first.client()
        two_versions(client, "kept")
        created = client.create_alias(
            FunctionName="kept",
            Name="live",
            FunctionVersion="2",
            RoutingConfig={"AdditionalVersionWeights": {"1": 0.25}},
        )
    finally:
        assert first.stop() == 0
    second: EmberServer = start_server(tmp_path)
    try:
        client = second.client()
        alias = client.get_alias(FunctionName="kept", Name="live")
        assert alias["RevisionId"] == created["RevisionId"]
        assert alias["RoutingConfig"] == {"AdditionalVersionWeights": {"1": 0.25}}
        assert invoke(client, "kept:live")[1] in ("1", "2")
        versions = client.list_versions_by_function(FunctionName="kept")["Versions"]
        assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    finally:
        second.stop()
