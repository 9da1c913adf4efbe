"""The runtime catalogue: which Lambda runtimes this machine can run, and how to start them.

Python runtimes need a concrete interpreter of that version. They are found on the
machine (``/usr/bin/python3.X``, ``/usr/local/bin``, pyenv's ``versions/3.X.*``) and
always started by their real path with isolation flags, never through a shim. Custom
runtimes (``provided.*``) run the function's own ``bootstrap`` and are always available.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ember.runtimes.python import runtime_argv

PYTHON_RUNTIMES = ("python3.11", "python3.12", "python3.13", "python3.14")
CUSTOM_RUNTIMES = ("provided.al2023", "provided.al2")


@dataclass(frozen=True, slots=True)
class Runtime:
    """One installed runtime. ``interpreter`` is None for custom runtimes."""

    identifier: str
    interpreter: str | None

    @property
    def family(self) -> str:
        return "provided" if self.identifier.startswith("provided") else "python"

    @property
    def execution_env(self) -> str | None:
        """``AWS_EXECUTION_ENV``: not set by Lambda for custom runtimes."""
        return None if self.family == "provided" else f"AWS_Lambda_{self.identifier}"

    @property
    def version_label(self) -> str:
        """What INIT_START shows as ``Runtime Version``."""
        name = self.identifier.replace("python", "python:").replace("provided.", "provided:")
        return f"{name}.v1"

    def host_paths(self) -> tuple[Path, ...]:
        """Host directories the runtime needs inside a sandbox besides ``/usr``."""
        if self.interpreter is None or self.interpreter.startswith("/usr/"):
            return ()
        return (Path(self.interpreter).parent.parent,)  # the installation prefix

    def argv(self, task_root: str, opt_root: str, runtime_dir: str) -> list[str]:
        """The runtime command, as seen inside the sandbox."""
        if self.interpreter is not None:
            return runtime_argv(self.interpreter, runtime_dir)
        bootstrap = Path(task_root) / "bootstrap"
        if not bootstrap.exists() and (Path(opt_root) / "bootstrap").exists():
            bootstrap = Path(opt_root) / "bootstrap"
        return [str(bootstrap)]


class RuntimeCatalogue:
    """Installed runtimes by identifier. Scope: one per server; immutable."""

    def __init__(self, runtimes: Iterable[Runtime]) -> None:
        self._runtimes = {r.identifier: r for r in runtimes}  # identifier => runtime

    @classmethod
    def discover(
        cls, overrides: Mapping[str, str], search_roots: Iterable[Path] | None = None
    ) -> RuntimeCatalogue:
        """Find interpreters on this machine; ``overrides`` maps identifier => path."""
        roots = list(search_roots) if search_roots is not None else default_search_roots()
        found = [Runtime(ident, None) for ident in CUSTOM_RUNTIMES]
        for identifier in PYTHON_RUNTIMES:
            path = overrides.get(identifier) or find_python(identifier[len("python") :], roots)
            if path:
                found.append(Runtime(identifier, path))
        return cls(found)

    def get(self, identifier: str) -> Runtime | None:
        return self._runtimes.get(identifier)

    def identifiers(self) -> list[str]:
        return sorted(self._runtimes)


def default_search_roots() -> list[Path]:
    roots = [Path("/usr/bin"), Path("/usr/local/bin")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    versions = pyenv_root / "versions"
    if versions.is_dir():
        roots += [v / "bin" for v in sorted(versions.iterdir(), key=_version_key, reverse=True)]
    return roots


def find_python(version: str, roots: Iterable[Path]) -> str | None:
    """The first real ``python<version>`` in ``roots`` (symlinks resolved)."""
    for root in roots:
        in_pyenv = root.parent.parent.name == "versions"
        if in_pyenv and not root.parent.name.startswith(version + "."):
            continue  # a pyenv version dir of another minor version
        candidate = root / f"python{version}"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate.resolve())
    return None


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.name)[:3])
