"""The benchmark scripts still import and parse their command line (nothing is timed).

The benchmarks run by hand only (docs/BENCHMARKS.md); this keeps them from rotting
between runs: the shared helpers import, and every other ``bench/*.py`` answers
``python -m bench.<name> --help`` with exit status 0 and its usage, as a user would run it.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HELPERS = ("common", "client")
SCRIPTS = sorted(p.stem for p in (ROOT / "bench").glob("*.py") if p.stem not in HELPERS)


def test_the_suite_is_there() -> None:
    wanted = {"cold_start", "warm_latency", "throughput", "burst", "density", "profile_warm"}
    assert wanted <= set(SCRIPTS)


def test_helpers_import_and_keep_boto3_on_loopback() -> None:
    for helper in HELPERS:
        importlib.import_module(f"bench.{helper}")
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_answers_help(name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()
