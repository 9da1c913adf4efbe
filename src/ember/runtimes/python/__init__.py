"""Ember's built-in Python runtime client (stdlib only; see ``bootstrap.py``)."""

from __future__ import annotations

from pathlib import Path

BOOTSTRAP_PATH = str(Path(__file__).resolve().parent / "bootstrap.py")


def runtime_argv(interpreter: str) -> list[str]:
    """The runtime command: ``interpreter`` must be a concrete path, not a pyenv shim."""
    return [interpreter, "-I", "-S", "-u", BOOTSTRAP_PATH]
