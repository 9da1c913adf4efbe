"""Ember's built-in Node.js runtime client (JavaScript, node core modules only).

The ``.mjs`` files here are package data: a sandbox mounts this directory read-only at
``/var/runtime`` and runs ``node [flags] /var/runtime/index.mjs`` (see ``index.mjs``).
"""

from __future__ import annotations

from pathlib import Path

RUNTIME_DIR = str(Path(__file__).resolve().parent)
ENTRY_POINT = "index.mjs"


def memory_flags(memory_mb: int) -> list[str]:
    """V8 heap limits from the function's memory, as Lambda's node bootstrap sets them:
    a tenth for the young generation (half of it per semi-space), the rest for the old."""
    new_space = memory_mb // 10
    return [
        f"--max-semi-space-size={new_space // 2}",
        f"--max-old-space-size={memory_mb - new_space}",
    ]


def runtime_argv(node: str, runtime_dir: str = RUNTIME_DIR, memory_mb: int = 128) -> list[str]:
    """The runtime command; ``runtime_dir`` is this directory as the runtime sees it."""
    return [
        node,
        "--expose-gc",
        "--max-http-header-size",
        "81920",
        *memory_flags(memory_mb),
        f"{runtime_dir}/{ENTRY_POINT}",
    ]
