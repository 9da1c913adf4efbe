"""The Runtime API client: the part of aws-lambda-cpp that awslambdaric uses."""

from __future__ import annotations

import encodings.idna  # noqa: F401 - getaddrinfo encodes a str host with it: imported
import socket  # with the client (a zygote's fork has it), not at the first connect
from collections.abc import Sequence

from .errors import LambdaRuntimeClientError

READ_CHUNK = 64 * 1024  # bytes per socket read, into one buffer kept per client
# answers up to this size are followed at once by the next ``/next`` (pipelined): no
# Runtime API refuses one this small, and a refused post ends the runtime anyway
PIPELINE_MAX = 1024 * 1024
NEXT_PATH = "/2018-06-01/runtime/invocation/next"


class RuntimeApiClient:
    """A keep-alive HTTP/1.1 client for the Runtime API: one connection, reused.

    A request that fails on a reused connection before any response byte arrived is sent
    once more on a fresh connection (the server may have closed an idle keep-alive).

    A small ``/response`` or ``/error`` is sent together with the next ``GET /next``
    (HTTP/1.1 pipelining; the answers come back in order): the Runtime API learns that the
    runtime is ready again in the same read, which saves a round trip per invoke. If the
    connection breaks before that ``/next`` is answered, ``next_invocation`` asks again.
    """

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self._host = address
        self._address = (host.strip("[]") or "127.0.0.1", int(port))
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._chunk = bytearray(READ_CHUNK)
        self._chunk_view = memoryview(self._chunk)
        self._got_bytes = False
        self._next_sent = False  # a GET /next went out after the last post, unanswered

    def next_invocation(self) -> tuple[bytes, dict[str, str]]:
        status, headers, body = self._pipelined_next() or self._request("GET", NEXT_PATH)
        if status != 200 or not headers.get("lambda-runtime-aws-request-id"):
            raise RuntimeError("Failed to get next")
        return body, headers

    def post_response(self, invoke_id: str, body: bytes, content_type: str) -> None:
        path = f"/2018-06-01/runtime/invocation/{invoke_id}/response"
        status, _, _ = self._request(
            "POST", path, body, [("Content-Type", content_type)], then_next=True
        )
        if not 200 <= status < 300:
            raise RuntimeError("Failed to post invocation response")

    def post_error(self, invoke_id: str, body: bytes, xray_cause: str) -> None:
        path = f"/2018-06-01/runtime/invocation/{invoke_id}/error"
        headers = [("Content-Type", "application/json")]
        if xray_cause and len(xray_cause.encode()) < 1024 * 1024:
            headers.append(("lambda-runtime-function-xray-error-cause", xray_cause))
        status, _, _ = self._request("POST", path, body, headers, then_next=True)
        if not 200 <= status < 300:
            raise RuntimeError("Failed to post invocation error")

    def post_init_error(self, body: bytes, error_type: str) -> None:
        path = "/2018-06-01/runtime/init/error"
        headers = [("Lambda-Runtime-Function-Error-Type", error_type)]
        status, _, response = self._request("POST", path, body, headers)
        if status != 202:
            raise LambdaRuntimeClientError(path, status, response)

    def _request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
        *,
        then_next: bool = False,
    ) -> tuple[int, dict[str, str], bytes]:
        head = self._head(method, path, headers, len(body) if method == "POST" else None)
        trailing = self._head("GET", NEXT_PATH) if then_next and len(body) <= PIPELINE_MAX else b""
        try:
            reused = self._sock is not None
            return self._exchange(head, body, trailing)
        except OSError:
            self._close()
            if not reused or self._got_bytes:
                raise
        # the server may have closed an idle keep-alive: once more, on a new connection, and
        # without the pipelined /next (had the first one arrived, it may have been answered)
        return self._exchange(head, body)

    def _head(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[str, str]] = (),
        length: int | None = None,
    ) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host}"]
        lines += [f"{name}: {value}" for name, value in headers]
        if length is not None:
            lines.append(f"Content-Length: {length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def _exchange(
        self, head: bytes, body: bytes, trailing: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        """Send a request (and ``trailing``, a pipelined request whose answer is left for
        ``_pipelined_next``); read this request's answer."""
        sock = self._connect()
        self._got_bytes = False
        if len(body) < 64 * 1024:
            sock.sendall(head + body + trailing)
        else:
            sock.sendall(head)
            sock.sendall(body + trailing)
        self._next_sent = bool(trailing)
        status, headers, payload = self._read_response()
        if "close" in headers.get("connection", "").lower():
            self._close()
        return status, headers, payload

    def _pipelined_next(self) -> tuple[int, dict[str, str], bytes] | None:
        """The answer to the ``/next`` sent with the last post; None if there is none (or
        its connection broke first: the caller then asks again)."""
        if not self._next_sent or self._sock is None:
            return None
        self._next_sent = False
        try:
            status, headers, payload = self._read_response()
        except OSError:
            self._close()
            return None
        if "close" in headers.get("connection", "").lower():
            self._close()
        return status, headers, payload

    def _read_response(self) -> tuple[int, dict[str, str], bytes]:
        while True:
            status, headers = self._read_head()
            if status >= 200:
                return status, headers, self._read_body(status, headers)

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.create_connection(self._address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock, self._buf = sock, bytearray()
        return self._sock

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        self._close()

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._next_sent = False

    def _fill(self) -> None:
        """One read into the reused chunk buffer (a fresh 256 KiB ``recv`` buffer per read
        cost an mmap and munmap each: 10-20 µs, several times per invoke)."""
        assert self._sock is not None
        count = self._sock.recv_into(self._chunk)
        if not count:
            raise ConnectionResetError("Runtime API closed the connection")
        self._got_bytes = True
        self._buf += self._chunk_view[:count]

    def _read_until(self, marker: bytes) -> bytes:
        while (end := self._buf.find(marker)) < 0:
            self._fill()
        data = bytes(self._buf[:end])
        del self._buf[: end + len(marker)]
        return data

    def _read_exact(self, size: int) -> bytes:
        while len(self._buf) < size:
            self._fill()
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    def _read_head(self) -> tuple[int, dict[str, str]]:
        lines = self._read_until(b"\r\n\r\n").decode("utf-8", "replace").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    def _read_body(self, status: int, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks = []
            while size := int(self._read_until(b"\r\n").split(b";")[0], 16):
                chunks.append(self._read_exact(size))
                self._read_exact(2)
            while self._read_until(b"\r\n"):
                pass  # trailers
            return b"".join(chunks)
        if "content-length" in headers:
            return self._read_exact(int(headers["content-length"]))
        if status in (204, 304):
            return b""
        try:
            while True:
                self._fill()
        except ConnectionResetError:
            data, self._buf = bytes(self._buf), bytearray()
            self._close()
            return data
