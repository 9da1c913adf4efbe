"""Handler loading and the invoke loop (awslambdaric ``bootstrap.py``)."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from . import logs
from .client import RuntimeApiClient
from .context import Invocation, LambdaContext
from .errors import FaultException
from .logs import LAMBDA_WARNING, UNHANDLED_EXCEPTION_WARNING, StandardLogSink, log_error
from .marshal import marshal_response, to_json, unmarshal_request


def get_handler(handler: str) -> Callable[[Any, LambdaContext], Any]:
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as exc:
        raise FaultException(
            FaultException.MALFORMED_HANDLER_NAME, f"Bad handler '{handler}': {exc}"
        ) from None
    try:
        if modname.split(".")[0] in sys.builtin_module_names:
            raise FaultException(
                FaultException.BUILT_IN_MODULE_CONFLICT,
                f"Cannot use built-in module {modname} as a handler module",
            )
        module = importlib.import_module(modname.replace("/", "."))
    except ImportError as exc:
        raise FaultException(
            FaultException.IMPORT_MODULE_ERROR, f"Unable to import module '{modname}': {exc}"
        ) from None
    except SyntaxError as exc:
        trace = [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}']
        raise FaultException(
            FaultException.USER_CODE_SYNTAX_ERROR,
            f"Syntax error in module '{modname}': {exc}",
            trace,
        ) from None
    try:
        handler_function: Callable[[Any, LambdaContext], Any] = getattr(module, fname)
    except AttributeError:
        raise FaultException(
            FaultException.HANDLER_NOT_FOUND, f"Handler '{fname}' missing on module '{modname}'"
        ) from None
    return handler_function


def make_error(
    error_message: str | None,
    error_type: str | None,
    stack_trace: list[str] | None,
    invoke_id: str | None = None,
) -> dict[str, Any]:
    return {
        "errorMessage": error_message or "",
        "errorType": error_type or "",
        "requestId": invoke_id if invoke_id is not None else "",
        "stackTrace": stack_trace or [],
    }


TracebackTuple = tuple[str, Any, str, Any]  # filename, lineno, name, line


def user_frames(tb: Any) -> list[TracebackTuple]:
    """Traceback frames, without the leading ones that belong to this bootstrap."""
    frames = [(f.filename, f.lineno, f.name, f.line) for f in traceback.extract_tb(tb)]
    for index, frame in enumerate(frames):
        if "/bootstrap.py" not in frame[0]:
            return frames[index:]
    return frames


def make_xray_fault(
    ex_type: str, ex_msg: str, working_dir: str, frames: list[TracebackTuple]
) -> dict[str, Any]:
    stack = [{"label": name, "path": path, "line": line} for path, line, name, _ in frames]
    return {
        "working_directory": working_dir,
        "exceptions": [{"message": ex_msg, "type": ex_type, "stack": stack}],
        "paths": list({path for path, *_ in frames}),
    }


def build_fault_result(exc: BaseException) -> dict[str, Any]:
    frames = user_frames(exc.__traceback__)
    return make_error(str(exc), type(exc).__name__, traceback.format_list(frames))


def handle_event_request(
    client: RuntimeApiClient,
    request_handler: Callable[[Any, LambdaContext], Any],
    invocation: Invocation,
    log_sink: StandardLogSink,
) -> None:
    invoke_id = invocation.invoke_id
    try:
        context = invocation.context()
        event = unmarshal_request(invocation.body, invocation.content_type)
        result, content_type = marshal_response(request_handler(event, context))
    except FaultException as exc:
        xray_fault = make_xray_fault("LambdaValidationError", exc.msg, _working_dir(), [])
        error_result = make_error(exc.msg, exc.exception_type, exc.trace, invoke_id)
    except Exception as exc:  # noqa: BLE001 - any handler failure is reported to the host
        frames = user_frames(exc.__traceback__)
        xray_fault = make_xray_fault(type(exc).__name__, str(exc), _working_dir(), frames)
        error_result = make_error(
            str(exc), type(exc).__name__, traceback.format_list(frames), invoke_id
        )
    else:
        client.post_response(invoke_id, result, content_type)
        return
    log_error(error_result, log_sink)
    client.post_error(invoke_id, to_json(error_result).encode("utf-8"), to_json(xray_fault))


def _working_dir() -> str:
    return os.getcwd()  # noqa: PTH109 - pathlib stays out of the runtime's start


def update_xray_env_variable(trace_id: str | None) -> None:
    if trace_id is not None:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)


def set_up_sys_path() -> None:
    """Task root, then the layers' ``/opt/python`` directories, before everything else."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or _working_dir()
    front = [task_root, "/opt/python", f"/opt/python/lib/{version}/site-packages"]
    sys.path[:0] = [entry for entry in front if entry not in sys.path]


def log_preview_runtime_warning() -> None:
    if os.environ.get("LAMBDA_DISABLE_PREVIEW_WARN", ""):
        return
    if os.environ.get("AWS_EXECUTION_ENV", "") == "AWS_Lambda_python3.15":
        region = os.environ.get("AWS_REGION", "")
        domain = "docs.amazonaws.cn" if region.startswith("cn-") else "docs.aws.amazon.com"
        logging.warning(
            f"{LAMBDA_WARNING}: This is a preview runtime version and should not be used for "
            "production workloads. For further information and to provide feedback, see "
            f"https://{domain}/lambda/latest/dg/lambda-runtimes.html\r"
        )


def load_handler(handler: str, client: RuntimeApiClient, log_sink: StandardLogSink) -> Any:
    """The handler function; on failure report the init error and exit(1)."""
    try:
        log_preview_runtime_warning()
        return get_handler(handler)
    except FaultException as exc:
        error_result = make_error(exc.msg, exc.exception_type, exc.trace)
    except Exception as exc:  # noqa: BLE001 - any import-time failure is an init error
        error_result = build_fault_result(exc)
    logging.warning(UNHANDLED_EXCEPTION_WARNING)
    log_error(error_result, log_sink)
    client.post_init_error(to_json(error_result).encode("utf-8"), error_result["errorType"])
    sys.exit(1)


def run(handler: str, client: RuntimeApiClient) -> None:
    """Load the handler, then serve invocations forever (awslambdaric's ``run``)."""
    sys.stdout = logs.Unbuffered(sys.stdout)
    sys.stderr = logs.Unbuffered(sys.stderr)
    log_sink = StandardLogSink()
    logs.setup_logging(log_sink)
    request_handler = load_handler(handler, client, log_sink)
    while True:
        body, headers = client.next_invocation()
        invocation = Invocation(body, headers)
        logs.set_invocation(invocation.invoke_id, invocation.tenant_id)
        update_xray_env_variable(invocation.trace_id)
        handle_event_request(client, request_handler, invocation, log_sink)


def main() -> None:
    """Entry point: handler from ``argv[1]`` or ``_HANDLER``."""
    set_up_sys_path()
    handler = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("_HANDLER", "")
    run(handler, RuntimeApiClient(os.environ["AWS_LAMBDA_RUNTIME_API"]))
