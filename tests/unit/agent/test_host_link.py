"""The agent's end of the host channel: frames held inside a batch leave in one write."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from ember.agent.main import HostLink
from ember.agent.protocol import Kind, encode


class RecordingWriter:
    """Stands in for the channel's StreamWriter: records each ``writelines`` call."""

    def __init__(self) -> None:
        self.writes: list[list[bytes]] = []
        self.closing = False

    def writelines(self, data: list[bytes]) -> None:
        self.writes.append(list(data))

    def is_closing(self) -> bool:
        return self.closing


def link() -> tuple[HostLink, RecordingWriter]:
    writer = RecordingWriter()
    return HostLink(cast(asyncio.StreamWriter, writer)), writer


def test_a_frame_outside_a_batch_is_written_at_once() -> None:
    host, writer = link()
    host.send(Kind.NEXT, {})
    assert writer.writes == [encode(Kind.NEXT, {})]


def test_frames_inside_a_batch_leave_together_in_order_at_its_end() -> None:
    host, writer = link()
    meta: dict[str, Any] = {"id": "r1", "content_type": "application/json"}
    with host.held():
        host.send(Kind.RESPONSE, meta, b"{}")
        with host.held():  # nested: still one write, at the outer end
            host.send(Kind.NEXT, {})
        assert writer.writes == []
    assert writer.writes == [[*encode(Kind.RESPONSE, meta, b"{}"), *encode(Kind.NEXT, {})]]


def test_nothing_is_written_to_a_closing_channel() -> None:
    host, writer = link()
    with host.held():
        host.send(Kind.NEXT, {})
        writer.closing = True
    assert writer.writes == []
