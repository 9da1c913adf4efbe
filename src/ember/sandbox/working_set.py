"""Working sets: the pages a cold start writes, recorded once, pre-faulted ahead next time.

A sandbox forked from a zygote shares the zygote's pages copy-on-write, and a Python
process writes to most pages it touches (reference counts): a cold start pays thousands
of copy-on-write faults, each costly in a VM. Pre-faulting *every* private page of a
pooled sandbox ahead (``EMBER_SANDBOX_PREFAULT=full``) removes them from the critical
path but makes each environment hold a private copy of the whole interpreter image.

This module keeps the middle way, the default: after the first start from a zygote has
run a while, the backend reads which pages its processes hold privately (``pagemap``:
present and exclusively mapped) and from then on each pooled sandbox of that zygote
pre-faults those pages only, off the critical path. All sandboxes of one zygote share its
address-space layout (fork), so the addresses carry over; one that is not mapped in a
later sandbox is skipped by ``madvise``.

Scope: the ``agent`` role is the sandbox's pid 1 (the agent), the ``runtime`` role every
other process of the sandbox (the runtime, forked from the agent's template).
Invariants: ranges are page-aligned, sorted, non-overlapping ``(start, length)`` pairs.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
PRESENT = 1 << 63
EXCLUSIVE = 1 << 56  # "page exclusively mapped" (pagemap, Linux 4.2+)
ENTRY = struct.Struct("<Q")

Range = tuple[int, int]  # (start address, length in bytes)
WorkingSet = dict[str, list[Range]]  # role ("agent", "runtime") => ranges


def private_pages(pid: int) -> list[Range]:
    """The pages ``pid`` holds privately in its writable private mappings, as ranges.

    Empty when the process is gone or its pagemap cannot be read.
    """
    pages: list[int] = []
    proc = Path("/proc") / str(pid)
    with (
        contextlib.suppress(OSError),
        (proc / "maps").open() as maps,
        (proc / "pagemap").open("rb") as pagemap,
    ):
        for start, end in _writable_private(maps):
            pagemap.seek(start // PAGE * ENTRY.size)
            entries = pagemap.read((end - start) // PAGE * ENTRY.size)
            for index, (entry,) in enumerate(ENTRY.iter_unpack(entries)):
                if entry & PRESENT and entry & EXCLUSIVE:
                    pages.append(start + index * PAGE)
    return merge((page, PAGE) for page in pages)


def record(head_pid: int, pids: Iterable[int]) -> WorkingSet:
    """The working set of one sandbox: its pid 1 (``agent``) and the rest (``runtime``)."""
    others = [private_pages(pid) for pid in pids if pid != head_pid]
    return {
        "agent": private_pages(head_pid),
        "runtime": merge(r for ranges in others for r in ranges),
    }


def merge(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, with touching or overlapping ranges joined."""
    merged: list[Range] = []
    for start, length in sorted(ranges):
        if merged and start <= merged[-1][0] + merged[-1][1]:
            last_start, last_length = merged[-1]
            merged[-1] = (last_start, max(last_length, start + length - last_start))
        else:
            merged.append((start, length))
    return merged


def size(ranges: Sequence[Range]) -> int:
    return sum(length for _, length in ranges)


def _writable_private(maps: Iterable[str]) -> Iterable[tuple[int, int]]:
    """``(start, end)`` of each writable private mapping in a ``/proc/<pid>/maps``."""
    for line in maps:
        fields = line.split()
        if len(fields) < 2 or fields[1] != "rw-p" or fields[-1] in ("[vvar]", "[vsyscall]"):
            continue
        start, end = (int(part, 16) for part in fields[0].split("-"))
        yield start, end
