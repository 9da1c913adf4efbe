"""The benchmark scripts still import and parse their command line (nothing is timed).

The benchmarks run by hand only (docs/BENCHMARKS.md); this keeps them from rotting
between runs: every ``bench/*.py`` imports, and each script's ``--help`` exits 0.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py") if p.stem not in ("common", "client"))


def test_every_script_is_listed() -> None:
    assert {"cold_start", "warm_latency", "throughput", "burst", "density"} <= set(SCRIPTS)
    assert {"profile_warm", "floor_server", "esm_throughput", "cprofile_hook"} <= set(SCRIPTS)


def test_helpers_import_and_keep_boto3_on_loopback() -> None:
    importlib.import_module("bench.client")
    importlib.import_module("bench.common")
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_parses_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module(f"bench.{name}")
    if name == "cprofile_hook":  # a wrapper, not argparse: prints its usage line
        module.main(["--help"])
        assert "python -m bench.cprofile_hook" in capsys.readouterr().out
        return
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out
