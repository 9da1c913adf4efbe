"""Imports point one way (DESIGN.md, docs/ARCHITECTURE.md):

    cli.serve → app → api → events → control, invocation → sandbox (base), runtimes, store,
      observe
      → model, errors, clock, settings, sigv4

The agent and the runtime clients import nothing from the server side; the CLI's client
commands talk HTTP only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "ember"

# package (first component under ember) => packages it may import
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "clock": set(),
    "settings": set(),
    "sigv4": {"errors"},
    "testing": {"clock", "agent"},
    "model": {"errors"},
    "agent": {"agent"},
    "runtimes": {"runtimes"},
    "store": {"store", "model", "errors"},
    "observe": {"observe", "store", "model", "errors", "clock"},
    "sandbox": {"sandbox", "agent", "errors", "settings", "runtimes"},
    "invocation": {
        "invocation",
        "sandbox",
        "runtimes",
        "store",
        "observe",
        "model",
        "errors",
        "clock",
        "agent",
    },
    "control": {"control", "store", "model", "errors", "clock", "runtimes"},
    "events": {
        "events",
        "invocation",
        "control",
        "store",
        "observe",
        "model",
        "errors",
        "clock",
    },
    "api": {
        "api",
        "events",
        "control",
        "invocation",
        "store",
        "observe",
        "model",
        "errors",
        "clock",
        "sigv4",
    },
    "app": {
        "api",
        "events",
        "control",
        "invocation",
        "sandbox",
        "runtimes",
        "store",
        "observe",
        "model",
        "errors",
        "clock",
        "settings",
    },
    "cli": {"cli", "sigv4", "settings", "app"},
}
# Only these sandbox modules may be imported from outside the sandbox package.
SANDBOX_PUBLIC = {"ember.sandbox.base", "ember.sandbox.registry"}


def _ember_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ember"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ember"):
            found.add(node.module)
    return found


def _package(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


MODULES = sorted(p for p in SRC.rglob("*.py") if p.name != "__init__.py" or p.parent != SRC)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_one_way(path: Path) -> None:
    package = _package(path)
    allowed = ALLOWED[package] | {package}
    for module in _ember_imports(path):
        target = module.split(".")[1] if module.count(".") else "ember"
        assert target in allowed, f"{path.relative_to(SRC)} imports {module}"
        if target == "sandbox" and package not in ("sandbox", "app"):
            assert module in SANDBOX_PUBLIC, f"{path.relative_to(SRC)} imports {module}"


def test_cli_client_commands_talk_http_only() -> None:
    for name in ("logs.py", "main.py"):
        for module in _ember_imports(SRC / "cli" / name):
            assert module.split(".")[1] in {"cli", "sigv4"}, f"cli/{name} imports {module}"
