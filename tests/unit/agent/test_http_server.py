"""The agent's HTTP/1.1 server, driven byte by byte through a fake transport."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import pytest

from ember.agent.http_server import (
    MAX_HEAD_BYTES,
    HttpConnection,
    Request,
    Response,
    no_delay,
)


class FakeTransport(asyncio.Transport):
    """Collects written bytes; records close and pause/resume."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.paused = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


class Recorder:
    """A handler that answers 200 with the body, or parks requests to ``/wait``."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.parked: list[asyncio.Future[Response]] = []

    def __call__(self, request: Request) -> Response | asyncio.Future[Response]:
        self.requests.append(request)
        if request.path == "/wait":
            future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
            self.parked.append(future)
            return future
        return Response(200, request.body)


def connect(max_body: int = 1024) -> tuple[HttpConnection, FakeTransport, Recorder]:
    handler = Recorder()
    connection = HttpConnection(handler, max_body)
    transport = FakeTransport()
    connection.connection_made(transport)
    return connection, transport, handler


async def test_pipelined_requests_are_answered_in_order_byte_by_byte() -> None:
    connection, transport, handler = connect()
    data = (
        b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
        b"POST /b?q=1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n"
    )
    for index in range(len(data)):
        connection.data_received(data[index : index + 1])
    assert [(r.path, r.body, r.trailers) for r in handler.requests] == [
        ("/a", b"abc", {}),
        ("/b", b"de", {"x-t": "1"}),
    ]
    assert transport.written == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nde"
    )
    assert not transport.closed


async def test_a_parked_request_holds_back_the_next_one() -> None:
    connection, transport, handler = connect()
    connection.data_received(b"GET /wait HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\n\r\n")
    assert [r.path for r in handler.requests] == ["/wait"]
    handler.parked[0].set_result(Response(202, b"late", [("X-A", "b\r\nInjected: no")]))
    await asyncio.sleep(0)  # let the future's done-callback run
    assert [r.path for r in handler.requests] == ["/wait", "/after"]
    assert transport.written.startswith(
        b"HTTP/1.1 202 Accepted\r\nX-A: b  Injected: no\r\nContent-Length: 4\r\n\r\nlate"
    )


async def test_connection_lost_cancels_a_parked_request() -> None:
    connection, _, handler = connect()
    connection.data_received(b"GET /wait HTTP/1.1\r\n\r\n")
    connection.connection_lost(None)
    assert handler.parked[0].cancelled()


async def test_connection_lost_mid_body_hands_over_a_truncated_request() -> None:
    connection, _, handler = connect()
    connection.data_received(b"POST /r HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123")
    assert not handler.requests
    connection.connection_lost(None)
    (request,) = handler.requests
    assert request.truncated
    assert request.body == b"0123"


async def test_oversize_bodies_are_discarded_and_the_connection_stays_usable() -> None:
    connection, transport, handler = connect(max_body=4)
    connection.data_received(b"POST /big HTTP/1.1\r\nContent-Length: 6\r\n\r\n123456")
    connection.data_received(b"POST /ok HTTP/1.1\r\nContent-Length: 4\r\n\r\n1234")
    assert [(r.oversize, r.body) for r in handler.requests] == [(True, b""), (False, b"1234")]
    assert not transport.closed


async def test_connection_close_and_http_1_0_close_after_the_response() -> None:
    for request in (
        b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
    ):
        connection, transport, _ = connect()
        connection.data_received(request)
        assert transport.written.endswith(b"Connection: close\r\n\r\n")
        assert transport.closed


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nNo-Colon\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
    ],
)
async def test_malformed_requests_get_400_and_a_close(request_bytes: bytes) -> None:
    connection, transport, handler = connect()
    connection.data_received(request_bytes)
    assert not handler.requests
    assert transport.written.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert transport.written.endswith(b'"errorType":"BadRequest"}\n')
    assert transport.closed


async def test_an_endless_head_gets_431() -> None:
    connection, transport, _ = connect()
    connection.data_received(b"GET / HTTP/1.1\r\nX: " + b"a" * (MAX_HEAD_BYTES + 1))
    assert transport.written.startswith(b"HTTP/1.1 431 ")
    assert transport.closed


async def test_expect_continue_is_answered_before_the_body() -> None:
    connection, transport, handler = connect()
    connection.data_received(
        b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    )
    assert transport.written == b"HTTP/1.1 100 Continue\r\n\r\n"
    connection.data_received(b"ok")
    assert handler.requests[0].body == b"ok"


def test_accepted_tcp_connections_get_nagle_switched_off() -> None:
    listener = socket.socket()  # proto 0, as the agent makes it: asyncio leaves Nagle on
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    try:
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        no_delay(SocketTransport(accepted))
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        for sock in (client, accepted, listener):
            sock.close()


class SocketTransport(FakeTransport):
    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.sock if name == "socket" else default


async def test_each_read_is_handled_inside_one_batch() -> None:
    batches: list[str] = []

    @contextlib.contextmanager
    def batch() -> Iterator[None]:
        batches.append("enter")
        yield
        batches.append("exit")

    def handler(request: Request) -> Response:
        batches.append(request.path)
        return Response(200)

    connection = HttpConnection(handler, 1024, batch)
    connection.connection_made(FakeTransport())
    connection.data_received(
        b"POST /a HTTP/1.1\r\nContent-Length: 0\r\n\r\nGET /b HTTP/1.1\r\n\r\n"
    )
    assert batches == ["enter", "/a", "/b", "exit"]
