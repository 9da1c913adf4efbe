"""The Node.js runtimes (``nodejs20.x``, and 22.x/24.x when found) against a real server,
real sandboxes and boto3: handler styles, module kinds, context, errors, logs, limits."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

from ember.runtimes.catalogue import NODE_RUNTIMES, RuntimeCatalogue
from tests.integration.functions import ROLE, make_zip
from tests.integration.test_invoke import body, invoke, tail

INSTALLED = [r for r in NODE_RUNTIMES if RuntimeCatalogue.discover({}).get(r) is not None]
pytestmark = pytest.mark.skipif(
    "nodejs20.x" not in INSTALLED, reason="no node 20 on this machine (nodejs20.x not installed)"
)
RUNTIME = "nodejs20.x"
LINE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"  # a console line's ISO timestamp

HELLO = """
let inits = 0;
inits += 1;
console.log('init ran');
exports.handler = async (event, context) => {
  return { hello: event.name, pid: process.pid, inits, stream: context.logStreamName };
};
"""

ASYNC = """
export const handler = async (event) => {
  await new Promise((resolve) => setTimeout(resolve, 5));
  return { kind: 'async', x: event.x * 2 };
};
"""

CALLBACK = """
exports.handler = function (event, context, callback) {
  setTimeout(() => callback(null, { kind: 'callback', x: event.x }), 5);
};
"""

CONTEXT = """
exports.handler = async (event, context) => ({
  functionName: context.functionName,
  functionVersion: context.functionVersion,
  invokedFunctionArn: context.invokedFunctionArn,
  memoryLimitInMB: context.memoryLimitInMB,
  awsRequestId: context.awsRequestId,
  logGroupName: context.logGroupName,
  logStreamName: context.logStreamName,
  identity: context.identity === undefined ? 'undefined' : context.identity,
  clientContext: context.clientContext,
  remaining: context.getRemainingTimeInMillis(),
  waits: context.callbackWaitsForEmptyEventLoop,
  legacy: [typeof context.succeed, typeof context.fail, typeof context.done],
  env: Object.fromEntries(Object.entries(process.env).filter(([k]) =>
    /^(AWS_|LAMBDA_|_HANDLER|NODE_PATH|TZ|LANG)/.test(k))),
});
"""

# A timer is pending when the callback is called: with the flag off the answer goes at
# once (a 30 s timer, 3 s function timeout); with it on, only once the timer has fired.
EVENT_LOOP = """
exports.handler = (event, context, callback) => {
  const result = { fired: false };
  context.callbackWaitsForEmptyEventLoop = event.waits;
  setTimeout(() => { result.fired = true; }, event.waits ? 50 : 30000);
  callback(null, result);
};
"""

FAILING = """
exports.handler = async (event) => {
  throw new Error('boom ' + event.x);
};
"""

CALLBACK_ERROR = """
class ValidationError extends Error {}
ValidationError.prototype.name = 'ValidationError';
exports.handler = (event, context, callback) => callback(new ValidationError('bad'));
"""

LOGGING = """
exports.handler = async () => {
  console.log('to log', { a: 1 });
  console.info('to info');
  console.warn('to warn');
  console.error('to error');
  console.debug('to debug');
  console.trace('to trace');
  console.log('two\\nlines');
  return null;
};
"""

SLOW = """
exports.handler = async () => new Promise((resolve) => setTimeout(resolve, 30000));
"""

BIG = """
exports.handler = async (event) => (event.big ? 'x'.repeat(7 * 1024 * 1024) : 'small');
"""

UNCAUGHT = """
exports.handler = (event, context, callback) => {
  setTimeout(() => { throw new Error('thrown later'); }, 1);
};
"""

REJECTION = """
exports.handler = async () => {
  Promise.reject(new Error('nobody waits'));
  await new Promise((resolve) => setTimeout(resolve, 1000));
  return 'late';
};
"""

SILENT = """
exports.handler = (event, context) => { setTimeout(() => {}, 5); };
"""

STREAMING = """
exports.handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  if (event.fail) {
    responseStream.write('partial ');
    throw new TypeError('stream broke');
  }
  responseStream.setContentType('text/plain');
  responseStream.write('hello ');
  await new Promise((resolve) => setTimeout(resolve, 5));
  responseStream.write(context.functionName);
  responseStream.end();
});
"""


def deploy(
    client: Any, name: str, files: dict[str, str], handler: str = "index.handler", **extra: Any
) -> str:
    client.create_function(
        FunctionName=name, Runtime=extra.pop("Runtime", RUNTIME), Role=ROLE, Handler=handler,
        Code={"ZipFile": make_zip(dict(files))}, **extra,
    )  # fmt: skip
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    return name


def request_id(response: dict[str, Any]) -> str:
    value: str = response["ResponseMetadata"]["RequestId"]
    return value


def check_trace(error: dict[str, Any], first: str) -> None:
    """The Node client's ``trace``: the stack's lines, the first being ``Type: message``."""
    assert list(error) == ["errorType", "errorMessage", "trace"]
    lines = first.split("\n")
    assert error["trace"][: len(lines)] == lines
    assert error["trace"][len(lines)].startswith("    at ")


@pytest.mark.parametrize("runtime", INSTALLED)
def test_hello_commonjs_and_warm_reuse(lambda_client: Any, runtime: str) -> None:
    name = deploy(lambda_client, f"node-hello-{runtime[:8]}", {"index.js": HELLO}, Runtime=runtime)
    first = invoke(lambda_client, name, {"name": "ember"}, LogType="Tail")
    assert first["StatusCode"] == 200
    assert "FunctionError" not in first
    result = body(first)
    assert result["hello"] == "ember"
    assert "Init Duration" in tail(first)
    second = body(invoke(lambda_client, name, {"name": "again"}))
    assert second == {**result, "hello": "again"}  # same process, module loaded once


def test_async_handler_as_es_module(lambda_client: Any) -> None:
    deploy(lambda_client, "node-mjs", {"app.mjs": ASYNC}, handler="app.handler")
    assert body(invoke(lambda_client, "node-mjs", {"x": 21})) == {"kind": "async", "x": 42}


def test_type_module_package_loads_js_as_es_module(lambda_client: Any) -> None:
    files = {"package.json": '{"type": "module"}', "index.js": ASYNC}
    deploy(lambda_client, "node-type-module", files)
    assert body(invoke(lambda_client, "node-type-module", {"x": 1})) == {"kind": "async", "x": 2}


def test_callback_handler_in_a_nested_path(lambda_client: Any) -> None:
    files = {
        "src/lib/app.js": CALLBACK.replace(
            "exports.handler", "exports.nested = {}; exports.nested.handler"
        )
    }
    deploy(lambda_client, "node-callback", files, handler="src/lib/app.nested.handler")
    assert body(invoke(lambda_client, "node-callback", {"x": 5})) == {"kind": "callback", "x": 5}


def test_cjs_module(lambda_client: Any) -> None:
    deploy(lambda_client, "node-cjs", {"app.cjs": CALLBACK}, handler="app.handler")
    assert body(invoke(lambda_client, "node-cjs", {"x": 7})) == {"kind": "callback", "x": 7}


def test_context_fields(lambda_client: Any) -> None:
    deploy(lambda_client, "node-context", {"index.js": CONTEXT}, Timeout=7, MemorySize=256)
    client_context = {"custom": {"k": "v"}, "env": {"e": "1"}, "client": {"app_title": "t"}}
    response = invoke(
        lambda_client, "node-context", {},
        ClientContext=base64.b64encode(json.dumps(client_context).encode()).decode(),
    )  # fmt: skip
    result = body(response)
    env = result.pop("env")
    assert 0 < result.pop("remaining") <= 7000
    assert result.pop("logStreamName").startswith(("20", "$"))
    assert result == {
        "functionName": "node-context",
        "functionVersion": "$LATEST",
        "invokedFunctionArn": "arn:aws:lambda:us-east-1:000000000000:function:node-context",
        "memoryLimitInMB": "256",
        "awsRequestId": request_id(response),
        "logGroupName": "/aws/lambda/node-context",
        "identity": "undefined",
        "clientContext": client_context,
        "waits": True,
        "legacy": ["function", "function", "function"],
    }
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_nodejs20.x"
    assert env["NODE_PATH"] == (
        "/opt/nodejs/node20/node_modules:/opt/nodejs/node_modules:/var/runtime/node_modules:"
        "/var/runtime:/var/task"
    )
    assert env["LAMBDA_TASK_ROOT"] == "/var/task"
    assert env["LAMBDA_RUNTIME_DIR"] == "/var/runtime"
    assert env["_HANDLER"] == "index.handler"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"


def test_callback_waits_for_empty_event_loop(lambda_client: Any) -> None:
    deploy(lambda_client, "node-event-loop", {"index.js": EVENT_LOOP}, Timeout=3)
    waited = invoke(lambda_client, "node-event-loop", {"waits": True})
    assert body(waited) == {"fired": True}  # posted once the loop was empty
    at_once = invoke(lambda_client, "node-event-loop", {"waits": False})
    assert "FunctionError" not in at_once
    assert body(at_once) == {"fired": False}  # posted while the 30 s timer was pending


def test_handler_error_shape(lambda_client: Any) -> None:
    deploy(lambda_client, "node-failing", {"index.js": FAILING})
    response = invoke(lambda_client, "node-failing", {"x": 41}, LogType="Tail")
    assert response["FunctionError"] == "Unhandled"
    error = body(response)
    assert error["errorType"] == "Error"
    assert error["errorMessage"] == "boom 41"
    check_trace(error, "Error: boom 41")
    assert any("/var/task/index.js:3:" in frame for frame in error["trace"])
    line = re.search(
        rf"^{LINE}\t{request_id(response)}\tERROR\tInvoke Error \t(\{{.*\}})$", tail(response),
        re.MULTILINE,
    )  # fmt: skip
    assert line is not None
    logged = json.loads(line.group(1))
    assert (logged["errorType"], logged["errorMessage"]) == ("Error", "boom 41")
    assert logged["stack"] == error["trace"]
    again = invoke(lambda_client, "node-failing", {"x": 1}, LogType="Tail")
    assert "Init Duration" not in tail(again)  # a handled error keeps the environment


def test_error_with_a_large_message(lambda_client: Any) -> None:
    source = "exports.handler = async () => { throw new Error('m'.repeat(200000)); };\n"
    deploy(lambda_client, "node-large-error", {"index.js": source})
    error = body(invoke(lambda_client, "node-large-error", {}))
    assert (error["errorType"], error["errorMessage"]) == ("Error", "m" * 200000)


def test_callback_error_keeps_its_name(lambda_client: Any) -> None:
    deploy(lambda_client, "node-callback-error", {"index.js": CALLBACK_ERROR})
    error = body(invoke(lambda_client, "node-callback-error", {}))
    assert (error["errorType"], error["errorMessage"]) == ("ValidationError", "bad")
    check_trace(error, "ValidationError: bad")


REQUIRE_STACK = "\nRequire stack:\n- /var/runtime/index.mjs"


@pytest.mark.parametrize(
    ("name", "files", "handler", "error_type", "message"),
    [
        ("node-no-module", {"index.js": HELLO}, "missing.handler", "Runtime.ImportModuleError",
         "Error: Cannot find module 'missing'" + REQUIRE_STACK),
        ("node-no-dependency", {"index.js": "require('not-installed');\n" + HELLO},
         "index.handler", "Runtime.ImportModuleError",
         "Error: Cannot find module 'not-installed'\nRequire stack:\n- /var/task/index.js\n"
         "- /var/runtime/index.mjs"),
        ("node-no-handler", {"index.js": "exports.other = 1;\n"}, "index.handler",
         "Runtime.HandlerNotFound", "index.handler is undefined or not exported"),
        ("node-not-function", {"index.js": "exports.handler = 1;\n"}, "index.handler",
         "Runtime.HandlerNotFound", "index.handler is not a function"),
        ("node-syntax", {"index.js": "exports.handler = (event) => {\n"}, "index.handler",
         "Runtime.UserCodeSyntaxError", "SyntaxError: Unexpected end of input"),
        ("node-malformed", {"index.js": HELLO}, "index", "Runtime.MalformedHandlerName",
         "Bad handler"),
        ("node-dotdot", {"index.js": HELLO}, "../index.handler", "Runtime.MalformedHandlerName",
         "'../index.handler' is not a valid handler name. Use absolute paths when specifying "
         "root directories in handler names."),
    ],
)  # fmt: skip
def test_init_errors_like_lambda(
    lambda_client: Any, name: str, files: dict[str, str], handler: str, error_type: str,
    message: str,
) -> None:  # fmt: skip
    deploy(lambda_client, name, files, handler=handler)
    for _ in range(2):  # served on every attempt, the environment reset in between
        response = invoke(lambda_client, name, {}, LogType="Tail")
        assert response["FunctionError"] == "Unhandled"
        error = body(response)
        assert (error["errorType"], error["errorMessage"]) == (error_type, message)
        check_trace(error, f"{error_type}: {message}")
        logs = tail(response)
        assert f'\tundefined\tERROR\tUncaught Exception \t{{"errorType":"{error_type}"' in logs
        assert f"Status: error\tError Type: {error_type}" in logs


def test_console_lines_carry_request_id_and_level(lambda_client: Any) -> None:
    deploy(lambda_client, "node-logging", {"index.js": LOGGING})
    response = invoke(lambda_client, "node-logging", {}, LogType="Tail")
    rid = request_id(response)
    lines = [line for line in tail(response).split("\n") if f"\t{rid}\t" in line]
    assert [re.sub(rf"^{LINE}\t{rid}\t", "", line) for line in lines] == [
        "INFO\tto log { a: 1 }",
        "INFO\tto info",
        "WARN\tto warn",
        "ERROR\tto error",
        "DEBUG\tto debug",
        "TRACE\tto trace",
        "INFO\ttwo\rlines",
    ]
    assert body(response) is None


def test_json_log_format_and_level(lambda_client: Any) -> None:
    deploy(
        lambda_client, "node-json-logs", {"index.js": LOGGING},
        LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "WARN"},
    )  # fmt: skip
    response = invoke(lambda_client, "node-json-logs", {}, LogType="Tail")
    records = [json.loads(line) for line in tail(response).splitlines() if line.startswith("{")]
    levels = [(r["level"], r["message"]) for r in records if r.get("requestId")]
    assert levels == [("WARN", "to warn"), ("ERROR", "to error")]
    assert set(records[0]) == {"timestamp", "level", "requestId", "message"}
    assert records[0]["requestId"] == request_id(response)


def test_timeout(lambda_client: Any) -> None:
    deploy(lambda_client, "node-slow", {"index.js": SLOW}, Timeout=1)
    response = invoke(lambda_client, "node-slow", {})
    message = f"RequestId: {request_id(response)} Error: Task timed out after 1.00 seconds"
    assert body(response) == {"errorType": "Sandbox.Timedout", "errorMessage": message}


def test_response_size_limit(lambda_client: Any) -> None:
    deploy(lambda_client, "node-big", {"index.js": BIG})
    response = invoke(lambda_client, "node-big", {"big": True})
    assert response["FunctionError"] == "Unhandled"
    assert body(response) == {
        "errorMessage": "Response payload size exceeded maximum allowed payload size "
        "(6291556 bytes).",
        "errorType": "Function.ResponseSizeTooLarge",
    }
    assert body(invoke(lambda_client, "node-big", {"big": False})) == "small"


def test_uncaught_exception_fails_the_invoke_and_ends_the_runtime(lambda_client: Any) -> None:
    deploy(lambda_client, "node-uncaught", {"index.js": UNCAUGHT})
    response = invoke(lambda_client, "node-uncaught", {}, LogType="Tail")
    error = body(response)
    assert (error["errorType"], error["errorMessage"]) == ("Error", "thrown later")
    check_trace(error, "Error: thrown later")
    assert f"\t{request_id(response)}\tERROR\tUncaught Exception \t{{" in tail(response)
    after = invoke(lambda_client, "node-uncaught", {}, LogType="Tail")
    assert "Init Duration" in tail(after)  # the runtime exited (129): a new environment


def test_unhandled_rejection(lambda_client: Any) -> None:
    deploy(lambda_client, "node-rejection", {"index.js": REJECTION})
    response = invoke(lambda_client, "node-rejection", {}, LogType="Tail")
    error = body(response)
    assert error["errorType"] == "Runtime.UnhandledPromiseRejection"
    assert error["errorMessage"] == "Error: nobody waits"
    check_trace(error, "Runtime.UnhandledPromiseRejection: Error: nobody waits")
    assert "\tERROR\tUnhandled Promise Rejection \t{" in tail(response)


def test_handler_that_never_answers_gets_null(lambda_client: Any) -> None:
    deploy(lambda_client, "node-silent", {"index.js": SILENT})
    response = invoke(lambda_client, "node-silent", {})
    assert "FunctionError" not in response
    assert body(response) is None


def test_streamified_handler(lambda_client: Any) -> None:
    deploy(lambda_client, "node-streaming", {"index.js": STREAMING})
    response = invoke(lambda_client, "node-streaming", {})
    assert "FunctionError" not in response
    assert response["Body"] == b"hello node-streaming"  # the stream, buffered by Ember
    assert response["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "text/plain"
    failed = invoke(lambda_client, "node-streaming", {"fail": True}, LogType="Tail")
    assert failed["FunctionError"] == "Unhandled"
    error = body(failed)
    assert (error["errorType"], error["errorMessage"]) == ("TypeError", "stream broke")
    check_trace(error, "TypeError: stream broke")
    assert "\tERROR\tInvoke Error \t{" in tail(failed)
    again = invoke(lambda_client, "node-streaming", {}, LogType="Tail")
    assert again["Body"] == b"hello node-streaming"
    assert "Init Duration" not in tail(again)  # the environment went on after the failure


def test_a_node_module_from_a_layer(lambda_client: Any) -> None:
    """/opt/nodejs/node_modules (and the node<major> folder before it) are on NODE_PATH."""
    shared = make_zip(
        {
            "nodejs/node_modules/greeting/index.js": "exports.word = 'from the layer';\n",
            "nodejs/node_modules/shadowed/index.js": "exports.where = 'generic folder';\n",
            f"nodejs/node{NODE_RUNTIMES[RUNTIME]}/node_modules/shadowed/index.js": (
                "exports.where = 'major folder';\n"
            ),
        }
    )
    layer = lambda_client.publish_layer_version(LayerName="node-lib", Content={"ZipFile": shared})
    deploy(
        lambda_client,
        "node-layer",
        {
            "index.js": (
                "const { word } = require('greeting');\n"
                "const { where } = require('shadowed');\n"
                "exports.handler = async () => `${word}, ${where}`;\n"
            )
        },
        Layers=[layer["LayerVersionArn"]],
    )
    assert body(invoke(lambda_client, "node-layer", {})) == "from the layer, major folder"
