"""Ember's built-in Node.js runtime client (JavaScript, node core modules only).

The ``.mjs`` files here are package data: a sandbox mounts this directory read-only at
``/var/runtime`` and runs ``node [flags] /var/runtime/index.mjs`` (see ``index.mjs``).

Pre-started node (``prestart.mjs``): a pooled sandbox may start that same command before
any function is known, with only ``prestart_env``'s variables and ``PRESTART_FD_VAR``
naming a socket; it loads node and the client, then waits there for the START's working
directory and environment. It stands in for a fresh start only when the command is the
same and every variable of ``STARTUP_VARIABLES`` (what node, V8, OpenSSL and the dynamic
loader read once, at process start) has the same value (or is absent) in both.
"""

from __future__ import annotations

from pathlib import Path

RUNTIME_DIR = str(Path(__file__).resolve().parent)
ENTRY_POINT = "index.mjs"


PRESTART_FD_VAR = "_EMBER_PRESTART_FD"  # in a pre-started node's environment only
PRESTART_FD = 3
# Read at process start (by node, V8, OpenSSL, glibc's loader and locale): a pre-started node
# is equivalent to a fresh one only if these are the same in the function's environment.
STARTUP_VARIABLES = (
    "NODE_OPTIONS", "NODE_PATH", "NODE_EXTRA_CA_CERTS", "NODE_ICU_DATA", "NODE_DEBUG",
    "NODE_DEBUG_NATIVE", "NODE_PRESERVE_SYMLINKS", "NODE_REDIRECT_WARNINGS", "NODE_NO_WARNINGS",
    "NODE_PENDING_DEPRECATION", "NODE_V8_COVERAGE", "NODE_COMPILE_CACHE",
    "NODE_DISABLE_COMPILE_CACHE", "NODE_TLS_REJECT_UNAUTHORIZED", "NODE_SKIP_PLATFORM_CHECK",
    "NODE_UNIQUE_ID", "NODE_CHANNEL_FD", "NODE_TEST_CONTEXT", "UV_THREADPOOL_SIZE",
    "UV_USE_IO_URING", "OPENSSL_CONF", "OPENSSL_MODULES", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "LD_LIBRARY_PATH", "LD_PRELOAD", "LD_BIND_NOW", "GLIBC_TUNABLES", "MALLOC_ARENA_MAX",
    "FORCE_COLOR", "NO_COLOR", "NODE_DISABLE_COLORS", "TZ", "LANG", "LANGUAGE", "LC_ALL",
    "LC_CTYPE", "LC_MESSAGES", "HOME",
    # node 22.21+/24 read the proxy settings once at start when NODE_USE_ENV_PROXY is set
    "NODE_USE_ENV_PROXY", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
    "no_proxy", "NODE_USE_SYSTEM_CA",
    "AWS_LAMBDA_EXEC_WRAPPER",
)  # fmt: skip


def prestart_env(env: dict[str, str]) -> dict[str, str]:
    """What a pre-started node is started with, for a function whose environment would be
    ``env``: its startup variables, nothing else (the rest comes at the hand-off)."""
    return {key: env[key] for key in STARTUP_VARIABLES if key in env}


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
