"""A trivial HTTP/1.1 keep-alive server: the floor the benchmark clients are measured on.

    python -m bench.floor_server [--port 0] [--delay-ms 0]

Answers every request with ``200`` and the body ``{}`` (what boto3's Invoke accepts),
after ``--delay-ms`` when given (the burst floor: a "function" that sleeps). Prints
``listening on <port>`` once ready. A bare asyncio protocol on uvloop, one process: as
little as a Python HTTP server can do per request, so that Ember's figures minus this
floor is Ember's own cost and this floor's ceiling bounds what the client can measure.
Scope: loopback only; it serves until terminated.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import cast

import uvloop

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"X-Amz-Executed-Version: $LATEST\r\nContent-Length: 2\r\n\r\n{}"
)


class FloorProtocol(asyncio.Protocol):
    """Reads requests (Content-Length framing) and answers each one."""

    def __init__(self, delay_s: float) -> None:
        self._buffer = b""
        self._delay_s = delay_s
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            length = 0
            for line in self._buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self._buffer) < end + 4 + length:
                return
            self._buffer = self._buffer[end + 4 + length :]
            if self._delay_s:
                asyncio.get_running_loop().call_later(self._delay_s, self._answer)
            else:
                self._answer()

    def _answer(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(RESPONSE)


async def serve(port: int, delay_s: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: FloorProtocol(delay_s), "127.0.0.1", port, backlog=1024
    )
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=int, default=0, help="wait this long per answer")
    args = parser.parse_args(argv)
    uvloop.run(serve(args.port, args.delay_ms / 1000))


if __name__ == "__main__":
    main()
