"""The cgroup files Ember writes and reads, v1 and v2, against a stand-in hierarchy.

The test machines have cgroup v1 only, so the v2 path is checked here file by file (what
is written where, what is read back); the kernel's side of v2 is not exercised.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ember.sandbox import cgroups
from ember.sandbox.cgroups import Cgroup, PeakReader


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(cgroups, "ROOT", tmp_path)
    return tmp_path


def test_v2_is_recognised_by_its_controllers_file(root: Path) -> None:
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    assert cgroups.version() == 2
    (root / "cgroup.controllers").write_text("cpuset io\n")
    assert cgroups.version() is None  # v2 without the controllers Ember needs


def test_v1_is_recognised_by_its_controller_directories(root: Path) -> None:
    for controller in ("memory", "pids", "cpu"):
        (root / controller).mkdir()
    assert cgroups.version() == 1


def test_v2_limits_for_a_1769_mb_function(root: Path) -> None:
    cgroup = Cgroup("sbx", 2)
    cgroup.create(1769)
    directory = root / "ember" / "sbx"
    assert (root / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
    assert (root / "ember" / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
    assert (directory / "pids.max").read_text() == "1024"
    assert (directory / "memory.max").read_text() == str(1769 * 1024 * 1024)
    assert (directory / "memory.swap.max").read_text() == "0"
    assert (directory / "cpu.weight").read_text() == "102"  # one vCPU: 1024 shares / 10
    assert cgroup.procs_files() == [str(directory / "cgroup.procs")]
    assert cgroups.leftover_names(2) == {"sbx"}


def test_v2_readings_peak_and_oom_kills(root: Path) -> None:
    cgroup = Cgroup("sbx", 2)
    cgroup.create(128)
    directory = root / "ember" / "sbx"
    (directory / "memory.peak").write_text("52428800\n")
    (directory / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert cgroup.memory_peak_bytes() == 52428800
    assert cgroup.oom_kills() == 1
    reader = PeakReader(cgroup)
    assert reader.read() == 52428800
    (directory / "memory.peak").write_text("62914560\n")
    assert reader.read() == 62914560  # the same descriptor, read again from offset 0
    reader.close()
    assert reader.read() is None


def test_v1_limits_and_readings(root: Path) -> None:
    cgroup = Cgroup("sbx", 1)
    cgroup.create(128)
    memory, pids, cpu = (root / c / "ember" / "sbx" for c in ("memory", "pids", "cpu"))
    assert (memory / "memory.limit_in_bytes").read_text() == str(128 * 1024 * 1024)
    assert (memory / "memory.memsw.limit_in_bytes").read_text() == str(128 * 1024 * 1024)
    assert (pids / "pids.max").read_text() == "1024"
    assert (cpu / "cpu.shares").read_text() == "74"
    (memory / "memory.max_usage_in_bytes").write_text("1048576\n")
    (memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert cgroup.memory_peak_bytes() == 1048576
    assert cgroup.oom_kills() == 2


@pytest.mark.parametrize(
    ("v", "name", "idle", "function"), [(1, "cpu.shares", "2", "74"), (2, "cpu.weight", "1", "7")]
)
def test_a_pooled_sandbox_waits_at_the_smallest_cpu_share_until_specialised(
    root: Path, v: int, name: str, idle: str, function: str
) -> None:
    cgroup = Cgroup("sbx", v)
    cgroup.create_dirs(idle=True)  # a refill's pre-started sandbox: it must not compete
    cpu = root / "ember" / "sbx" if v == 2 else root / "cpu" / "ember" / "sbx"
    assert (cpu / name).read_text() == idle
    cgroup.set_limits(128)  # taken by a start of a 128 MB function
    assert (cpu / name).read_text() == function
