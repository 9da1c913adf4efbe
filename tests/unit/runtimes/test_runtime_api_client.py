"""The Python runtime client's HTTP: pipelined ``/next`` after a post, and its fallbacks.

A scripted Runtime API on a real loopback socket, served by a thread: each accepted
connection answers the requests it reads with the next scripted answers, in order; an
answer of ``None`` closes the connection instead.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from ember.runtimes.python.ember_ric.client import PIPELINE_MAX, RuntimeApiClient

EVENT = b"HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: id-2\r\nContent-Length: 2\r\n\r\n{}"
ACCEPTED = b'HTTP/1.1 202 Accepted\r\nContent-Length: 16\r\n\r\n{"status":"OK"}\n'


class ScriptedApi:
    def __init__(self, answers: list[bytes | None]) -> None:
        self.answers = answers
        self.requests: list[bytes] = []  # request heads, in arrival order
        self.reads: list[bytes] = []  # what each recv returned
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        buffer = b""
        while self.answers:
            while (end := buffer.find(b"\r\n\r\n")) < 0:
                data = conn.recv(1 << 20)
                if not data:
                    return
                self.reads.append(data)
                buffer += data
            head, buffer = buffer[:end], buffer[end + 4 :]
            length = next(
                (int(line.split(b":")[1]) for line in head.split(b"\r\n")
                 if line.lower().startswith(b"content-length:")), 0,
            )  # fmt: skip
            while len(buffer) < length:
                data = conn.recv(1 << 20)
                self.reads.append(data)
                buffer += data
            buffer = buffer[length:]
            self.requests.append(head.split(b"\r\n")[0])
            answer = self.answers.pop(0)
            if answer is None:
                return
            conn.sendall(answer)

    def close(self) -> None:
        self._listener.close()
        self._thread.join(timeout=10)


class Made:
    """What a test made, closed at its end."""

    def __init__(self) -> None:
        self.apis: list[ScriptedApi] = []
        self.clients: list[RuntimeApiClient] = []


@pytest.fixture
def api_factory() -> Iterator[Made]:
    made = Made()
    yield made
    for client in made.clients:
        client.close()
    for api in made.apis:
        api.close()


def scripted(made: Made, answers: list[bytes | None]) -> tuple[ScriptedApi, RuntimeApiClient]:
    api = ScriptedApi(answers)
    client = RuntimeApiClient(api.address)
    made.apis.append(api)
    made.clients.append(client)
    return api, client


def test_a_small_response_is_sent_with_the_next_request_in_one_write(
    api_factory: Made,
) -> None:
    api, client = scripted(api_factory, [ACCEPTED, EVENT])
    client.post_response("id-1", b'{"ok":true}', "application/json")
    body, headers = client.next_invocation()
    assert (body, headers["lambda-runtime-aws-request-id"]) == (b"{}", "id-2")
    assert api.requests == [
        b"POST /2018-06-01/runtime/invocation/id-1/response HTTP/1.1",
        b"GET /2018-06-01/runtime/invocation/next HTTP/1.1",
    ]
    assert len(api.reads) == 1  # both requests in one segment
    assert api.reads[0].endswith(b"/next HTTP/1.1\r\nHost: %s\r\n\r\n" % api.address.encode())
    assert api.connections == 1


def test_an_error_post_is_pipelined_too(api_factory: Made) -> None:
    api, client = scripted(api_factory, [ACCEPTED, EVENT])
    client.post_error("id-1", b'{"errorMessage":"x"}', "")
    assert client.next_invocation()[1]["lambda-runtime-aws-request-id"] == "id-2"
    assert [r.split(b" ")[0] for r in api.requests] == [b"POST", b"GET"]
    assert len(api.reads) == 1


def test_a_large_response_waits_for_its_answer_before_asking_for_the_next(
    api_factory: Made,
) -> None:
    api, client = scripted(api_factory, [ACCEPTED, EVENT])
    client.post_response("id-1", b"x" * (PIPELINE_MAX + 1), "application/json")
    assert api.requests == [b"POST /2018-06-01/runtime/invocation/id-1/response HTTP/1.1"]
    assert client.next_invocation()[0] == b"{}"
    assert api.requests[-1] == b"GET /2018-06-01/runtime/invocation/next HTTP/1.1"


def test_a_connection_closed_before_the_next_answer_asks_again_on_a_new_one(
    api_factory: Made,
) -> None:
    api, client = scripted(api_factory, [ACCEPTED, None, EVENT])
    client.post_response("id-1", b"{}", "application/json")
    body, headers = client.next_invocation()
    assert (body, headers["lambda-runtime-aws-request-id"]) == (b"{}", "id-2")
    assert api.requests[-2:] == [b"GET /2018-06-01/runtime/invocation/next HTTP/1.1"] * 2
    assert api.connections == 2


def test_a_refused_post_still_raises(api_factory: Made) -> None:
    refused = b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 0\r\n\r\n"
    _, client = scripted(api_factory, [refused, EVENT])
    with pytest.raises(RuntimeError, match="Failed to post invocation response"):
        client.post_response("id-1", b"{}", "application/json")


def test_a_post_retried_on_a_new_connection_leaves_the_next_request_for_later(
    api_factory: Made,
) -> None:
    # the second post finds its kept-alive connection closed: it is sent once more, alone
    api, client = scripted(api_factory, [ACCEPTED, EVENT, None, ACCEPTED, EVENT])
    client.post_response("id-1", b"{}", "application/json")
    client.next_invocation()
    client.post_response("id-2", b"{}", "application/json")
    assert client.next_invocation()[1]["lambda-runtime-aws-request-id"] == "id-2"
    methods = [r.split(b" ")[0] for r in api.requests]
    assert methods == [b"POST", b"GET", b"POST", b"POST", b"GET"]
    assert api.connections == 2
    assert b"/next" not in api.reads[-2]  # the retried post went alone
