"""The agent's fork mode: a preloaded runtime client started by ``os.fork``, not exec.

The agent runs here as a zygote's child would run it (``-I -S -u``, the runtime client
imported, ``enable_fork``), without namespaces: what is checked is that a forked runtime
is indistinguishable, from the function's side, from an exec'ed one.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ember.agent.launch import source_root
from ember.agent.protocol import Kind
from ember.agent.runtime import ENVIRON_AREA_VAR, ForkableRuntime
from ember.runtimes.python import RUNTIME_DIR, runtime_argv
from tests.unit.agent.agent_harness import AgentSession, json_payload, lambda_env, write_task

# An agent as a zygote's child runs it; the marker shows in the forked runtime's cmdline.
FORK_AGENT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "import asyncio; from ember.agent import main, runtime; "
    "from ember.runtimes.python import bootstrap; "
    "client = bootstrap.preload(); "
    "forkable = runtime.ForkableRuntime("
    "argv=(sys.executable, '-I', '-S', '-u', sys.argv[2] + '/bootstrap.py'), "
    "sys_path=(*sys.path[1:-1], sys.argv[2]), entry=client.main); "
    "import __main__; "
    "warm = lambda fd: setattr(__main__, 'FROM_TEMPLATE', True); "
    "template = runtime.fork_template(forkable, warm, lambda m: None) "
    "if sys.argv[4] == 'template' else None; "
    "template and template.send(b'hardening'); "
    "runtime.enable_fork(forkable, template); "
    "sys.exit(asyncio.run(main.Agent(int(sys.argv[3])).run()))  # ember-fork-mode-agent"
)

PROBE = """
    import json, os, random, sys

    def read(path):
        try:
            with open(path, "rb") as handle:
                return handle.read().decode(errors="replace")
        except OSError as exc:
            return repr(exc)

    def handler(event, context):
        return {
            "pid": os.getpid(),
            "sid": os.getsid(0),
            "argv": sys.argv,
            "flags": [sys.flags.isolated, sys.flags.no_site, sys.__stdout__.write_through],
            "cwd": os.getcwd(),
            "env": dict(os.environ),
            "proc_environ": read("/proc/self/environ"),
            "cmdline": read("/proc/self/cmdline"),
            "path": sys.path,
            "random": random.random(),
            "from_template": getattr(__import__("__main__"), "FROM_TEMPLATE", False),
        }
"""

ForkAgent = Callable[[list[str], Path, dict[str, str]], Awaitable[AgentSession]]


@pytest.fixture(params=["fork", "template"])
async def fork_agent(request: pytest.FixtureRequest) -> AsyncIterator[ForkAgent]:
    """An agent in fork mode: forking at START, or with a runtime forked ahead."""
    sessions: list[AgentSession] = []

    async def start(argv: list[str], cwd: Path, env: dict[str, str]) -> AgentSession:
        parent, child = socket.socketpair()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-S", "-u", "-c", FORK_AGENT,
            str(source_root()), RUNTIME_DIR, str(child.fileno()), request.param,
            pass_fds=(child.fileno(),), env={ENVIRON_AREA_VAR: "x" * 32768},
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        session = AgentSession(process, reader, writer)
        sessions.append(session)
        session.send(
            Kind.START,
            {"argv": argv, "cwd": str(cwd), "env": env, "runtime_api": "127.0.0.1:0"},
        )
        await session.expect(Kind.LISTENING)
        return session

    yield start
    for session in sessions:
        await session.close()


async def probe(session: AgentSession) -> Any:
    await session.expect(Kind.INIT_DONE)
    session.invoke("req-1")
    return json_payload(await session.expect(Kind.RESPONSE))


async def test_a_matching_runtime_is_forked_and_looks_exec_ed(
    task_root: Path, fork_agent: ForkAgent, request: pytest.FixtureRequest
) -> None:
    write_task(task_root, {"app.py": PROBE})
    env = lambda_env(task_root, MARK="forked")
    session = await fork_agent(runtime_argv(sys.executable), task_root, env)
    seen = await probe(session)
    assert "ember-fork-mode-agent" in seen["cmdline"], "started by fork from the agent"
    assert seen["argv"] == [f"{RUNTIME_DIR}/bootstrap.py"]
    assert seen["flags"] == [1, 1, True]
    assert seen["sid"] == seen["pid"], "in a session (and process group) of its own"
    assert seen["cwd"] == str(task_root)
    assert seen["env"]["MARK"] == "forked"
    assert ENVIRON_AREA_VAR not in seen["env"]
    assert set(seen["env"]) == {*env, "AWS_LAMBDA_RUNTIME_API"}
    assert "MARK=forked" in seen["proc_environ"].split("\0")
    assert ENVIRON_AREA_VAR not in seen["proc_environ"]
    assert seen["path"][0] == str(task_root)
    assert str(source_root()) not in seen["path"], "the agent's own path is not the runtime's"
    assert seen["from_template"] is (request.node.callspec.params["fork_agent"] == "template")


async def test_two_forked_runtimes_draw_different_random_numbers(
    task_root: Path, fork_agent: ForkAgent
) -> None:
    write_task(task_root, {"app.py": PROBE})
    env = lambda_env(task_root)
    first = await probe(await fork_agent(runtime_argv(sys.executable), task_root, env))
    second = await probe(await fork_agent(runtime_argv(sys.executable), task_root, env))
    assert first["random"] != second["random"]


async def test_other_commands_are_still_exec_ed(task_root: Path, fork_agent: ForkAgent) -> None:
    write_task(task_root, {"app.py": PROBE})
    argv = [sys.executable, "-I", "-S", f"{RUNTIME_DIR}/bootstrap.py"]  # no -u: not the zygote's
    seen = await probe(await fork_agent(argv, task_root, lambda_env(task_root)))
    assert "ember-fork-mode-agent" not in seen["cmdline"]
    assert "bootstrap.py" in seen["cmdline"]


async def test_a_forked_runtime_s_init_error_and_exit_are_reported(
    task_root: Path, fork_agent: ForkAgent
) -> None:
    write_task(task_root, {"app.py": "raise ValueError('broken at import')\n"})
    session = await fork_agent(runtime_argv(sys.executable), task_root, lambda_env(task_root))
    error = await session.expect(Kind.INIT_ERROR)
    assert json.loads(error.payload)["errorType"] == "ValueError"
    ended = await session.expect(Kind.EXIT)
    assert ended.meta == {"status": 1, "signal": None}


async def test_a_missing_working_directory_is_an_init_error_in_fork_mode(
    tmp_path: Path, fork_agent: ForkAgent
) -> None:
    missing = tmp_path / "missing"
    session = await fork_agent(runtime_argv(sys.executable), missing, {})
    error = await session.expect(Kind.INIT_ERROR)
    assert error.meta["error_type"] == "Runtime.InvalidWorkingDir"


def test_forkable_runtime_matches_only_its_own_command() -> None:
    runtime = ForkableRuntime(
        argv=("/usr/bin/python3.11", "-I", "-S", "-u", "/var/runtime/bootstrap.py"),
        sys_path=(),
        entry=lambda: None,
    )
    base = ["/usr/bin/python3.11", "-I", "-S", "-u", "/var/runtime/bootstrap.py"]
    assert runtime.matches(base)
    assert runtime.matches([*base, "app.handler"])
    assert not runtime.matches([*base, "a", "b"])
    assert not runtime.matches(["/usr/bin/python3.12", *base[1:]])
    assert not runtime.matches([*base[:3], "/var/runtime/bootstrap.py"])
    assert not runtime.matches(["/var/task/bootstrap"])
