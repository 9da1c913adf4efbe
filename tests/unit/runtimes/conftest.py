"""Fixtures for runtime tests: each runtime runs under the real agent."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = str(Path(__file__).resolve().parents[3])
if REPO_ROOT not in sys.path:  # so that ``tests.unit…`` imports under a plain ``pytest``
    sys.path.insert(0, REPO_ROOT)

from tests.unit.agent.agent_harness import start_agent, task_root  # noqa: E402 - path first

__all__ = ["start_agent", "task_root"]
