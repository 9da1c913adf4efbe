"""The agent end to end: start, warm invokes, output ordering, exits, shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from ember.agent.launch import agent_argv
from ember.agent.protocol import Kind
from tests.unit.agent.agent_harness import (
    TIMEOUT_S,
    AgentSession,
    StartAgent,
    ember_python_argv,
    json_payload,
    lambda_env,
    write_task,
)


async def wait_gone(pidfd: int) -> None:
    """Wait (no polling) until the process behind ``pidfd`` has terminated."""
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:
        if not gone.done():
            gone.set_result(None)

    loop.add_reader(pidfd, on_exit)
    try:
        await asyncio.wait_for(gone, TIMEOUT_S)
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


def test_agent_argv_runs_isolated_with_the_source_root_and_channel() -> None:
    argv = agent_argv("/usr/bin/python3.11", 7)
    assert argv[:4] == ["/usr/bin/python3.11", "-I", "-S", "-c"]
    src_root = Path(argv[5])
    assert (src_root / "ember" / "agent" / "main.py").is_file()
    assert argv[6:] == ["--channel-fd", "7"]


async def test_init_code_runs_once_and_the_runtime_serves_many_invokes(
    task_root: Path, start_agent: StartAgent
) -> None:
    write_task(
        task_root,
        {
            "app.py": """
                print("init code")
                seen = []

                def handler(event, context):
                    seen.append(event["n"])
                    return {"seen": seen}
            """
        },
    )
    session = await start_agent(ember_python_argv(), task_root, lambda_env(task_root))
    init = await session.expect(Kind.INIT_DONE)
    assert init.meta["init_ms"] > 0
    for n in (1, 2, 3):
        session.invoke(f"req-{n}", json.dumps({"n": n}).encode())
        response = await session.expect(Kind.RESPONSE)
        assert response.meta["id"] == f"req-{n}"
        assert response.meta["content_type"] == "application/json"
        assert response.meta["memory_peak_kb"] > 1000
    assert json_payload(response) == {"seen": [1, 2, 3]}
    assert session.output().count(b"init code\n") == 1


async def test_all_output_written_before_a_response_is_sent_before_it(
    task_root: Path, start_agent: StartAgent
) -> None:
    write_task(
        task_root,
        {
            "app.py": """
                import os, sys

                print("booting")

                def handler(event, context):
                    for i in range(3000):
                        print(f"line {i}")
                    sys.stderr.write("to stderr\\n")
                    sys.stdout.write("partial line, no newline")
                    os.write(1, b" + raw fd bytes")
                    return "done"
            """
        },
    )
    session = await start_agent(ember_python_argv(), task_root, lambda_env(task_root))
    await session.expect(Kind.INIT_DONE)
    init_index = len(session.frames) - 1
    assert session.output() == b"booting\n", "output before /next precedes INIT_DONE"
    session.invoke("req-1")
    await session.expect(Kind.RESPONSE)
    before_response = session.frames[init_index:-1]
    stdout = b"".join(f.payload for f in before_response if f.meta.get("stream") == "stdout")
    stderr = b"".join(f.payload for f in before_response if f.meta.get("stream") == "stderr")
    lines = "".join(f"line {i}\n" for i in range(3000)).encode()
    assert stdout == lines + b"partial line, no newline + raw fd bytes"
    assert stderr == b"to stderr\n"


async def test_whole_lines_are_sent_together(task_root: Path, start_agent: StartAgent) -> None:
    write_task(
        task_root,
        {
            "app.py": """
                import sys

                def handler(event, context):
                    sys.stdout.write("first half ")
                    sys.stdout.write("second half\\nnext line\\n")
                    return None
            """
        },
    )
    session = await start_agent(ember_python_argv(), task_root, lambda_env(task_root))
    await session.expect(Kind.INIT_DONE)
    session.invoke("req-1")
    await session.expect(Kind.RESPONSE)
    logs = [f.payload for f in session.frames_of(Kind.LOG)]
    assert b"".join(logs) == b"first half second half\nnext line\n"
    assert all(payload.endswith(b"\n") for payload in logs)


async def test_runtime_exit_mid_invoke_is_reported_after_its_output(
    task_root: Path, start_agent: StartAgent
) -> None:
    write_task(
        task_root,
        {
            "app.py": """
                import os

                def handler(event, context):
                    print("about to exit")
                    os._exit(3)
            """
        },
    )
    session = await start_agent(ember_python_argv(), task_root, lambda_env(task_root))
    await session.expect(Kind.INIT_DONE)
    session.invoke("req-1")
    ended = await session.expect(Kind.EXIT)
    assert ended.meta == {"status": 3, "signal": None}
    assert session.output() == b"about to exit\n"
    assert await session.next_frame() is None
    assert await session.wait_exit() == 0


async def test_runtime_killed_by_a_signal(task_root: Path, start_agent: StartAgent) -> None:
    write_task(
        task_root,
        {
            "app.py": """
                import os, signal

                def handler(event, context):
                    os.kill(os.getpid(), signal.SIGKILL)
            """
        },
    )
    session = await start_agent(ember_python_argv(), task_root, lambda_env(task_root))
    await session.expect(Kind.INIT_DONE)
    session.invoke("req-1")
    ended = await session.expect(Kind.EXIT)
    assert ended.meta == {"status": None, "signal": signal.SIGKILL}


async def test_closing_the_channel_kills_the_runtime_and_its_children(
    task_root: Path, start_agent: StartAgent
) -> None:
    pids = task_root / "pids.json"
    write_task(
        task_root,
        {
            "app.py": f"""
                import json, os, subprocess

                child = subprocess.Popen(["sleep", "600"])
                with open({str(pids)!r}, "w") as f:
                    json.dump([os.getpid(), child.pid], f)

                def handler(event, context):
                    return None
            """
        },
    )
    session = await start_agent(ember_python_argv(), task_root, lambda_env(task_root))
    await session.expect(Kind.INIT_DONE)
    pidfds = [os.pidfd_open(pid) for pid in json.loads(pids.read_text())]
    await session.close()
    assert session.process.returncode == 0
    for pidfd in pidfds:
        await wait_gone(pidfd)


async def test_an_unexpected_frame_kills_the_runtime_and_fails_the_agent(
    task_root: Path, start_agent: StartAgent
) -> None:
    write_task(task_root, {"app.py": "def handler(event, context):\n    return 1\n"})
    session = await start_agent(ember_python_argv(), task_root, lambda_env(task_root))
    await session.expect(Kind.INIT_DONE)
    session.send(Kind.RESPONSE, {"id": "x"})
    assert await session.wait_exit() == 1
    assert await session.next_frame() is None


async def test_a_second_invoke_before_the_first_is_answered_is_invalid(
    task_root: Path, start_agent: StartAgent
) -> None:
    write_task(task_root, {"app.py": "import time\ndef handler(e, c):\n    time.sleep(600)\n"})
    session = await start_agent(ember_python_argv(), task_root, lambda_env(task_root))
    await session.expect(Kind.INIT_DONE)
    session.invoke("req-1")
    session.invoke("req-2")
    assert await session.wait_exit() == 1


async def test_sigterm_to_the_agent_kills_the_runtime(
    task_root: Path, start_agent: StartAgent
) -> None:
    pid_file = task_root / "pid"
    source = f"import os\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
    write_task(task_root, {"app.py": source + "def handler(e, c):\n    return 1\n"})
    session = await start_agent(ember_python_argv(), task_root, lambda_env(task_root))
    await session.expect(Kind.INIT_DONE)
    pidfd = os.pidfd_open(int(pid_file.read_text()))
    session.process.send_signal(signal.SIGTERM)
    assert await session.wait_exit() == 0
    await wait_gone(pidfd)


async def test_channel_closed_before_start_is_a_clean_exit() -> None:
    session = await AgentSession.spawn()
    session.writer.close()
    assert await session.wait_exit() == 0


async def test_missing_entrypoint_is_an_init_error(
    task_root: Path, start_agent: StartAgent
) -> None:
    missing = task_root / "bootstrap"
    session = await start_agent([str(missing)], task_root, lambda_env(task_root))
    failure = await session.expect(Kind.INIT_ERROR)
    assert failure.meta["error_type"] == "Runtime.InvalidEntrypoint"
    assert json_payload(failure) == {
        "errorType": "Runtime.InvalidEntrypoint",
        "errorMessage": f"Error: fork/exec {missing}: no such file or directory",
    }
    ended = await session.expect(Kind.EXIT)
    assert ended.meta == {"status": None, "signal": None}
    assert await session.wait_exit() == 0


async def test_non_executable_entrypoint_is_an_init_error(
    task_root: Path, start_agent: StartAgent
) -> None:
    bootstrap = write_task(task_root, {"bootstrap": "#!/bin/sh\n"}) / "bootstrap"
    bootstrap.chmod(0o644)
    session = await start_agent([str(bootstrap)], task_root, lambda_env(task_root))
    failure = await session.expect(Kind.INIT_ERROR)
    assert failure.meta["error_type"] == "Runtime.InvalidEntrypoint"
    assert json_payload(failure)["errorMessage"].endswith(f"{bootstrap}: permission denied")


async def test_missing_working_directory_is_an_init_error(
    task_root: Path, start_agent: StartAgent
) -> None:
    nowhere = task_root / "nowhere"
    session = await start_agent([sys.executable, "-c", "pass"], nowhere, lambda_env(task_root))
    failure = await session.expect(Kind.INIT_ERROR)
    assert failure.meta["error_type"] == "Runtime.InvalidWorkingDir"
    assert json_payload(failure)["errorMessage"] == (
        f"Error: chdir {nowhere}: no such file or directory"
    )
