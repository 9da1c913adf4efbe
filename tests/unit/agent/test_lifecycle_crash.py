"""After an extension failed mid-invoke, the runtime's late answer is not passed on."""

from __future__ import annotations

import asyncio
from typing import Any

from ember.agent.lifecycle import Lifecycle
from ember.agent.protocol import Kind


class RecordingHost:
    def __init__(self) -> None:
        self.frames: list[Kind] = []

    def send(self, kind: Kind, meta: dict[str, Any], payload: bytes = b"") -> None:
        self.frames.append(kind)

    def report(self, kind: Kind, meta: dict[str, Any], payload: bytes = b"") -> None:
        self.frames.append(kind)

    def log(self, stream: str, data: bytes) -> None:
        pass


async def test_a_crash_wins_over_the_runtime_answer_that_arrives_after_it() -> None:
    host = RecordingHost()
    lifecycle = Lifecycle(host, {"AWS_LAMBDA_FUNCTION_NAME": "fn"}, "123456789012",
                          asyncio.get_running_loop())  # fmt: skip
    lifecycle.report(Kind.RESPONSE, {"id": "r1"}, b"{}")
    assert host.frames == [Kind.RESPONSE]
    lifecycle._crash("Extension.ExitError", "probe: Probe.Broken")
    lifecycle.report(Kind.RESPONSE, {"id": "r2"}, b"{}")
    lifecycle.report(Kind.ERROR, {"id": "r2", "error_type": "X"}, b"{}")
    lifecycle.report(Kind.NEXT, {}, b"")
    assert host.frames == [Kind.RESPONSE]  # the EXIT naming the extension ends the invoke
    assert lifecycle.crashed.done()
