"""The runtime catalogue: which Lambda runtimes this machine can run, and how to start them.

Python runtimes need a concrete interpreter of that version. They are found on the
machine (``/usr/bin/python3.X``, ``/usr/local/bin``, pyenv's ``versions/3.X.*``) and
always started by their real path with isolation flags, never through a shim. Custom
runtimes (``provided.*``) run the function's own ``bootstrap`` and are always available.
Node.js runtimes (``nodejs20.x``, ``nodejs22.x``) need a ``node`` of that major version
(``/usr/bin``, ``/usr/local/bin``, nvm's ``versions/node/v*``; each candidate asked
``node --version`` once, at discovery); they run Ember's JavaScript client
(``runtimes/nodejs``).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ember.runtimes import nodejs
from ember.runtimes.python import runtime_argv

PYTHON_RUNTIMES = ("python3.11", "python3.12", "python3.13", "python3.14")
CUSTOM_RUNTIMES = ("provided.al2023", "provided.al2")
# identifier => node major. Not nodejs24.x: AWS's client for it drops the callback style,
# which this client (that of 20.x and 22.x) keeps.
NODE_RUNTIMES = {"nodejs20.x": 20, "nodejs22.x": 22}
NODE_VERSION_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Runtime:
    """One installed runtime. ``interpreter`` is None for custom runtimes."""

    identifier: str
    interpreter: str | None

    @property
    def family(self) -> str:
        """``provided``, ``python`` or ``nodejs``."""
        for family in ("provided", "nodejs"):
            if self.identifier.startswith(family):
                return family
        return "python"

    @property
    def python_interpreter(self) -> str | None:
        """The interpreter when it is a Python one (the sandbox's pre-warming hint)."""
        return self.interpreter if self.family == "python" else None

    @property
    def client_dir(self) -> Path | None:
        """The host directory of the runtime client a sandbox shows at ``/var/runtime``
        instead of the Python one (None: the Python client, or none needed)."""
        return Path(nodejs.RUNTIME_DIR) if self.family == "nodejs" else None

    def unreserved_env(self, task_root: str, opt_root: str, runtime_dir: str) -> dict[str, str]:
        """Variables Lambda sets for this runtime that a function may override."""
        if self.family != "nodejs":
            return {}
        major = NODE_RUNTIMES[self.identifier]
        paths = [f"{opt_root}/nodejs/node{major}/node_modules", f"{opt_root}/nodejs/node_modules",
                 f"{runtime_dir}/node_modules", runtime_dir, task_root]  # fmt: skip
        return {"NODE_PATH": ":".join(paths)}

    @property
    def execution_env(self) -> str | None:
        """``AWS_EXECUTION_ENV``: not set by Lambda for custom runtimes."""
        return None if self.family == "provided" else f"AWS_Lambda_{self.identifier}"

    @property
    def version_label(self) -> str:
        """What INIT_START shows as ``Runtime Version``."""
        name = self.identifier.replace("python", "python:").replace("provided.", "provided:")
        name = name.replace("nodejs", "nodejs:").removesuffix(".x")
        return f"{name}.v1"

    def host_paths(self) -> tuple[Path, ...]:
        """Host directories the runtime needs inside a sandbox besides ``/usr``."""
        if self.interpreter is None or self.interpreter.startswith("/usr/"):
            return ()
        return (Path(self.interpreter).parent.parent,)  # the installation prefix

    def argv(
        self, task_root: str, opt_root: str, runtime_dir: str, memory_mb: int = 128
    ) -> list[str]:
        """The runtime command, as seen inside the sandbox."""
        if self.interpreter is not None and self.family == "nodejs":
            return nodejs.runtime_argv(self.interpreter, runtime_dir, memory_mb)
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
        nodes = find_nodes(roots if search_roots is not None else node_search_roots())
        for identifier, major in NODE_RUNTIMES.items():
            path = overrides.get(identifier) or nodes.get(major)
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


def node_search_roots() -> list[Path]:
    roots = [Path("/usr/bin"), Path("/usr/local/bin")]
    nvm_dir = Path(os.environ.get("NVM_DIR", Path.home() / ".nvm")) / "versions" / "node"
    if nvm_dir.is_dir():
        roots += [v / "bin" for v in sorted(nvm_dir.iterdir(), key=_version_key, reverse=True)]
    return roots


def find_nodes(roots: Iterable[Path]) -> dict[int, str]:
    """Major version => the first real ``node`` of that version in ``roots``."""
    found: dict[int, str] = {}
    seen: set[str] = set()
    for root in roots:
        candidate = root / "node"
        if not (candidate.is_file() and os.access(candidate, os.X_OK)):
            continue
        real = str(candidate.resolve())
        if real in seen:
            continue
        seen.add(real)
        major = node_major(real)
        if major is not None:
            found.setdefault(major, real)
    return found


def node_major(node: str) -> int | None:
    """The major version ``node --version`` reports (None if it does not run)."""
    try:
        result = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=NODE_VERSION_TIMEOUT_S,
            env={"PATH": "/usr/bin:/bin"}, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.fullmatch(r"v(\d+)\.\d+\.\d+\S*", result.stdout.strip())
    return int(match.group(1)) if result.returncode == 0 and match else None
