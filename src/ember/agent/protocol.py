"""The framed byte stream between the host and the in-sandbox agent (stdlib only).

One channel per environment (a socketpair today, vsock later). A frame is::

    kind: u8 | meta_len: u32 | payload_len: u32 | meta (JSON, UTF-8) | payload (raw bytes)

``meta`` is a small JSON object of control fields; ``payload`` carries event and response
bytes untouched, so a payload is never re-encoded on its way through.

Host → agent
    START     meta: ``StartMeta``; the agent binds the Runtime API and execs the runtime.
    INVOKE    meta: ``InvokeMeta``; payload: the event bytes.
    SHUTDOWN  meta ``{"reason": "spindown"|"timeout"|"failure", "budget_ms": int}``: run
              Lambda's shutdown phase (runtime SIGTERM, SHUTDOWN event to extensions,
              SIGKILL at the end of the budget), then close the channel and exit.
    (closing the channel = shut down at once: the agent kills everything and exits)

Agent → host
    LISTENING meta ``{"runtime_api": "host:port"}``: the Runtime API is bound (sent first).
    INIT_DONE   meta ``{"init_ms": float, "extensions": [ExtensionInfo]}``: the runtime's
                first ``/next`` and every extension's first ``/event/next`` (init finished).
    INIT_ERROR  meta ``{"error_type": str, "init_ms": float, "extensions": [...]}``;
                payload: the runtime's (or the platform's) error body.
    RESPONSE    meta ``{"id", "content_type", "memory_peak_kb"}``; payload: response bytes.
    ERROR       meta ``{"id", "error_type", "content_type", "memory_peak_kb"}``; payload: body.
    LOG         meta ``{"stream": "stdout"|"stderr"}``; payload: output bytes, whole lines
                where possible. Every LOG for an invoke is sent before its RESPONSE/ERROR.
    EXIT        meta ``{"status": int|None, "signal": int|None}``: the runtime process ended;
                the agent exits right after.
    NEXT        meta ``{"extensions_ms": float}``: after a RESPONSE/ERROR, the runtime called
                ``/next`` again and so did every extension subscribed to INVOKE: the
                environment can take another invoke (until then it may still exit).
                ``extensions_ms`` = the time extensions ran after the runtime was done.
"""

from __future__ import annotations

import asyncio
import enum
import json
import struct
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

HEADER = struct.Struct("!BII")
MAX_META = 1 << 20
MAX_PAYLOAD = 64 << 20


class Kind(enum.IntEnum):
    START = 1
    INVOKE = 2
    SHUTDOWN = 3
    LISTENING = 10
    INIT_DONE = 11
    INIT_ERROR = 12
    RESPONSE = 13
    ERROR = 14
    LOG = 15
    EXIT = 16
    NEXT = 17


class StartMeta(TypedDict):
    """How the agent starts the runtime."""

    argv: list[str]  # the runtime command, argv[0] an absolute path
    cwd: str  # working directory (the function's task root)
    env: dict[str, str]  # the runtime's whole environment, except AWS_LAMBDA_RUNTIME_API
    runtime_api: str  # "host:port" to bind; port 0 = any free port
    extensions_dir: NotRequired[str]  # external extensions ("/opt/extensions"); absent = none
    account_id: NotRequired[str]  # for the register response's "accountId" feature


class ExtensionInfo(TypedDict):
    """One registered extension, as INIT_DONE / INIT_ERROR list them."""

    name: str
    events: list[str]  # "INVOKE", "SHUTDOWN"
    external: bool


class InvokeMeta(TypedDict, total=False):
    """One invocation, as the Runtime API's ``/next`` headers need it."""

    id: str  # required: Lambda-Runtime-Aws-Request-Id
    deadline_ms: int  # required: Lambda-Runtime-Deadline-Ms (epoch ms)
    arn: str  # required: Lambda-Runtime-Invoked-Function-Arn
    trace_id: str
    client_context: str  # decoded JSON text
    identity: str  # JSON text
    tenant_id: str


@dataclass(slots=True)
class Frame:
    kind: Kind
    meta: dict[str, Any] = field(default_factory=dict)
    payload: bytes = b""


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid frame."""


def encode(kind: Kind, meta: dict[str, Any] | None = None, payload: bytes = b"") -> list[bytes]:
    """Buffers for ``writelines``: header + meta, then the payload as it is (no copy)."""
    meta_bytes = json.dumps(meta or {}, separators=(",", ":")).encode()
    head = HEADER.pack(kind, len(meta_bytes), len(payload)) + meta_bytes
    return [head, payload] if payload else [head]


class FrameReader:
    """Frames from a stream, parsed out of whatever each read returns.

    Where ``read_frame`` awaits twice per frame, this awaits once per arrival of data
    (a RESPONSE with its LOG frames, say, comes in one read); a frame larger than what
    is buffered is completed with one ``readexactly``. Same errors as ``read_frame``.
    Scope: the only reader of its stream.
    """

    def __init__(self, reader: asyncio.StreamReader, read_size: int = 64 * 1024) -> None:
        self._reader = reader
        self._read_size = read_size
        self._buffer = bytearray()

    async def next(self) -> Frame | None:
        """The next frame, or ``None`` at a clean end of stream."""
        buffer = self._buffer
        while len(buffer) < HEADER.size:
            data = await self._reader.read(self._read_size)
            if not data:
                if buffer:
                    raise ProtocolError("channel closed inside a frame header")
                return None
            buffer += data
        kind, meta_len, payload_len = HEADER.unpack_from(buffer)
        if meta_len > MAX_META or payload_len > MAX_PAYLOAD:
            raise ProtocolError(f"frame too large: meta {meta_len}, payload {payload_len}")
        meta_end = HEADER.size + meta_len
        end = meta_end + payload_len
        rest = b""  # the payload's tail not buffered yet: read straight, copied once
        if len(buffer) < end:
            try:
                if len(buffer) < meta_end:
                    buffer += await self._reader.readexactly(meta_end - len(buffer))
                rest = await self._reader.readexactly(end - len(buffer))
            except asyncio.IncompleteReadError as exc:
                raise ProtocolError("channel closed inside a frame") from exc
        try:
            frame_kind = Kind(kind)
            meta = json.loads(buffer[HEADER.size : meta_end]) if meta_len else {}
        except ValueError as exc:
            raise ProtocolError(f"bad frame: {exc}") from exc
        with memoryview(buffer) as view:
            payload = (
                bytes(view[meta_end : end - len(rest)]) + rest
                if rest
                else bytes(view[meta_end:end])
            )
        del buffer[: end - len(rest)]
        return Frame(frame_kind, meta, payload)


async def read_frame(reader: asyncio.StreamReader) -> Frame | None:
    """The next frame, or ``None`` at a clean end of stream."""
    try:
        head = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("channel closed inside a frame header") from exc
        return None
    kind, meta_len, payload_len = HEADER.unpack(head)
    if meta_len > MAX_META or payload_len > MAX_PAYLOAD:
        raise ProtocolError(f"frame too large: meta {meta_len}, payload {payload_len}")
    try:
        body = await reader.readexactly(meta_len + payload_len)
        frame_kind = Kind(kind)
        meta = json.loads(body[:meta_len]) if meta_len else {}
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError("channel closed inside a frame") from exc
    except ValueError as exc:
        raise ProtocolError(f"bad frame: {exc}") from exc
    return Frame(frame_kind, meta, body[meta_len:])
