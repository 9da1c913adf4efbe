"""What an extension subscribed to INVOKE costs an invoke, measured on the agent alone.

Run by hand (never in the test suite):

    .venv/bin/python bench/extension_overhead.py [--invokes 2000]

Drives a real agent over its channel (as the host does, no server, no sandbox) with the
Ember Python runtime and an echo handler, once without extensions and once with one
external extension (a stdlib Python script that registers for INVOKE and loops on
``/event/next`` with a new HTTP connection per call). Prints the init time and the
medians of INVOKE → RESPONSE (what the caller waits for) and INVOKE → NEXT (when the
environment can take the next invoke). No network: everything is on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.unit.agent.agent_harness import (  # noqa: E402
    AgentSession,
    ember_python_argv,
    lambda_env,
    write_task,
)
from tests.unit.agent.extension_scripts import write_extension  # noqa: E402

from ember.agent.protocol import Kind  # noqa: E402 - after the path set-up


async def measure(with_extension: bool, invokes: int) -> str:
    base = Path(tempfile.mkdtemp())
    root = base / "task"
    root.mkdir()
    write_task(root, {"app.py": "def handler(e, c):\n    return e\n"})
    extra: dict[str, str] = {}
    if with_extension:
        write_extension(base / "opt" / "extensions", "ext", events=("INVOKE",))
        extra["extensions_dir"] = str(base / "opt" / "extensions")
    started = time.perf_counter()
    session = await AgentSession.start(ember_python_argv(), root, lambda_env(root), **extra)
    await session.expect(Kind.INIT_DONE)
    init_ms = (time.perf_counter() - started) * 1000
    answered, reusable = [], []
    for n in range(invokes):
        sent = time.perf_counter()
        session.invoke(f"req-{n}", b'{"a": 1}')
        await session.expect(Kind.RESPONSE)
        answered.append((time.perf_counter() - sent) * 1e6)
        await session.expect(Kind.NEXT)
        reusable.append((time.perf_counter() - sent) * 1e6)
        session.frames.clear()
    await session.close()
    skip = invokes // 10  # warm-up
    label = "one INVOKE extension" if with_extension else "no extension"
    return (
        f"{label:22} init {init_ms:7.1f} ms   response median "
        f"{statistics.median(answered[skip:]):6.0f} us   reusable median "
        f"{statistics.median(reusable[skip:]):6.0f} us"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invokes", type=int, default=2000)
    args = parser.parse_args()
    for with_extension in (False, True):
        print(await measure(with_extension, args.invokes))


if __name__ == "__main__":
    asyncio.run(main())
