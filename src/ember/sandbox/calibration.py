"""A calibration start: one start and one invoke of a no-op handler, driven over the channel.

A zygote's pooled sandboxes pre-fault the pages a start writes (``working_set.py``), and
those are known only once a start has run. Waiting for the first real start leaves the
first burst of a new server with an unprepared pool, so the backend runs this ahead, when
a function of the zygote's runtime is created or found at start-up: the runtime, the
agent and the Runtime API go through a start and an invoke exactly as for a function,
then the backend reads the pages and stops the sandbox. Nothing of it reaches a log
group, a metric or a function's environments: its frames are read here and dropped.

Scope: the host's side of one such start, for any backend's sandbox; the no-op handler
and the start's command and variables come from the caller (``invocation/launch.py``).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from ember.agent.protocol import Frame, Kind, ProtocolError, StartMeta, encode, read_frame
from ember.sandbox.base import Sandbox

TIMEOUT_S = 60.0  # the whole start and invoke (a machine busy with other starts is slow)
ANSWER_WINDOW_MS = 60_000  # the invoke's deadline, from now
FAILED = (Kind.INIT_ERROR, Kind.ERROR, Kind.EXIT)


class CalibrationFailed(Exception):
    """The calibration start did not get through (its sandbox is unusable for recording)."""


async def exercise(sandbox: Sandbox, start: StartMeta) -> None:
    """START, then one INVOKE of the no-op handler, until the runtime is back on ``/next``
    (by then the start has written what a start writes), within ``TIMEOUT_S``. Raises
    ``CalibrationFailed``."""
    try:
        async with asyncio.timeout(TIMEOUT_S):
            await _exercise(sandbox, start)
    except TimeoutError as exc:
        raise CalibrationFailed(f"no answer within {TIMEOUT_S:.0f} s") from exc
    except ProtocolError as exc:
        raise CalibrationFailed(f"a broken frame: {exc}") from exc


async def _exercise(sandbox: Sandbox, start: StartMeta) -> None:
    sandbox.writer.writelines(encode(Kind.START, dict(start)))
    await _until(sandbox, Kind.INIT_DONE)
    meta = {
        "id": str(uuid.uuid4()),
        "deadline_ms": int(time.time() * 1000) + ANSWER_WINDOW_MS,
        "arn": "arn:aws:lambda:::function:ember-calibration",
    }
    sandbox.writer.writelines(encode(Kind.INVOKE, meta, b"{}"))
    await _until(sandbox, Kind.RESPONSE)
    await _until(sandbox, Kind.NEXT)


async def _until(sandbox: Sandbox, kind: Kind) -> Frame:
    """The next frame of ``kind``; others (logs, LISTENING, NEXT) are dropped."""
    while True:
        frame = await read_frame(sandbox.reader)
        if frame is None:
            raise CalibrationFailed(f"the sandbox closed its channel before {kind.name}")
        if frame.kind is kind:
            return frame
        if frame.kind in FAILED:
            detail = json.dumps(frame.meta)[:300]
            raise CalibrationFailed(f"{frame.kind.name} instead of {kind.name}: {detail}")
