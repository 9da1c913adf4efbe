"""Ember's built-in Python runtime client (stdlib only; see ``bootstrap.py``)."""

from __future__ import annotations

from pathlib import Path

RUNTIME_DIR = str(Path(__file__).resolve().parent)
BOOTSTRAP_PATH = str(Path(RUNTIME_DIR) / "bootstrap.py")


def runtime_argv(interpreter: str, runtime_dir: str = RUNTIME_DIR) -> list[str]:
    """The runtime command: ``interpreter`` must be a concrete path, not a pyenv shim.

    ``runtime_dir`` is this directory as the runtime sees it (a sandbox mounts it at
    ``/var/runtime``).
    """
    return [interpreter, "-I", "-S", "-u", f"{runtime_dir}/bootstrap.py"]
