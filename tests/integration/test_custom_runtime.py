"""Custom runtimes (``provided.*``): the function's own ``bootstrap`` speaks the Runtime API."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import awslambdaric
import pytest

from tests.integration.functions import ROLE, SHELL_BOOTSTRAP, make_zip
from tests.integration.test_invoke import body, invoke

AWSLAMBDARIC_APP = """
import os


def handler(event, context):
    if event.get("fail"):
        raise RuntimeError("asked to fail")
    return {"ric": "awslambdaric", "request_id": context.aws_request_id, "event": event}
"""

# A bootstrap that runs the real AWS runtime interface client vendored in the zip.
AWSLAMBDARIC_BOOTSTRAP = """#!/bin/sh
cd "$LAMBDA_TASK_ROOT"
exec /usr/bin/python3 -m awslambdaric "$_HANDLER"
"""


def _vendored_awslambdaric() -> dict[str, str | bytes]:
    """awslambdaric and its dependencies, copied from the locked install into a zip tree."""
    site = Path(awslambdaric.__file__).resolve().parent.parent
    files: dict[str, str | bytes] = {}
    # packages, plus top-level modules (awslambdaric's C extension is runtime_client*.so)
    for pattern in (
        "awslambdaric/**/*",
        "simplejson/**/*",
        "snapshot_restore_py*",
        "runtime_client*.so",
    ):
        for path in sorted(site.glob(pattern)):
            if path.is_file() and "__pycache__" not in path.parts:
                files[str(path.relative_to(site))] = path.read_bytes()
    return files


def test_shell_bootstrap(lambda_client: Any) -> None:
    lambda_client.create_function(
        FunctionName="shell-runtime",
        Runtime="provided.al2023",
        Role=ROLE,
        Handler="unused",
        Code={"ZipFile": make_zip({"bootstrap": SHELL_BOOTSTRAP}, {"bootstrap": 0o755})},
    )
    lambda_client.get_waiter("function_active_v2").wait(FunctionName="shell-runtime")
    response = invoke(lambda_client, "shell-runtime", {"n": 1}, LogType="Tail")
    assert body(response) == {"echo": {"n": 1}}
    assert "custom runtime got" in __import__("base64").b64decode(response["LogResult"]).decode()


def test_awslambdaric_in_a_custom_runtime(lambda_client: Any) -> None:
    files = _vendored_awslambdaric()
    assert any(name.startswith("awslambdaric/") for name in files)
    files["bootstrap"] = AWSLAMBDARIC_BOOTSTRAP
    files["app.py"] = textwrap.dedent(AWSLAMBDARIC_APP)
    lambda_client.create_function(
        FunctionName="real-ric",
        Runtime="provided.al2023",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip(files, {"bootstrap": 0o755})},
    )
    lambda_client.get_waiter("function_active_v2").wait(FunctionName="real-ric")
    ok = invoke(lambda_client, "real-ric", {"x": 1})
    assert "FunctionError" not in ok
    assert body(ok) == {
        "ric": "awslambdaric",
        "request_id": ok["ResponseMetadata"]["RequestId"],
        "event": {"x": 1},
    }
    failed = invoke(lambda_client, "real-ric", {"fail": True})
    assert failed["FunctionError"] == "Unhandled"
    error = body(failed)
    assert error["errorType"] == "RuntimeError"
    assert error["errorMessage"] == "asked to fail"
    assert error["requestId"] == failed["ResponseMetadata"]["RequestId"]


@pytest.mark.parametrize("mode", [0o644])
def test_missing_or_non_executable_bootstrap(lambda_client: Any, mode: int) -> None:
    lambda_client.create_function(
        FunctionName="no-exec",
        Runtime="provided.al2",
        Role=ROLE,
        Handler="x",
        Code={"ZipFile": make_zip({"bootstrap": "#!/bin/sh\necho hi\n"}, {"bootstrap": mode})},
    )
    lambda_client.get_waiter("function_active_v2").wait(FunctionName="no-exec")
    response = invoke(lambda_client, "no-exec", {})
    assert response["FunctionError"] == "Unhandled"
    assert json.loads(response["Body"])["errorType"] == "Runtime.InvalidEntrypoint"
