"""The log of one execution environment: its stream, and the tail of the current invoke.

Runtime output arrives as bytes (LOG frames). Each ``\\n``-terminated line becomes one log
event, as CloudWatch stores it; only ``\\n`` splits (a Python traceback joined with ``\\r``
stays one event). A line without its newline yet is held until the rest arrives or the
invocation ends. While an invocation runs, its last 4 KB are kept for ``LogType: Tail``.

Scope: one per environment.
"""

from __future__ import annotations

import base64
from collections import deque

from ember.observe.logs import LogWriter

TAIL_BYTES = 4096


class EnvironmentLog:
    def __init__(self, writer: LogWriter, group: str, stream: str) -> None:
        self.group = group
        self.stream = stream
        self._writer = writer
        self._partial = b""  # output after the last newline
        self._tail: deque[bytes] | None = None  # the current invoke's last lines
        self._tail_size = 0

    def output(self, data: bytes) -> None:
        """Runtime or extension output: one event per complete line."""
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            self.line(line.decode("utf-8", errors="replace") + "\n")

    def flush_partial(self) -> None:
        """End of an invocation: a last line without its newline becomes an event."""
        if self._partial:
            partial, self._partial = self._partial, b""
            self.line(partial.decode("utf-8", errors="replace") + "\n")

    def line(self, message: str) -> None:
        """One event (a platform line or a line of output)."""
        self._writer.emit(self.group, self.stream, message)
        if self._tail is not None:
            data = message.encode()
            self._tail.append(data)
            self._tail_size += len(data)
            while self._tail_size - len(self._tail[0]) >= TAIL_BYTES:
                self._tail_size -= len(self._tail.popleft())

    def begin_tail(self) -> None:
        self._tail, self._tail_size = deque(), 0

    def end_tail(self) -> str:
        """Base64 of the last 4 KB of what was logged since ``begin_tail``."""
        data = b"".join(self._tail or ())
        self._tail = None
        return base64.b64encode(data[-TAIL_BYTES:]).decode()
