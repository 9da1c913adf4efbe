"""Published versions through boto3: snapshots, qualifiers, deletion, persistence."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import EmberServer, start_server
from tests.integration.functions import ROLE, python_zip

ARN = "arn:aws:lambda:us-east-1:000000000000:function:"

VERSIONED = """
import os

MARK = "{mark}"


def handler(event, context):
    return {{
        "mark": MARK,
        "version": context.function_version,
        "env_version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"],
        "invoked_arn": context.invoked_function_arn,
        "stream": context.log_stream_name,
        "var": os.environ.get("MY_VAR"),
    }}
"""


def code(mark: str) -> bytes:
    return python_zip(VERSIONED.format(mark=mark))


def create(client: Any, name: str, mark: str = "one", **extra: Any) -> dict[str, Any]:
    response: dict[str, Any] = client.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": code(mark)},
        Environment={"Variables": {"MY_VAR": mark}},
        **extra,
    )
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    return response


def update_code(client: Any, name: str, mark: str, **extra: Any) -> dict[str, Any]:
    response: dict[str, Any] = client.update_function_code(
        FunctionName=name, ZipFile=code(mark), **extra
    )
    client.get_waiter("function_updated_v2").wait(FunctionName=name)
    return response


def invoke(client: Any, name: str, **extra: Any) -> tuple[dict[str, Any], str]:
    response = client.invoke(FunctionName=name, Payload=b"{}", **extra)
    assert "FunctionError" not in response
    return json.loads(response["Payload"].read()), response["ExecutedVersion"]


def error(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response = excinfo.value.response
    status = response["ResponseMetadata"]["HTTPStatusCode"]
    return response["Error"]["Code"], status, response["Error"]["Message"]


def test_a_version_is_an_immutable_snapshot(lambda_client: Any) -> None:
    create(lambda_client, "snap", Description="first")
    published = lambda_client.publish_version(FunctionName="snap")
    assert published["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert published["Version"] == "1"
    assert published["FunctionArn"] == ARN + "snap:1"
    assert (
        published["CodeSha256"] == base64.b64encode(hashlib.sha256(code("one")).digest()).decode()
    )
    assert published["Description"] == "first"
    assert published["State"] == "Active"

    update_code(lambda_client, "snap", "two")
    lambda_client.update_function_configuration(
        FunctionName="snap", Environment={"Variables": {"MY_VAR": "two"}}, Timeout=9
    )
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName="snap")

    latest, executed = invoke(lambda_client, "snap")
    assert (latest["mark"], latest["var"], latest["version"], executed) == (
        "two", "two", "$LATEST", "$LATEST"
    )  # fmt: skip
    old, executed = invoke(lambda_client, "snap", Qualifier="1")
    assert (old["mark"], old["var"], executed) == ("one", "one", "1")
    assert old["version"] == old["env_version"] == "1"
    assert old["invoked_arn"] == ARN + "snap:1"
    assert "[1]" in old["stream"]
    assert "[$LATEST]" in latest["stream"]

    config = lambda_client.get_function_configuration(FunctionName="snap", Qualifier="1")
    assert config["Environment"] == {"Variables": {"MY_VAR": "one"}}
    assert config["Timeout"] == 3
    assert config["Version"] == "1"
    assert config["FunctionArn"] == ARN + "snap:1"
    assert lambda_client.get_function_configuration(FunctionName="snap")["Timeout"] == 9


def test_latest_and_version_one_never_share_an_environment(lambda_client: Any) -> None:
    create(lambda_client, "separate")
    lambda_client.publish_version(FunctionName="separate")  # same code and configuration
    streams = {invoke(lambda_client, "separate")[0]["stream"] for _ in range(2)}
    versioned = {invoke(lambda_client, "separate:1")[0]["stream"] for _ in range(2)}
    assert len(streams) == 1
    assert len(versioned) == 1
    assert streams.isdisjoint(versioned)


def test_publishing_unchanged_returns_the_last_version(lambda_client: Any) -> None:
    create(lambda_client, "same")
    first = lambda_client.publish_version(FunctionName="same")
    again = lambda_client.publish_version(FunctionName="same", Description="ignored")
    assert again["Version"] == first["Version"] == "1"
    assert again["RevisionId"] == first["RevisionId"]
    update_code(lambda_client, "same", "changed")
    assert lambda_client.publish_version(FunctionName="same")["Version"] == "2"


def test_publish_preconditions(lambda_client: Any) -> None:
    create(lambda_client, "guarded")
    latest = lambda_client.get_function_configuration(FunctionName="guarded")
    with pytest.raises(ClientError) as excinfo:
        lambda_client.publish_version(FunctionName="guarded", CodeSha256="bm9wZQ==")
    assert error(excinfo) == (
        "InvalidParameterValueException",
        400,
        f"CodeSHA256 (bm9wZQ==) is different from current CodeSHA256 in $LATEST "
        f"({latest['CodeSha256']}). Please try again with the CodeSHA256 in $LATEST.",
    )
    with pytest.raises(ClientError) as excinfo:
        lambda_client.publish_version(FunctionName="guarded", RevisionId="not-the-revision")
    assert error(excinfo)[:2] == ("PreconditionFailedException", 412)
    assert "does not match the latest Revision Id" in error(excinfo)[2]
    versions = lambda_client.list_versions_by_function(FunctionName="guarded")["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST"]  # nothing was published
    published = lambda_client.publish_version(
        FunctionName="guarded",
        CodeSha256=latest["CodeSha256"],
        RevisionId=latest["RevisionId"],
        Description="checked",
    )
    assert (published["Version"], published["Description"]) == ("1", "checked")
    # publishing changes $LATEST's RevisionId, as on Lambda
    after = lambda_client.get_function_configuration(FunctionName="guarded")
    assert after["RevisionId"] != latest["RevisionId"]


def test_qualifiers_by_name_arn_and_query(lambda_client: Any) -> None:
    create(lambda_client, "refs")
    lambda_client.publish_version(FunctionName="refs")
    for ref, extra in [
        ("refs:1", {}),
        (ARN + "refs:1", {}),
        ("000000000000:function:refs:1", {}),
        ("refs", {"Qualifier": "1"}),
        (ARN + "refs", {"Qualifier": "1"}),
    ]:
        got = lambda_client.get_function(FunctionName=ref, **extra)["Configuration"]
        assert (got["Version"], got["FunctionArn"]) == ("1", ARN + "refs:1"), ref
        assert invoke(lambda_client, ref, **extra)[1] == "1"
    unqualified = lambda_client.get_function(FunctionName="refs")["Configuration"]
    assert (unqualified["Version"], unqualified["FunctionArn"]) == ("$LATEST", ARN + "refs")
    explicit = lambda_client.get_function_configuration(FunctionName="refs", Qualifier="$LATEST")
    assert explicit["FunctionArn"] == ARN + "refs:$LATEST"

    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_function(FunctionName="refs:1", Qualifier="2")
    assert error(excinfo)[0] == "InvalidParameterValueException"
    for call in (lambda_client.get_function, lambda_client.get_function_configuration):
        with pytest.raises(ClientError) as excinfo:
            call(FunctionName="refs", Qualifier="7")
        assert error(excinfo) == (
            "ResourceNotFoundException", 404, f"Function not found: {ARN}refs:7"
        )  # fmt: skip
    with pytest.raises(ClientError) as excinfo:
        lambda_client.invoke(FunctionName="refs:7", Payload=b"{}")
    assert error(excinfo) == ("ResourceNotFoundException", 404, f"Function not found: {ARN}refs:7")
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_function(FunctionName="refs", Qualifier="nosuchalias")
    assert error(excinfo)[:2] == ("ResourceNotFoundException", 404)


def test_list_versions_paginates_latest_first(lambda_client: Any) -> None:
    create(lambda_client, "listed")
    for mark in ("a", "b"):
        lambda_client.publish_version(FunctionName="listed")
        update_code(lambda_client, "listed", mark)
    lambda_client.publish_version(FunctionName="listed")
    everything = lambda_client.list_versions_by_function(FunctionName="listed")["Versions"]
    assert [v["Version"] for v in everything] == ["$LATEST", "1", "2", "3"]
    assert [v["FunctionArn"] for v in everything] == [
        ARN + "listed:$LATEST", ARN + "listed:1", ARN + "listed:2", ARN + "listed:3"
    ]  # fmt: skip
    pages = lambda_client.get_paginator("list_versions_by_function").paginate(
        FunctionName="listed", PaginationConfig={"PageSize": 3}
    )
    assert [[v["Version"] for v in p["Versions"]] for p in pages] == [["$LATEST", "1", "2"], ["3"]]
    with pytest.raises(ClientError) as excinfo:
        lambda_client.list_versions_by_function(FunctionName="nothing-here")
    assert error(excinfo)[:2] == ("ResourceNotFoundException", 404)


def test_published_versions_are_not_updated(lambda_client: Any) -> None:
    create(lambda_client, "frozen")
    lambda_client.publish_version(FunctionName="frozen")
    with pytest.raises(ClientError) as excinfo:
        lambda_client.update_function_configuration(FunctionName="frozen:1", Timeout=10)
    assert error(excinfo)[:2] == ("InvalidParameterValueException", 400)
    with pytest.raises(ClientError) as excinfo:
        lambda_client.update_function_code(FunctionName="frozen:1", ZipFile=code("x"))
    assert error(excinfo)[:2] == ("InvalidParameterValueException", 400)
    assert lambda_client.get_function_configuration(FunctionName="frozen:1")["Timeout"] == 3


def test_create_and_update_code_with_publish(lambda_client: Any) -> None:
    created = create(lambda_client, "eager", Publish=True)
    assert created["Version"] == "1"
    lambda_client.get_waiter("published_version_active").wait(FunctionName="eager", Qualifier="1")
    updated = update_code(lambda_client, "eager", "second", Publish=True)
    assert (updated["Version"], updated["FunctionArn"]) == ("2", ARN + "eager:2")
    lambda_client.get_waiter("published_version_active").wait(FunctionName="eager", Qualifier="2")
    assert invoke(lambda_client, "eager:1")[0]["mark"] == "one"
    assert invoke(lambda_client, "eager:2")[0]["mark"] == "second"
    assert invoke(lambda_client, "eager")[0]["mark"] == "second"


def test_delete_a_version_and_numbers_are_never_reused(lambda_client: Any) -> None:
    create(lambda_client, "pruned")
    lambda_client.publish_version(FunctionName="pruned")
    update_code(lambda_client, "pruned", "two")
    lambda_client.publish_version(FunctionName="pruned")
    lambda_client.delete_function(FunctionName="pruned", Qualifier="2")
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_function(FunctionName="pruned:2")
    assert error(excinfo)[:2] == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as excinfo:
        lambda_client.delete_function(FunctionName="pruned", Qualifier="2")
    assert error(excinfo) == (
        "ResourceNotFoundException",
        404,
        f"Function not found: {ARN}pruned:2",
    )
    with pytest.raises(ClientError) as excinfo:
        lambda_client.delete_function(FunctionName="pruned", Qualifier="$LATEST")
    assert error(excinfo) == (
        "InvalidParameterValueException",
        400,
        "$LATEST version cannot be deleted without deleting the function.",
    )
    update_code(lambda_client, "pruned", "three")
    assert lambda_client.publish_version(FunctionName="pruned")["Version"] == "3"
    assert invoke(lambda_client, "pruned:1")[0]["mark"] == "one"  # the others are untouched
    lambda_client.delete_function(FunctionName=ARN + "pruned:1")  # a qualified ARN, too
    versions = lambda_client.list_versions_by_function(FunctionName="pruned")["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "3"]

    lambda_client.delete_function(FunctionName="pruned")  # the function takes its versions
    create(lambda_client, "pruned")
    versions = lambda_client.list_versions_by_function(FunctionName="pruned")["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST"]
    assert lambda_client.publish_version(FunctionName="pruned")["Version"] == "1"


def test_versions_survive_a_restart(tmp_path: Any) -> None:
    first = start_server(tmp_path)
    try:
        client = first.client()
        create(client, "durable")
        client.publish_version(FunctionName="durable")
        update_code(client, "durable", "two")
    finally:
        assert first.stop() == 0
    second: EmberServer = start_server(tmp_path)
    try:
        client = second.client()
        assert invoke(client, "durable:1")[0]["mark"] == "one"
        assert invoke(client, "durable")[0]["mark"] == "two"
        assert client.publish_version(FunctionName="durable")["Version"] == "2"
    finally:
        second.stop()
