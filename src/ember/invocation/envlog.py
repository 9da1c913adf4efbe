"""The log of one execution environment: its stream, and the tail of the current invoke.

Runtime output arrives as bytes (LOG frames, whole lines where possible); each line
becomes one log event, as CloudWatch stores it. While an invocation is running, its lines
are also kept for ``LogType: Tail`` (the last 4 KB, base64).

Scope: one per environment.
"""

from __future__ import annotations

import base64

from ember.observe.logs import LogWriter

TAIL_BYTES = 4096


class EnvironmentLog:
    def __init__(self, writer: LogWriter, group: str, stream: str) -> None:
        self.group = group
        self.stream = stream
        self._writer = writer
        self._tail: list[str] | None = None

    def output(self, data: bytes) -> None:
        """Runtime or extension output: one event per line."""
        text = data.decode("utf-8", errors="replace")
        for line in text.splitlines(keepends=True):
            self.line(line if line.endswith("\n") else line + "\n")

    def line(self, message: str) -> None:
        """One event (a platform line or a line of output)."""
        self._writer.emit(self.group, self.stream, message)
        if self._tail is not None:
            self._tail.append(message)

    def begin_tail(self) -> None:
        self._tail = []

    def end_tail(self) -> str:
        """Base64 of the last 4 KB of what was logged since ``begin_tail``."""
        data = "".join(self._tail or []).encode()
        self._tail = None
        return base64.b64encode(data[-TAIL_BYTES:]).decode()
