"""The catalogue's Node.js runtimes: discovery by ``node --version``, command, variables."""

from __future__ import annotations

import stat
from pathlib import Path

from ember.runtimes import nodejs
from ember.runtimes.catalogue import Runtime, RuntimeCatalogue, find_nodes


def fake_node(directory: Path, version: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    node = directory / "node"
    node.write_text(f"#!/bin/sh\necho {version}\n")
    node.chmod(node.stat().st_mode | stat.S_IXUSR)
    return node


def test_find_nodes_by_major_version_first_root_wins(tmp_path: Path) -> None:
    first = fake_node(tmp_path / "a", "v20.11.1")
    fake_node(tmp_path / "b", "v20.1.0")
    newer = fake_node(tmp_path / "c", "v22.3.0")
    fake_node(tmp_path / "d", "not-a-version")
    roots = [tmp_path / name for name in ("a", "b", "c", "d", "missing")]
    assert find_nodes(roots) == {20: str(first), 22: str(newer)}


def test_discover_registers_only_the_majors_found(tmp_path: Path) -> None:
    fake_node(tmp_path / "bin", "v22.0.0")
    catalogue = RuntimeCatalogue.discover({}, search_roots=[tmp_path / "bin"])
    assert catalogue.get("nodejs22.x") == Runtime("nodejs22.x", str(tmp_path / "bin" / "node"))
    assert catalogue.get("nodejs20.x") is None
    overridden = RuntimeCatalogue.discover({"nodejs20.x": "/opt/n/bin/node"}, search_roots=[])
    assert overridden.get("nodejs20.x") == Runtime("nodejs20.x", "/opt/n/bin/node")


def test_node_runtime_command_environment_and_client() -> None:
    runtime = Runtime("nodejs20.x", "/usr/bin/node")
    assert runtime.family == "nodejs"
    assert runtime.execution_env == "AWS_Lambda_nodejs20.x"
    assert runtime.version_label == "nodejs:20.v1"
    assert runtime.python_interpreter is None  # never a Python zygote's interpreter
    assert runtime.client_dir == Path(nodejs.RUNTIME_DIR)
    assert runtime.host_paths() == ()
    assert runtime.argv("/var/task", "/opt", "/var/runtime", 128) == [
        "/usr/bin/node", "--expose-gc", "--max-http-header-size", "81920",
        "--max-semi-space-size=6", "--max-old-space-size=116", "/var/runtime/index.mjs",
    ]  # fmt: skip
    assert runtime.unreserved_env("/var/task", "/opt", "/var/runtime") == {
        "NODE_PATH": "/opt/nodejs/node20/node_modules:/opt/nodejs/node_modules:"
        "/var/runtime/node_modules:/var/runtime:/var/task"
    }


def test_python_runtime_is_unchanged() -> None:
    runtime = Runtime("python3.12", "/usr/bin/python3.12")
    assert runtime.python_interpreter == "/usr/bin/python3.12"
    assert runtime.client_dir is None
    assert runtime.unreserved_env("/var/task", "/opt", "/var/runtime") == {}
    assert runtime.version_label == "python:3.12.v1"
