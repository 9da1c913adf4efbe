"""Starting an environment for a function: its sandbox spec, its runtime, its variables.

The runtime's environment follows Lambda's (lambda-spec.md §4.1): unreserved defaults,
then the function's own variables on top of those (``NODE_OPTIONS``, ``JAVA_TOOL_OPTIONS``
and the like pass through untouched), then the reserved variables, which the function
cannot override. Nothing of the server's own environment is passed on. A managed runtime
is started through ``AWS_LAMBDA_EXEC_WRAPPER`` when the function sets it.

Layers: the function's layers, merged in order, are the sandbox's ``opt_dir`` (seen at
``/opt``). Their paths as on Lambda: ``/opt/bin`` on ``PATH`` and ``/opt/lib`` on
``LD_LIBRARY_PATH`` (the defaults below), ``/opt/nodejs/node<major>/node_modules`` and
``/opt/nodejs/node_modules`` on ``NODE_PATH`` (the node runtimes' defaults:
``runtimes/catalogue.py``), and
``/opt/python`` and ``/opt/python/lib/python3.X/site-packages`` on the Python runtime's
``sys.path`` (``runtimes/python/ember_ric/bootstrap.py``; the runtime runs with ``-I``,
so ``PYTHONPATH`` would not be read).
"""

from __future__ import annotations

import base64
import secrets
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from ember.agent.protocol import StartMeta
from ember.clock import Clock
from ember.errors import InvalidRuntimeException
from ember.invocation.environment import ExecutionEnvironment
from ember.invocation.envlog import EnvironmentLog
from ember.model.arns import function_arn, runtime_version_arn
from ember.model.functions import CodeInfo, FunctionConfig, FunctionRecord
from ember.model.tags import wants_outbound_network
from ember.observe.lines import log_stream_name
from ember.observe.logs import LogWriter
from ember.runtimes import nodejs
from ember.runtimes.catalogue import Runtime, RuntimeCatalogue
from ember.sandbox.base import (
    NetworkPolicy,
    RuntimePrestart,
    Sandbox,
    SandboxBackend,
    SandboxSpec,
)
from ember.store.blobs import BlobStore

UNRESERVED_DEFAULTS = {
    "LANG": "en_US.UTF-8",
    "PATH": "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
    "LD_LIBRARY_PATH": (
        "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:"
        "/var/task:/var/task/lib:/opt/lib"
    ),
    "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
}
RESERVED_TZ = ":UTC"

# The merged /opt tree of an ordered list of layer version ARNs (None without layers).
OptDirs = Callable[[tuple[str, ...]], Awaitable[Path | None]]
# A function's current tags by name: tags belong to the function, not to one version (a
# version's record keeps the tags it was published with)
FunctionTags = Callable[[str], Mapping[str, str]]
CALIBRATION_NAME = "ember-calibration"  # the no-op function of a calibration start
CALIBRATION_MODULE = "ember_calibration"  # its handler's file in its task root (.py)
CALIBRATION_HANDLER = f"{CALIBRATION_MODULE}.handler"
CALIBRATION_SOURCE = "def handler(event, context):\n    return None\n"
ON_DEMAND = "on-demand"  # AWS_LAMBDA_INITIALIZATION_TYPE of an environment started by an invoke
PROVISIONED = "provisioned-concurrency"  # ... of one initialised ahead


def log_group(record: FunctionRecord) -> str:
    return record.config.logging.log_group or f"/aws/lambda/{record.name}"


class Launcher:
    """Starts (not yet initialised) environments. Scope: one per server."""

    def __init__(
        self,
        backend: SandboxBackend,
        blobs: BlobStore,
        catalogue: RuntimeCatalogue,
        writer: LogWriter,
        clock: Clock,
        region: str,
        account_id: str,
        opt_dirs: OptDirs | None = None,
        function_tags: FunctionTags | None = None,
        scratch: Path | None = None,  # where calibration starts' code goes (None: TMPDIR)
    ) -> None:
        self._backend = backend
        self._scratch = scratch
        self._function_tags = function_tags
        self._opt_dirs = opt_dirs
        self._blobs = blobs
        self._catalogue = catalogue
        self._writer = writer
        self._clock = clock
        self._region = region
        self._account = account_id

    def _tags(self, record: FunctionRecord) -> Mapping[str, str]:
        if self._function_tags is None:
            return record.tags
        return self._function_tags(record.name)

    def runtime(self, record: FunctionRecord) -> Runtime:
        runtime = self._catalogue.get(record.config.runtime)
        if runtime is None:
            raise InvalidRuntimeException(
                f"The runtime {record.config.runtime} is not installed on this Ember server."
            )
        return runtime

    async def launch(
        self, record: FunctionRecord, initialization_type: str = ON_DEMAND
    ) -> tuple[ExecutionEnvironment, StartMeta]:
        runtime = self.runtime(record)
        code_dir = await self._blobs.unpacked(record.code.sha256_hex)
        config = record.config
        opt_dir = None
        if config.layers and self._opt_dirs is not None:
            opt_dir = await self._opt_dirs(config.layers)
        spec = SandboxSpec(
            code_dir,
            opt_dir,
            config.memory_size,
            config.ephemeral_storage,
            network=network_policy(self._tags(record)),
            read_only_paths=runtime.host_paths(),
            interpreter=runtime.python_interpreter,
            runtime_client=runtime.client_dir,
            runtime_prestart=prestart_hint(runtime, config.memory_size, config.environment),
        )
        sandbox = await self._backend.start(spec)
        stream = log_stream_name(record.version, self._clock.wall())
        log = EnvironmentLog(self._writer, log_group(record), stream)
        environment = ExecutionEnvironment(sandbox, self._clock, log)
        env = self.runtime_environment(record, runtime, sandbox, log, initialization_type)
        argv = runtime.argv(
            sandbox.task_root, sandbox.opt_root, sandbox.runtime_dir, config.memory_size
        )
        start = StartMeta(
            argv=with_exec_wrapper(argv, env, runtime),
            cwd=sandbox.task_root,
            env=env,
            runtime_api=sandbox.runtime_api_bind,
            account_id=self._account,
        )
        if spec.opt_dir is not None:  # layers: external extensions come in /opt/extensions
            start["extensions_dir"] = f"{sandbox.opt_root}/extensions"
        return environment, start

    async def anticipate(self, record: FunctionRecord) -> None:
        """Have the backend ready to start ``record``'s runtime fast, before its first
        invoke (``SandboxBackend.anticipate``): its calibration start runs a no-op handler
        under the function's runtime, never the function's code or variables."""
        runtime = self._catalogue.get(record.config.runtime)
        if runtime is None or runtime.python_interpreter is None:
            return  # only Python runtimes start by fork from a zygote
        calibrating = FunctionRecord(
            name=CALIBRATION_NAME,
            config=FunctionConfig(runtime.identifier, CALIBRATION_HANDLER, role=""),
            code=CodeInfo("", "", 0),
            revision_id="",
            last_modified=0.0,
        )
        with tempfile.TemporaryDirectory(prefix="calibration-", dir=self._scratch) as tmp:
            code = write_calibration_code(Path(tmp))
            spec = SandboxSpec(
                code,
                None,
                calibrating.config.memory_size,
                calibrating.config.ephemeral_storage,
                read_only_paths=runtime.host_paths(),
                interpreter=runtime.python_interpreter,
                runtime_client=runtime.client_dir,
            )
            await self._backend.anticipate(
                spec, lambda sandbox: self._calibration_start(calibrating, runtime, sandbox)
            )

    def _calibration_start(
        self, record: FunctionRecord, runtime: Runtime, sandbox: Sandbox
    ) -> StartMeta:
        # its log group and stream are only names in the variables: nothing is written
        log = EnvironmentLog(self._writer, log_group(record), CALIBRATION_NAME)
        env = self.runtime_environment(record, runtime, sandbox, log)
        argv = runtime.argv(sandbox.task_root, sandbox.opt_root, sandbox.runtime_dir)
        return StartMeta(
            argv=argv,
            cwd=sandbox.task_root,
            env=env,
            runtime_api=sandbox.runtime_api_bind,
            account_id=self._account,
        )

    def runtime_environment(
        self,
        record: FunctionRecord,
        runtime: Runtime,
        sandbox: Sandbox,
        log: EnvironmentLog,
        initialization_type: str = ON_DEMAND,
    ) -> dict[str, str]:
        config = record.config
        env = dict(UNRESERVED_DEFAULTS)
        env.update(runtime.unreserved_env(sandbox.task_root, sandbox.opt_root, sandbox.runtime_dir))
        env.update(config.environment)
        key_id, secret = _execution_credentials()
        env.update(
            {
                "_HANDLER": config.handler,
                "AWS_REGION": self._region,
                "AWS_DEFAULT_REGION": self._region,
                "AWS_LAMBDA_FUNCTION_NAME": record.name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_size),
                "AWS_LAMBDA_FUNCTION_VERSION": record.version,
                "AWS_LAMBDA_INITIALIZATION_TYPE": initialization_type,
                "AWS_LAMBDA_LOG_GROUP_NAME": log.group,
                "AWS_LAMBDA_LOG_STREAM_NAME": log.stream,
                "AWS_ACCESS_KEY_ID": key_id,
                "AWS_SECRET_ACCESS_KEY": secret,
                "AWS_EC2_METADATA_DISABLED": "true",
                "LAMBDA_TASK_ROOT": sandbox.task_root,
                "LAMBDA_RUNTIME_DIR": "/var/runtime",
                "TZ": RESERVED_TZ,
            }
        )
        if runtime.execution_env:
            env["AWS_EXECUTION_ENV"] = runtime.execution_env
        if config.logging.log_format == "JSON":
            env["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
            if config.logging.application_log_level:
                env["AWS_LAMBDA_LOG_LEVEL"] = config.logging.application_log_level
        return env

    def function_arn(self, name: str, qualifier: str | None = None) -> str:
        return function_arn(self._region, self._account, name, qualifier)

    def runtime_version_arn(self, runtime: Runtime) -> str:
        return runtime_version_arn(self._region, runtime.identifier)


def write_calibration_code(directory: Path) -> Path:
    """The no-op handler of a calibration start, readable by the sandbox's user."""
    directory.chmod(0o755)
    handler = directory / f"{CALIBRATION_MODULE}.py"
    handler.write_text(CALIBRATION_SOURCE)
    handler.chmod(0o644)
    return directory


def network_policy(tags: Mapping[str, str]) -> NetworkPolicy:
    """The function's ``ember:network`` tag (model/tags.py) as the sandbox's policy."""
    if wants_outbound_network(tags):
        return NetworkPolicy.OUTBOUND
    return NetworkPolicy.NONE


def prestart_hint(
    runtime: Runtime, memory_mb: int, environment: Mapping[str, str]
) -> RuntimePrestart | None:
    """What a backend may start ahead for this function (node slots): a Node.js runtime
    whose startup variables are the defaults, i.e. the function sets none of them
    (``NODE_OPTIONS``, ``AWS_LAMBDA_EXEC_WRAPPER``, ...: it always starts afresh)."""
    if runtime.family != "nodejs" or runtime.interpreter is None:
        return None
    if any(key in environment for key in nodejs.STARTUP_VARIABLES):
        return None

    def hint(task_root: str, opt_root: str, runtime_dir: str) -> tuple[list[str], dict[str, str]]:
        env = {**UNRESERVED_DEFAULTS, **runtime.unreserved_env(task_root, opt_root, runtime_dir)}
        env["TZ"] = RESERVED_TZ
        argv = runtime.argv(task_root, opt_root, runtime_dir, memory_mb)
        return argv, nodejs.prestart_env(env)

    return hint


def with_exec_wrapper(argv: list[str], env: dict[str, str], runtime: Runtime) -> list[str]:
    """``AWS_LAMBDA_EXEC_WRAPPER``: a managed runtime is started as ``<wrapper> <argv…>``
    (lambda-spec §4.1); custom runtimes (``provided.*``) ignore it, as on Lambda."""
    wrapper = env.get("AWS_LAMBDA_EXEC_WRAPPER")
    if not wrapper or runtime.execution_env is None:
        return argv
    return [wrapper, *argv]


def _execution_credentials() -> tuple[str, str]:
    """Per-environment placeholder role credentials: never the admin's."""
    key_id = "ASIA" + base64.b32encode(secrets.token_bytes(10)).decode()  # 16 of A-Z2-7
    return key_id, secrets.token_urlsafe(30)
