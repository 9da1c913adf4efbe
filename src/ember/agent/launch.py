"""How the host starts an agent (imported on the host side; stdlib only)."""

from __future__ import annotations

from pathlib import Path

# Runs under ``-I -S``: nothing on sys.path but the standard library until it adds the
# source root (argv[1]) so that ``ember.agent`` imports without site-packages.
BOOT_CODE = "import sys; sys.path.insert(0, sys.argv[1]); from ember.agent.main import main; main()"


def source_root() -> Path:
    """The directory holding the ``ember`` package, on the host."""
    return Path(__file__).resolve().parents[2]


def agent_argv(python: str, channel_fd: int, src_root: str | None = None) -> list[str]:
    """The agent's command line; the host passes ``channel_fd`` via ``pass_fds``.

    ``python`` should be a concrete interpreter path (not a pyenv shim). ``src_root`` is
    the directory holding the ``ember`` package as the agent will see it (default: this
    file's location on the host; a sandbox mounts it elsewhere).
    """
    src_root = src_root or str(source_root())
    return [python, "-I", "-S", "-c", BOOT_CODE, src_root, "--channel-fd", str(channel_fd)]
