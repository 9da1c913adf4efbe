"""The host's frame reader: whole frames out of whatever each read returns."""

from __future__ import annotations

import asyncio

import pytest

from ember.agent.protocol import Frame, FrameReader, Kind, ProtocolError, encode


def stream(*chunks: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    if eof:
        reader.feed_eof()
    return reader


def wire(kind: Kind, meta: dict[str, object], payload: bytes = b"") -> bytes:
    return b"".join(encode(kind, meta, payload))


async def frames_of(reader: asyncio.StreamReader, read_size: int = 64 * 1024) -> list[Frame]:
    frames, source = [], FrameReader(reader, read_size)
    while (frame := await source.next()) is not None:
        frames.append(frame)
    return frames


async def test_several_frames_in_one_read_come_out_in_order() -> None:
    data = wire(Kind.RESPONSE, {"id": "r1"}, b'{"ok":1}') + wire(Kind.NEXT, {})
    frames = await frames_of(stream(data))
    assert [(f.kind, f.meta, f.payload) for f in frames] == [
        (Kind.RESPONSE, {"id": "r1"}, b'{"ok":1}'),
        (Kind.NEXT, {}, b""),
    ]


@pytest.mark.parametrize("cut", [1, 5, 9, 12, 20])
async def test_a_frame_split_anywhere_is_put_together(cut: int) -> None:
    data = wire(Kind.LOG, {"stream": "stdout"}, b"hello\n") + wire(Kind.NEXT, {})
    frames = await frames_of(stream(data[:cut], data[cut:]), read_size=7)
    assert [(f.kind, f.payload) for f in frames] == [(Kind.LOG, b"hello\n"), (Kind.NEXT, b"")]


async def test_a_large_payload_arriving_in_pieces_is_whole() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    data = wire(Kind.RESPONSE, {"id": "big"}, payload) + wire(Kind.NEXT, {})
    pieces = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    frames = await frames_of(stream(*pieces))
    assert frames[0].payload == payload
    assert [f.kind for f in frames] == [Kind.RESPONSE, Kind.NEXT]


@pytest.mark.parametrize("keep", [3, 12, 20])
async def test_the_channel_closing_inside_a_frame_is_a_protocol_error(keep: int) -> None:
    data = wire(Kind.RESPONSE, {"id": "r1"}, b"payload")
    with pytest.raises(ProtocolError):
        await frames_of(stream(data[:keep]))


async def test_oversized_and_unknown_frames_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError, match="too large"):
        await frames_of(stream(b"\x0d" + (1 << 30).to_bytes(4, "big") + b"\0\0\0\0"))
    with pytest.raises(ProtocolError, match="bad frame"):
        await frames_of(stream(b"\x63\0\0\0\0\0\0\0\0"))
