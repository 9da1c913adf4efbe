"""Density: memory per idle python environment (issue 4).

    python -m bench.density [--quick] [--functions 20]

Creates N python hello functions, invokes each once (one environment each), lets them go
idle, then reads every process of every sandbox of the server, found through the
sandbox's cgroup (``cgroup.procs``): PSS, USS (private clean + dirty) and RSS from
``/proc/<pid>/smaps_rollup``, summed per sandbox, and the cgroup's own memory usage
(v1 ``memory.usage_in_bytes``, v2 ``memory.current``: page cache and kernel memory
charged to it included). A sandbox whose processes carry ``AWS_LAMBDA_FUNCTION_NAME`` in
``/proc/<pid>/environ`` is a function's environment; the others are the warm pool's
pre-started, not yet specialised sandboxes.

PSS shares each page among the processes mapping it: the environments' pages shared with
the zygote (they are forked from it) and with each other are split among all of them, so
PSS per environment falls as environments are added; USS is what one more costs at the
least. Floor of the same run: an idle ``/usr/bin/python3`` (a fresh interpreter, asleep).
Target (issue 4): PSS <= 15 MiB per idle python environment.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import ember_server, header, load_average, quick_or

TARGET_MIB = 15.0
MIB = 1024 * 1024


@dataclass(frozen=True)
class Memory:
    """One sandbox's (or process's) memory, in bytes."""

    pss: int
    uss: int
    rss: int
    cgroup: int  # the cgroup's usage; 0 for a bare process
    processes: int


def smaps_rollup(pid: int) -> dict[str, int]:
    """``/proc/<pid>/smaps_rollup`` fields in bytes (empty if the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines()[1:]:
        name, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


def process_memory(pids: list[int], cgroup_usage: int = 0) -> Memory:
    rollups = [smaps_rollup(pid) for pid in pids]
    return Memory(
        pss=sum(r.get("Pss", 0) for r in rollups),
        uss=sum(r.get("Private_Clean", 0) + r.get("Private_Dirty", 0) for r in rollups),
        rss=sum(r.get("Rss", 0) for r in rollups),
        cgroup=cgroup_usage,
        processes=len(pids),
    )


def is_environment(pids: list[int]) -> bool:
    for pid in pids:
        try:
            if b"AWS_LAMBDA_FUNCTION_NAME=" in Path(f"/proc/{pid}/environ").read_bytes():
                return True
        except OSError:
            continue
    return False


def sandbox_memory(cgroup: Path) -> tuple[bool, Memory]:
    """(is a function's environment, its memory) for one sandbox cgroup."""
    pids = [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]
    usage_file = cgroup / "memory.current"
    if not usage_file.exists():
        usage_file = cgroup / "memory.usage_in_bytes"
    return is_environment(pids), process_memory(pids, int(usage_file.read_text()))


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (the server's: its zygotes, exec-path launchers)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def idle_python_floor() -> Memory:
    process = subprocess.Popen(["/usr/bin/python3", "-c", "import time; time.sleep(600)"])
    try:
        time.sleep(0.5)
        return process_memory([process.pid])
    finally:
        process.terminate()
        process.wait()


def row(case: str, samples: list[Memory], floor: Memory) -> str:
    def median(values: list[int]) -> float:
        return statistics.median(values) / MIB

    pss = median([m.pss for m in samples])
    return (
        f"| {case} | {pss:.2f} | {max(m.pss for m in samples) / MIB:.2f} | "
        f"{median([m.uss for m in samples]):.2f} | {median([m.rss for m in samples]):.2f} | "
        f"{median([m.cgroup for m in samples]):.2f} | {samples[0].processes} | {len(samples)} | "
        f"{pss / (floor.pss / MIB):.2f}x |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 functions: a smoke run")
    parser.add_argument("--functions", type=int, help="idle environments to measure (20)")
    parser.add_argument("--settle-s", type=float, default=2.0, help="idle time before reading")
    args = parser.parse_args(argv)
    count = args.functions or quick_or(args, 20, 5)

    header(f"Density, {count} idle python environments (bench/density.py)")
    floor = idle_python_floor()
    with ember_server() as server:
        for name in (f"idle-{i}" for i in range(count)):
            server.create_function(name)
            server.call("POST", f"/2015-03-31/functions/{name}/invocations", b"{}")
        time.sleep(args.settle_s)
        measured = [sandbox_memory(cgroup) for cgroup in server.sandbox_cgroups()]
        zygotes = [process_memory([pid]) for pid in children(server.process.pid)]
        ember = process_memory([server.process.pid])
    environments = [m for is_env, m in measured if is_env]
    pooled = [m for is_env, m in measured if not is_env]
    print("| case | PSS MiB (median) | PSS MiB (max) | USS MiB | RSS MiB | cgroup usage MiB "
          "| processes | n | PSS / floor |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(row("floor: idle `/usr/bin/python3` (fresh interpreter)", [floor], floor))
    if environments:
        print(row("idle python environment (hello, invoked once)", environments, floor))
    if pooled:
        print(row("warm pool: pre-started sandbox, not specialised", pooled, floor))
    print(row("fixed: the `ember serve` process", [ember], floor))
    if zygotes:
        print(row("fixed: zygote (environments are forked from it)", zygotes, floor))
    print(f"\nload average after the run: {load_average()}")
    if environments:
        pss = statistics.median(m.pss for m in environments) / MIB
        met = "met" if pss <= TARGET_MIB else "NOT met"
        print(f"target (PSS <= {TARGET_MIB:g} MiB per idle python environment): {met} "
              f"({pss:.2f} MiB)")  # fmt: skip


if __name__ == "__main__":
    main()
