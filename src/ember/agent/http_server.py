"""A minimal asyncio HTTP/1.1 server for the Runtime API (stdlib only).

Built for one client on loopback (the runtime), where latency matters more than features:
``asyncio.Protocol`` callbacks with no task per request, requests handled in order on each
connection (keep-alive and pipelining), ``Content-Length`` and chunked request bodies
(with trailers), ``Expect: 100-continue``. No TLS, no response streaming, no upgrades.

A handler takes a complete ``Request`` and returns either a ``Response`` (written at
once) or an ``asyncio.Future`` resolving to one (a long poll); the future is cancelled if
the client goes away first. Request bodies longer than ``max_body`` are read and thrown
away (the connection stays usable) and the request is marked ``oversize``. A request
whose body the client never finished (connection lost mid-body) is still handed to the
handler once, marked ``truncated``; what the handler answers is discarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
from collections.abc import Callable

# a request head may be as large as RAPID's (Go's http.DefaultMaxHeaderBytes): runtime
# clients send an error's X-Ray cause in a header of up to 1 MiB
MAX_HEAD_BYTES = 1024 * 1024
READ_SIZE = 64 * 1024  # bytes per socket read (asyncio's 256 KiB default: an mmap per read)
MAX_LINE_BYTES = 8 * 1024
PAUSE_READING_AT = 4 * 1024 * 1024
SMALL_WRITE = 64 * 1024

REASONS = {
    100: "Continue",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}

# Parser states of one connection.
_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS = range(6)


class Request:
    """One parsed request. Header and trailer names are lower-case; repeats are joined."""

    __slots__ = ("body", "headers", "method", "oversize", "path", "trailers", "truncated")

    def __init__(self, method: str, target: str, headers: dict[str, str]) -> None:
        self.method = method
        self.path = target.split("?", 1)[0]
        self.headers = headers
        self.body = b""
        self.trailers: dict[str, str] = {}
        self.oversize = False
        self.truncated = False


class Response:
    """Status, extra headers (``Content-Length`` is added) and body."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self, status: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or []


Handler = Callable[[Request], "Response | asyncio.Future[Response]"]


class BadRequestError(Exception):
    """The client sent something that is not HTTP/1.1; answered with 400 and a close."""

    status = 400


class HeadTooLargeError(BadRequestError):
    status = 431


def _error_body(status: int, message: str) -> Response:
    body = json.dumps({"errorMessage": message, "errorType": "BadRequest"}, separators=(",", ":"))
    body += "\n"
    return Response(status, body.encode(), [("Content-Type", "application/json")])


def _parse_fields(lines: list[str], into: dict[str, str]) -> None:
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequestError(f"malformed header line {line[:40]!r}")
        key = name.lower()
        value = value.strip(" \t")
        into[key] = f"{into[key]}, {value}" if key in into else value


def _parse_head(head: str) -> Request:
    lines = head.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequestError("malformed request line")
    headers: dict[str, str] = {}
    _parse_fields(lines[1:], headers)
    request = Request(parts[0], parts[1], headers)
    if parts[2] == "HTTP/1.0":
        request.headers.setdefault("connection", "close")
    return request


def _content_length(request: Request) -> int:
    value = request.headers.get("content-length", "0")
    if not (value.isascii() and value.isdigit()):
        raise BadRequestError("invalid Content-Length")
    return int(value)


def _is_chunked(request: Request) -> bool:
    coding = request.headers.get("transfer-encoding")
    if coding is None:
        return False
    if coding.rsplit(",", 1)[-1].strip().lower() != "chunked":
        raise BadRequestError("unsupported Transfer-Encoding")
    return True


def _chunk_size(line: bytes) -> int:
    digits = line.split(b";", 1)[0].strip()
    if not digits or digits.strip(b"0123456789abcdefABCDEF"):
        raise BadRequestError("invalid chunk size")
    return int(digits, 16)


def _keep_alive(request: Request) -> bool:
    tokens = request.headers.get("connection", "").lower()
    return "close" not in (token.strip() for token in tokens.split(","))


class HttpConnection(asyncio.Protocol):
    """One client connection: parses requests in order and writes one response each.

    Invariants: at most one request is being handled at a time (``_busy``); bytes that
    arrive meanwhile stay in ``_buf`` and are parsed once the response has been written.
    """

    def __init__(
        self,
        handler: Handler,
        max_body: int,
        batch: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext,
    ) -> None:
        self._handler = handler
        self._batch = batch
        self._max_body = max_body
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._state = _HEAD
        self._request: Request | None = None
        self._chunks: list[bytes] = []
        self._size = 0
        self._remaining = 0
        self._busy = False
        self._paused = False
        self._pending: asyncio.Future[Response] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        small_reads(transport)
        no_delay(transport)

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return  # closing after a final response: the rest is ignored
        self._buf += data
        if not self._busy:
            with self._batch():
                self._parse()
        elif len(self._buf) > PAUSE_READING_AT and self._transport and not self._paused:
            self._paused = True
            self._transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - Protocol API
        self._transport = None
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        request = self._request
        if request is not None and self._state != _HEAD and not self._busy:
            request.truncated = True
            request.body = b"".join(self._chunks)
            self._request = None
            result = self._call_handler(request)
            if not isinstance(result, Response):
                result.cancel()

    def _parse(self) -> None:
        try:
            while not self._busy and self._transport is not None and self._step():
                pass
        except BadRequestError as exc:
            self._reject(exc)

    def _step(self) -> bool:
        """Advance the parser; False when it needs more bytes."""
        state = self._state
        if state == _HEAD:
            return self._read_head()
        if state in (_BODY, _CHUNK_DATA):
            return self._read_body()
        if state == _CHUNK_SIZE:
            return self._read_chunk_size()
        if state == _CHUNK_END:
            return self._read_chunk_end()
        return self._read_trailer()

    def _read_head(self) -> bool:
        buf = self._buf
        while buf[:2] == b"\r\n":
            del buf[:2]
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD_BYTES:
                raise HeadTooLargeError("request head too large")
            return False
        request = _parse_head(buf[:end].decode("latin-1"))
        del buf[: end + 4]
        self._request, self._chunks, self._size = request, [], 0
        if _is_chunked(request):
            self._state = _CHUNK_SIZE
        else:
            self._remaining = _content_length(request)
            self._state = _BODY
        if request.headers.get("expect", "").lower() == "100-continue" and self._transport:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self._state == _BODY and not self._remaining:
            self._complete()
        return True

    def _read_body(self) -> bool:
        count = min(self._remaining, len(self._buf))
        if not count:
            return False
        self._size += count
        if self._size <= self._max_body:
            self._chunks.append(bytes(self._buf[:count]))
        elif self._request is not None and not self._request.oversize:
            self._request.oversize = True
            self._chunks = []
        del self._buf[:count]
        self._remaining -= count
        if not self._remaining:
            if self._state == _BODY:
                self._complete()
            else:
                self._state = _CHUNK_END
        return True

    def _take_line(self) -> bytes | None:
        end = self._buf.find(b"\r\n")
        if end < 0:
            if len(self._buf) > MAX_LINE_BYTES:
                raise BadRequestError("line too long")
            return None
        line = bytes(self._buf[:end])
        del self._buf[: end + 2]
        return line

    def _read_chunk_size(self) -> bool:
        line = self._take_line()
        if line is None:
            return False
        self._remaining = _chunk_size(line)
        self._state = _CHUNK_DATA if self._remaining else _TRAILERS
        return True

    def _read_chunk_end(self) -> bool:
        if len(self._buf) < 2:
            return False
        if self._buf[:2] != b"\r\n":
            raise BadRequestError("chunk not followed by CRLF")
        del self._buf[:2]
        self._state = _CHUNK_SIZE
        return True

    def _read_trailer(self) -> bool:
        line = self._take_line()
        if line is None:
            return False
        if line:
            assert self._request is not None
            _parse_fields([line.decode("latin-1")], self._request.trailers)
        else:
            self._complete()
        return True

    def _complete(self) -> None:
        request = self._request
        assert request is not None
        request.body = b"".join(self._chunks)
        self._request, self._chunks, self._state = None, [], _HEAD
        self._busy = True
        result = self._call_handler(request)
        if isinstance(result, Response):
            self._respond(result, _keep_alive(request))
        else:
            self._pending = result
            keep = _keep_alive(request)
            result.add_done_callback(lambda done: self._on_done(done, keep))

    def _call_handler(self, request: Request) -> Response | asyncio.Future[Response]:
        try:
            return self._handler(request)
        except Exception as exc:  # noqa: BLE001 - a handler bug must not kill the agent
            print(f"ember-agent: handler failed: {exc!r}", file=sys.stderr)
            body = b'{"errorMessage":"Internal Server Error","errorType":"InternalServerError"}\n'
            return Response(500, body, [("Content-Type", "application/json")])

    def _on_done(self, future: asyncio.Future[Response], keep_alive: bool) -> None:
        if future.cancelled() or self._pending is not future:
            return
        self._pending = None
        self._respond(future.result(), keep_alive)

    def _respond(self, response: Response, keep_alive: bool) -> None:
        transport = self._transport
        self._busy = False
        if transport is None:
            return
        lines = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}\r\n"]
        for name, value in response.headers:
            lines.append(f"{name}: {value.replace(chr(13), ' ').replace(chr(10), ' ')}\r\n")
        lines.append(f"Content-Length: {len(response.body)}\r\n")
        lines.append("\r\n" if keep_alive else "Connection: close\r\n\r\n")
        head = "".join(lines).encode()
        if len(response.body) <= SMALL_WRITE:
            transport.write(head + response.body)
        else:
            transport.write(head)
            transport.write(response.body)
        if not keep_alive:
            transport.close()
            self._transport = None
            return
        if self._paused:
            self._paused = False
            transport.resume_reading()
        if self._buf:
            self._parse()

    def _reject(self, exc: BadRequestError) -> None:
        self._request = None
        self._buf.clear()
        self._respond(_error_body(exc.status, str(exc)), keep_alive=False)


async def start_server(
    sock: socket.socket,
    handler: Handler,
    *,
    max_body: int,
    batch: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext,
) -> asyncio.Server:
    """Serve ``handler`` on an already bound and listening socket. ``batch()`` is entered
    around the handling of each read (every request it completes)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: HttpConnection(handler, max_body, batch), sock=sock)


def small_reads(transport: asyncio.BaseTransport) -> None:
    """Read ``READ_SIZE`` bytes at a time from ``transport`` (selector transports read
    ``max_size`` per call; a 256 KiB buffer is allocated by mmap and freed by munmap at
    every read, 10-20 µs each, several times per invoke). Others are left as they are."""
    if hasattr(transport, "max_size"):
        transport.max_size = READ_SIZE


def no_delay(transport: asyncio.BaseTransport) -> None:
    """Switch Nagle off on a TCP connection. asyncio does it only for sockets made with
    ``proto=IPPROTO_TCP``; an accepted one inherits ``proto=0`` from a listener made with
    ``socket.socket()``. With Nagle on, an answer written while the previous one is still
    unacknowledged (a runtime that pipelines ``/next`` sends nothing to piggy-back the
    ACK on) waits for the peer's delayed ACK: 40 ms."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
