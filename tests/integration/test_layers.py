"""Lambda layers through boto3 against a real server and real sandboxes (namespace backend).

Publish / get / list / delete and the layer policy operations with their errors; then
functions that use layers: a Python module from a layer, two layers overwriting one file
in order, /opt read-only, /opt/bin on PATH, a restart keeping everything, and a deleted
layer version still serving the functions that use it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import EmberServer, start_server
from tests.integration.functions import ROLE, make_zip, python_zip

REGION_ACCOUNT = "us-east-1:000000000000"
LAYER_ARN = f"arn:aws:lambda:{REGION_ACCOUNT}:layer:"

HANDLER = """
import json, os, subprocess, sys


def handler(event, context):
    action = event.get("action")
    if action == "import":
        import greeting
        return {"greeting": greeting.hello(), "file": greeting.__file__}
    if action == "read":
        with open(event["path"]) as handle:
            return {"text": handle.read()}
    if action == "write":
        try:
            with open(event["path"], "w") as handle:
                handle.write("x")
        except OSError as error:
            return {"errno": error.errno, "error": type(error).__name__}
        return {"written": True}
    if action == "run":
        done = subprocess.run([event["command"]], capture_output=True, text=True)
        return {"stdout": done.stdout, "code": done.returncode}
    return {
        "sys_path": sys.path,
        "path": os.environ.get("PATH"),
        "ld_library_path": os.environ.get("LD_LIBRARY_PATH"),
    }
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ember-layers")


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[EmberServer]:
    running = start_server(data_dir)
    yield running
    running.stop()


def publish(client: Any, name: str, files: dict[str, str], **extra: Any) -> dict[str, Any]:
    response: dict[str, Any] = client.publish_layer_version(
        LayerName=name, Content={"ZipFile": layer_zip(files)}, **extra
    )
    return response


def layer_zip(files: dict[str, str]) -> bytes:
    """Files under ``bin/`` are executable."""
    modes = {path: 0o755 for path in files if path.startswith("bin/")}
    return make_zip({path: text for path, text in files.items()}, modes)


def create(client: Any, name: str, layers: list[str]) -> None:
    client.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": python_zip(HANDLER)},
        Layers=layers,
    )
    client.get_waiter("function_active_v2").wait(FunctionName=name)


def invoke(client: Any, name: str, event: dict[str, Any]) -> Any:
    response = client.invoke(FunctionName=name, Payload=json.dumps(event).encode())
    payload = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, payload
    return payload


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    error = excinfo.value.response
    status = error["ResponseMetadata"]["HTTPStatusCode"]
    return error["Error"]["Code"], error["Error"]["Message"], status


# ---------------------------------------------------------------- the layer API


def test_publish_and_get_a_layer_version(server: EmberServer) -> None:
    client = server.client()
    files = {"python/greeting.py": "def hello():\n    return 'hi from a layer'\n"}
    zipped = layer_zip(files)
    published = client.publish_layer_version(
        LayerName="shapes",
        Content={"ZipFile": zipped},
        Description="a layer",
        CompatibleRuntimes=["python3.11", "python3.12"],
        CompatibleArchitectures=["x86_64"],
        LicenseInfo="MIT",
    )
    assert published["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert published["LayerArn"] == LAYER_ARN + "shapes"
    assert published["LayerVersionArn"] == LAYER_ARN + "shapes:1"
    assert published["Version"] == 1
    assert published["Content"]["CodeSize"] == len(zipped)
    digest = base64.b64encode(hashlib.sha256(zipped).digest()).decode()
    assert published["Content"]["CodeSha256"] == digest
    assert published["CompatibleRuntimes"] == ["python3.11", "python3.12"]
    assert published["CompatibleArchitectures"] == ["x86_64"]
    assert published["LicenseInfo"] == "MIT"
    assert published["Description"] == "a layer"
    assert published["CreatedDate"].endswith("+0000")
    with urllib.request.urlopen(published["Content"]["Location"]) as download:
        assert download.read() == zipped
    got = client.get_layer_version(LayerName="shapes", VersionNumber=1)
    by_arn = client.get_layer_version_by_arn(Arn=LAYER_ARN + "shapes:1")
    by_layer_arn = client.get_layer_version(LayerName=LAYER_ARN + "shapes", VersionNumber=1)
    for shape in (got, by_arn, by_layer_arn):
        assert shape["LayerVersionArn"] == published["LayerVersionArn"]
        assert shape["Content"]["CodeSha256"] == digest
    usage = client.get_account_settings()["AccountUsage"]["TotalCodeSize"]
    second = publish(client, "shapes", files)
    assert client.get_account_settings()["AccountUsage"]["TotalCodeSize"] == usage + len(zipped)
    assert second["Version"] == 2
    assert "CompatibleRuntimes" not in second
    assert "LicenseInfo" not in second


def test_list_layers_and_versions_with_filters_and_pages(server: EmberServer) -> None:
    client = server.client()
    publish(client, "list-a", {"a.txt": "1"}, CompatibleRuntimes=["python3.11"])
    publish(client, "list-a", {"a.txt": "2"}, CompatibleRuntimes=["nodejs20.x"])
    publish(client, "list-b", {"b.txt": "1"}, CompatibleArchitectures=["arm64"])
    layers = {item["LayerName"]: item for item in client.list_layers()["Layers"]}
    assert layers["list-a"]["LatestMatchingVersion"]["Version"] == 2
    assert layers["list-a"]["LayerArn"] == LAYER_ARN + "list-a"
    python = {
        i["LayerName"]: i for i in client.list_layers(CompatibleRuntime="python3.11")["Layers"]
    }
    assert python["list-a"]["LatestMatchingVersion"]["Version"] == 1
    assert "list-b" not in python
    arm = client.list_layers(CompatibleArchitecture="arm64")["Layers"]
    assert [item["LayerName"] for item in arm] == ["list-b"]
    versions = client.list_layer_versions(LayerName="list-a")["LayerVersions"]
    assert [v["Version"] for v in versions] == [2, 1]
    page = client.list_layer_versions(LayerName="list-a", MaxItems=1)
    assert [v["Version"] for v in page["LayerVersions"]] == [2]
    rest = client.list_layer_versions(LayerName="list-a", Marker=page["NextMarker"])
    assert [v["Version"] for v in rest["LayerVersions"]] == [1]
    assert "NextMarker" not in rest
    pages = client.get_paginator("list_layers").paginate(PaginationConfig={"PageSize": 1})
    names = [item["LayerName"] for p in pages for item in p["Layers"]]
    assert names == sorted(names)
    assert {"list-a", "list-b"} <= set(names)
    assert client.list_layer_versions(LayerName="no-such-layer")["LayerVersions"] == []


def test_delete_never_reuses_a_version_number(server: EmberServer) -> None:
    client = server.client()
    publish(client, "deleting", {"a.txt": "1"})
    publish(client, "deleting", {"a.txt": "2"})
    client.delete_layer_version(LayerName="deleting", VersionNumber=2)
    client.delete_layer_version(LayerName="deleting", VersionNumber=2)  # idempotent
    with pytest.raises(ClientError) as excinfo:
        client.get_layer_version(LayerName="deleting", VersionNumber=2)
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        "The resource you requested does not exist.",
        404,
    )
    assert publish(client, "deleting", {"a.txt": "3"})["Version"] == 3
    versions = client.list_layer_versions(LayerName="deleting")["LayerVersions"]
    assert [v["Version"] for v in versions] == [3, 1]


def test_layer_api_errors(server: EmberServer) -> None:
    client = server.client()
    with pytest.raises(ClientError) as excinfo:
        client.get_layer_version(LayerName="missing", VersionNumber=1)
    assert error_of(excinfo)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as excinfo:
        client.get_layer_version(LayerName="missing", VersionNumber=0)
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "Layer Version Cannot be less than 1",
        400,
    )
    with pytest.raises(ClientError) as excinfo:
        publish(client, "bad.name", {"a.txt": "1"})
    code, message, status = error_of(excinfo)
    assert (code, status) == ("ValidationException", 400)
    assert message.startswith(
        "1 validation error detected: Value 'bad.name' at 'layerName' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: "
    )
    with pytest.raises(ClientError) as excinfo:
        publish(client, "bad-runtime", {"a.txt": "1"}, CompatibleRuntimes=["cobol1.0"])
    code, message, _ = error_of(excinfo)
    assert code == "ValidationException"
    assert "Value '[cobol1.0]' at 'compatibleRuntimes' failed to satisfy constraint" in message
    with pytest.raises(ClientError) as excinfo:
        client.publish_layer_version(LayerName="bad-zip", Content={"ZipFile": b"not a zip"})
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "Could not unzip uploaded file. Please check your file, then try to upload again.",
        400,
    )
    with pytest.raises(ClientError) as excinfo:
        client.list_layers(MaxItems=51)
    assert error_of(excinfo)[0] == "ValidationException"
    with pytest.raises(ClientError) as excinfo:
        client.get_layer_version_by_arn(Arn=LAYER_ARN + "missing:1")
    assert error_of(excinfo)[0] == "ResourceNotFoundException"
    assert client.list_layer_versions(LayerName="bad-zip")["LayerVersions"] == []


def test_layer_version_permissions(server: EmberServer) -> None:
    client = server.client()
    publish(client, "shared", {"a.txt": "1"})
    with pytest.raises(ClientError) as excinfo:
        client.get_layer_version_policy(LayerName="shared", VersionNumber=1)
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        "No policy is associated with the given resource.",
        404,
    )
    added = client.add_layer_version_permission(
        LayerName="shared",
        VersionNumber=1,
        StatementId="xaccount",
        Action="lambda:GetLayerVersion",
        Principal="223456789012",
    )
    assert json.loads(added["Statement"]) == {
        "Sid": "xaccount",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::223456789012:root"},
        "Action": "lambda:GetLayerVersion",
        "Resource": LAYER_ARN + "shared:1",
    }
    org = client.add_layer_version_permission(
        LayerName="shared",
        VersionNumber=1,
        StatementId="org",
        Action="lambda:GetLayerVersion",
        Principal="*",
        OrganizationId="o-abcdefghij",
        RevisionId=added["RevisionId"],
    )
    policy = client.get_layer_version_policy(LayerName="shared", VersionNumber=1)
    assert policy["RevisionId"] == org["RevisionId"]
    document = json.loads(policy["Policy"])
    assert document["Version"] == "2012-10-17"
    assert [s["Sid"] for s in document["Statement"]] == ["xaccount", "org"]
    assert document["Statement"][1]["Principal"] == "*"
    assert document["Statement"][1]["Condition"] == {
        "StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}
    }
    with pytest.raises(ClientError) as excinfo:
        client.add_layer_version_permission(
            LayerName="shared", VersionNumber=1, StatementId="org",
            Action="lambda:GetLayerVersion", Principal="*",
        )  # fmt: skip
    assert error_of(excinfo) == (
        "ResourceConflictException",
        "The statement id (org) provided already exists. Please provide a new statement id, "
        "or remove the existing statement.",
        409,
    )
    with pytest.raises(ClientError) as excinfo:
        client.remove_layer_version_permission(
            LayerName="shared", VersionNumber=1, StatementId="org", RevisionId="stale"
        )
    assert error_of(excinfo)[0] == "PreconditionFailedException"
    with pytest.raises(ClientError) as excinfo:
        client.add_layer_version_permission(
            LayerName="shared", VersionNumber=1, StatementId="bad",
            Action="lambda:InvokeFunction", Principal="*",
        )  # fmt: skip
    assert error_of(excinfo)[0] == "ValidationException"
    with pytest.raises(ClientError) as excinfo:
        client.add_layer_version_permission(
            LayerName="shared", VersionNumber=9, StatementId="x",
            Action="lambda:GetLayerVersion", Principal="*",
        )  # fmt: skip
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        f"Layer version {LAYER_ARN}shared:9 does not exist.",
        404,
    )
    client.remove_layer_version_permission(LayerName="shared", VersionNumber=1, StatementId="org")
    with pytest.raises(ClientError) as excinfo:
        client.remove_layer_version_permission(
            LayerName="shared", VersionNumber=1, StatementId="org"
        )
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        "Statement org is not found in resource policy.",
        404,
    )
    client.remove_layer_version_permission(
        LayerName="shared", VersionNumber=1, StatementId="xaccount"
    )
    with pytest.raises(ClientError) as excinfo:
        client.get_layer_version_policy(LayerName="shared", VersionNumber=1)
    assert error_of(excinfo)[0] == "ResourceNotFoundException"


# ---------------------------------------------------------------- functions with layers


def test_function_layers_are_validated(server: EmberServer) -> None:
    client = server.client()
    arn = publish(client, "valid", {"a.txt": "1"})["LayerVersionArn"]
    cases = [
        ([LAYER_ARN + "valid:7"], f"Layer version {LAYER_ARN}valid:7 does not exist."),
        ([arn] * 6, "Cannot reference more than 5 layers."),
        (
            ["arn:aws:lambda:eu-west-1:000000000000:layer:valid:1"],
            "Layers are not in the same region as the function. Layers are expected to be in "
            "region us-east-1.",
        ),
    ]
    for layers, message in cases:
        with pytest.raises(ClientError) as excinfo:
            create(client, "invalid-layers", layers)
        assert error_of(excinfo) == ("InvalidParameterValueException", message, 400)
    with pytest.raises(ClientError) as excinfo:
        create(client, "invalid-layers", ["not-an-arn"])
    assert error_of(excinfo)[0] == "ValidationException"
    with pytest.raises(ClientError):
        client.get_function(FunctionName="invalid-layers")


def test_function_imports_a_module_from_a_python_layer(server: EmberServer) -> None:
    client = server.client()
    files = {"python/greeting.py": "def hello():\n    return 'hi from a layer'\n"}
    layer = publish(client, "python-lib", files)
    create(client, "uses-python-layer", [layer["LayerVersionArn"]])
    config = client.get_function_configuration(FunctionName="uses-python-layer")
    assert config["Layers"] == [
        {"Arn": layer["LayerVersionArn"], "CodeSize": layer["Content"]["CodeSize"]}
    ]
    result = invoke(client, "uses-python-layer", {"action": "import"})
    assert result == {"greeting": "hi from a layer", "file": "/opt/python/greeting.py"}
    paths = invoke(client, "uses-python-layer", {})
    assert paths["sys_path"][:3] == [
        "/var/task",
        "/opt/python",
        "/opt/python/lib/python3.11/site-packages",
    ]
    assert paths["path"].endswith(":/opt/bin")
    assert paths["ld_library_path"].endswith(":/opt/lib")


def test_later_layers_overwrite_earlier_files(server: EmberServer) -> None:
    client = server.client()
    first = publish(client, "order-1", {"config/value.txt": "first", "only-first.txt": "1"})
    second = publish(client, "order-2", {"config/value.txt": "second"})
    arns = [first["LayerVersionArn"], second["LayerVersionArn"]]
    create(client, "layer-order", arns)
    assert invoke(client, "layer-order", {"action": "read", "path": "/opt/config/value.txt"}) == {
        "text": "second"
    }
    assert invoke(client, "layer-order", {"action": "read", "path": "/opt/only-first.txt"}) == {
        "text": "1"
    }
    client.update_function_configuration(FunctionName="layer-order", Layers=arns[::-1])
    client.get_waiter("function_updated_v2").wait(FunctionName="layer-order")
    assert invoke(client, "layer-order", {"action": "read", "path": "/opt/config/value.txt"}) == {
        "text": "first"
    }


def test_opt_is_read_only_and_opt_bin_is_on_path(server: EmberServer) -> None:
    client = server.client()
    script = textwrap.dedent(
        """\
        #!/bin/sh
        echo "tool from a layer"
        """
    )
    layer = publish(client, "tools", {"bin/layer-tool": script})
    create(client, "uses-tools", [layer["LayerVersionArn"]])
    assert invoke(client, "uses-tools", {"action": "run", "command": "layer-tool"}) == {
        "stdout": "tool from a layer\n",
        "code": 0,
    }
    for path in ("/opt/bin/layer-tool", "/opt/new-file"):
        result = invoke(client, "uses-tools", {"action": "write", "path": path})
        assert result == {"errno": 30, "error": "OSError"}  # EROFS


def test_a_deleted_layer_version_keeps_serving_its_functions(server: EmberServer) -> None:
    client = server.client()
    files = {"python/greeting.py": "def hello():\n    return 'still here'\n"}
    layer = publish(client, "short-lived", files)
    create(client, "keeps-deleted-layer", [layer["LayerVersionArn"]])
    client.delete_layer_version(LayerName="short-lived", VersionNumber=1)
    assert invoke(client, "keeps-deleted-layer", {"action": "import"})["greeting"] == "still here"
    client.update_function_configuration(FunctionName="keeps-deleted-layer", Timeout=10)
    client.get_waiter("function_updated_v2").wait(FunctionName="keeps-deleted-layer")
    assert invoke(client, "keeps-deleted-layer", {"action": "import"})["greeting"] == "still here"
    with pytest.raises(ClientError) as excinfo:
        create(client, "new-with-deleted-layer", [layer["LayerVersionArn"]])
    assert error_of(excinfo)[1] == f"Layer version {layer['LayerVersionArn']} does not exist."


def test_restart_keeps_layers_and_functions_using_them(server: EmberServer, data_dir: Path) -> None:
    client = server.client()
    files = {"python/greeting.py": "def hello():\n    return 'after restart'\n"}
    layer = publish(client, "durable", files, CompatibleRuntimes=["python3.11"])
    gone = publish(
        client, "durable-gone", {"python/greeting.py": "def hello():\n    return 'gone'\n"}
    )
    publish(client, "durable-gone", {"a.txt": "2"})
    create(client, "durable-gone-user", [gone["LayerVersionArn"]])
    client.delete_layer_version(LayerName="durable-gone", VersionNumber=2)
    client.delete_layer_version(LayerName="durable-gone", VersionNumber=1)
    client.add_layer_version_permission(
        LayerName="durable", VersionNumber=1, StatementId="all",
        Action="lambda:GetLayerVersion", Principal="*",
    )  # fmt: skip
    create(client, "durable-user", [layer["LayerVersionArn"]])
    server.stop()
    restarted = start_server(data_dir)
    try:
        client = restarted.client()
        got = client.get_layer_version(LayerName="durable", VersionNumber=1)
        assert got["CompatibleRuntimes"] == ["python3.11"]
        policy = json.loads(
            client.get_layer_version_policy(LayerName="durable", VersionNumber=1)["Policy"]
        )
        assert [s["Sid"] for s in policy["Statement"]] == ["all"]
        assert client.list_layer_versions(LayerName="durable-gone")["LayerVersions"] == []
        assert publish(client, "durable-gone", {"a.txt": "3"})["Version"] == 3  # never reused
        result = invoke(client, "durable-user", {"action": "import"})
        assert result["greeting"] == "after restart"
        assert invoke(client, "durable-gone-user", {"action": "import"})["greeting"] == "gone"
    finally:
        restarted.stop()


def test_layers_on_the_exec_path_too(tmp_path: Path) -> None:
    """Without pre-warmed sandboxes (the exec fallback) /opt is mounted the same way."""
    exec_server = start_server(tmp_path, env={"EMBER_SANDBOX_ZYGOTE": "0"})
    try:
        assert "exec (pre-warmed zygotes off)" in "".join(exec_server.output)
        client = exec_server.client()
        files = {"python/greeting.py": "def hello():\n    return 'exec path'\n"}
        layer = publish(client, "exec-lib", files)
        create(client, "exec-user", [layer["LayerVersionArn"]])
        assert invoke(client, "exec-user", {"action": "import"})["greeting"] == "exec path"
        result = invoke(client, "exec-user", {"action": "write", "path": "/opt/x"})
        assert result == {"errno": 30, "error": "OSError"}
    finally:
        exec_server.stop()
