"""Working sets: which pages a forked process holds privately, and pre-faulting a list."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ember.sandbox import nsinit, working_set
from ember.sandbox.working_set import PAGE, merge, private_pages

BUFFER = 8 * 1024 * 1024  # private to this process before the fork: shared after it


def test_merge_joins_touching_and_overlapping_ranges() -> None:
    assert merge([(8192, 4096), (0, 4096), (4096, 4096), (20480, 4096), (20000, 1000)]) == [
        (0, 12288),
        (20000, 4576),
    ]
    assert merge([]) == []


@contextmanager
def forked(child: Callable[[], None]) -> Iterator[int]:
    """A child that runs ``child()`` and then waits; yields its pid once it has run."""
    ready_read, ready_write = os.pipe()
    done_read, done_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            child()
            os.write(ready_write, b"x")
            os.read(done_read, 1)
        finally:
            os._exit(0)
    try:
        assert os.read(ready_read, 1) == b"x"
        yield pid
    finally:
        os.write(done_write, b"x")
        os.waitpid(pid, 0)
        for fd in (ready_read, ready_write, done_read, done_write):
            os.close(fd)


def covered(ranges: list[tuple[int, int]], start: int, length: int) -> int:
    """Bytes of ``[start, start + length)`` inside ``ranges``."""
    return sum(max(0, min(start + length, s + n) - max(start, s)) for s, n in ranges)


def test_pages_a_child_wrote_are_its_private_pages_and_the_rest_are_not() -> None:
    buffer = bytearray(BUFFER)
    for offset in range(0, BUFFER, PAGE):
        buffer[offset] = 1  # every page present (and private) before the fork
    address = ctypes.addressof((ctypes.c_char * BUFFER).from_buffer(buffer))
    first = (address + PAGE - 1) // PAGE * PAGE  # the buffer's first whole page
    written = 256 * PAGE

    def write_some() -> None:
        for offset in range(first - address, first - address + written, PAGE):
            buffer[offset] = 2

    with forked(write_some) as pid:
        ranges = private_pages(pid)
    assert covered(ranges, first, written) == written
    untouched = first + 2 * written  # the child never wrote here: still shared
    assert covered(ranges, untouched, 256 * PAGE) == 0


def test_populating_listed_ranges_makes_exactly_those_pages_private() -> None:
    buffer = bytearray(BUFFER)
    for offset in range(0, BUFFER, PAGE):
        buffer[offset] = 1
    address = ctypes.addressof((ctypes.c_char * BUFFER).from_buffer(buffer))
    first = (address + PAGE - 1) // PAGE * PAGE
    listed = [(first, 128 * PAGE)]

    def populate() -> None:
        nsinit.populate_private_memory(lambda: False, listed)

    with forked(populate) as pid:
        ranges = private_pages(pid)
    assert covered(ranges, first, 128 * PAGE) == 128 * PAGE
    assert covered(ranges, first + 512 * PAGE, 128 * PAGE) == 0


def test_a_gone_process_has_no_working_set() -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(0)
    os.waitpid(pid, 0)
    assert working_set.record(pid, [pid]) == {"agent": [], "runtime": []}
