"""Frozen settings, parsed once from the command line and the environment.

Only the composition root (``app.py``) and the CLI build a ``Settings``; nothing below
them reads ``os.environ``. Every field has an embedded default, so ``ember serve`` needs
no configuration file.

Environment variables (all optional):

    EMBER_ACCESS_KEY_ID / EMBER_SECRET_ACCESS_KEY   admin credentials for SigV4
    EMBER_REGION, EMBER_ACCOUNT_ID                  identity used in ARNs
    EMBER_SANDBOX                                   sandbox backend name
    EMBER_KEEP_ALIVE_SECONDS                        idle environment lifetime
    EMBER_ACCOUNT_CONCURRENCY                       the account's concurrency limit (1000)
    EMBER_PYTHON_INTERPRETERS                       "python3.12=/path/python3.12,..."
    EMBER_AGENT_PYTHON                              interpreter that runs the in-sandbox agent
    EMBER_SANDBOX_ZYGOTE                            "0" turns pre-warmed (fork) starts off
    EMBER_SANDBOX_POOL_SIZE                         pre-started sandboxes, shared by the
                                                    Python versions in use, at least 3 each
                                                    (default: 4 % of MemTotal at ~9 MB
                                                    each, 3..128); node slots and growth
                                                    after a burst come on top
    EMBER_SANDBOX_NODE_POOL_SIZE                    pooled sandboxes with node started (1)
    EMBER_SANDBOX_POOL_MAX                          what a pool may grow to after a burst
    EMBER_SANDBOX_PREFAULT                          what pooled sandboxes pre-fault: off,
                                                    working-set (default), full
    EMBER_ASYNC_RETRY_DELAYS                        seconds before async retries ("60,120")
    EMBER_ASYNC_BACKOFF_INITIAL_SECONDS             first throttle/platform back-off (1)
    EMBER_ASYNC_BACKOFF_MAX_SECONDS                 longest such back-off (300)
    EMBER_ASYNC_EVENT_AGE_SCALE                     seconds per MaximumEventAgeInSeconds
                                                    second (1; tests make it small)
    EMBER_ASYNC_WORKERS                             async events in flight in all (64)
    EMBER_ASYNC_FUNCTION_IN_FLIGHT                  async events in flight per function (16)
    EMBER_ASYNC_PAYLOAD_LIMIT                       bytes of an Event payload (1048576)
    EMBER_MEMORY_BUDGET_MB                          MB the live environments may hold in all
                                                    (default: 75 % of the machine's MemTotal)
    EMBER_MEMORY_WAIT_SECONDS                       how long an invoke waits for memory (5)
    EMBER_SANDBOX_POOL_MIN_AVAILABLE_MB             warm pool refills pause below this much
                                                    MemAvailable (default 512)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

MEMORY_BUDGET_SHARE = 0.75  # of MemTotal: the rest is left to the server, zygotes, page cache
FALLBACK_MEMORY_BUDGET_MB = 2048  # when /proc/meminfo cannot be read
# The warm pools' default size: a server's first burst is served from pre-started sandboxes
# (a start from the pool costs a third of the CPU of one pre-started on demand: issue 4's
# burst, docs/BENCHMARKS.md). Each holds its pre-faulted working set, about 9 MB (PSS).
POOL_MEMORY_SHARE = 0.04
POOLED_SANDBOX_MB = 9
POOL_SIZE_RANGE = (3, 128)


def meminfo_mb(name: str, path: Path = Path("/proc/meminfo")) -> int | None:
    """A ``/proc/meminfo`` field (``MemTotal``, ``MemAvailable``) in MB, or None."""
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(":")
            if key == name:
                return int(value.split()[0]) // 1024  # the file says kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def default_pool_size() -> int:
    """Pre-started sandboxes that hold ``POOL_MEMORY_SHARE`` of the machine's MemTotal when
    the pools are full (``POOLED_SANDBOX_MB`` each), within ``POOL_SIZE_RANGE``."""
    total = meminfo_mb("MemTotal")
    low, high = POOL_SIZE_RANGE
    if not total:
        return low
    return max(low, min(high, int(total * POOL_MEMORY_SHARE / POOLED_SANDBOX_MB)))


def default_memory_budget_mb() -> int:
    """``MEMORY_BUDGET_SHARE`` of the machine's MemTotal."""
    total = meminfo_mb("MemTotal")
    return int(total * MEMORY_BUDGET_SHARE) if total else FALLBACK_MEMORY_BUDGET_MB


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 9000
    data_dir: Path = Path(".ember")
    region: str = "us-east-1"
    account_id: str = "000000000000"
    auth_enabled: bool = True
    access_key_id: str | None = None
    secret_access_key: str | None = None
    sandbox_backend: str = "namespace"
    account_concurrency: int = 1000  # Lambda's default per account and region
    keep_alive_s: float = 300.0  # an idle environment is stopped after this long
    reap_interval_s: float = 5.0  # how often idle environments are looked at
    init_timeout_s: float = 10.0  # Lambda's on-demand init limit
    shutdown_grace_s: float = 30.0  # in-flight requests may finish this long after SIGTERM
    # runtime identifier => interpreter path; empty = discover on this machine
    python_interpreters: Mapping[str, str] = field(default_factory=dict)
    agent_python: str = field(default_factory=lambda: sys.executable)
    # namespace backend: start sandboxes from pre-warmed zygotes (fork) rather than exec
    sandbox_zygote: bool = True
    # pre-started, not yet specialised sandboxes in all, shared among the zygotes in use
    sandbox_pool_size: int = field(default_factory=default_pool_size)
    # node slots: pooled sandboxes whose Node.js runtime is started ahead (0 = none)
    sandbox_node_pool_size: int = 1
    # after a burst of N starts a pool aims for N pre-started sandboxes (at most this) for a
    # minute (sandbox/pool_demand.py); at or below sandbox_pool_size (or a size of 0): no growth
    sandbox_pool_max: int = 128
    # what pooled sandboxes pre-fault (break copy-on-write) ahead of use: "off", "working-set"
    # (the pages the zygote's first start wrote), "full" (every private page)
    sandbox_prefault: str = "working-set"
    # the sum of MemorySize of live environments (and those being started) stays within this
    memory_budget_mb: int = field(default_factory=default_memory_budget_mb)
    memory_wait_s: float = 5.0  # an invoke with no room waits this long, then gets a 429
    sandbox_pool_min_available_mb: int = 512  # warm pool refills pause below this MemAvailable
    routing_seed: int | None = None  # seeds weighted alias routing (tests); None = random
    # asynchronous invocation (Lambda's timings by default)
    async_retry_delays_s: tuple[float, ...] = (60.0, 120.0)
    async_backoff_initial_s: float = 1.0
    async_backoff_max_s: float = 300.0
    async_event_age_scale: float = 1.0
    async_workers: int = 64
    async_function_in_flight: int = 16
    async_payload_limit: int = 1024 * 1024

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from ``EMBER_*`` variables, then explicit overrides (CLI flags) on top."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        if "EMBER_ACCESS_KEY_ID" in env:
            values["access_key_id"] = env["EMBER_ACCESS_KEY_ID"]
        if "EMBER_SECRET_ACCESS_KEY" in env:
            values["secret_access_key"] = env["EMBER_SECRET_ACCESS_KEY"]
        for key, name in (("EMBER_REGION", "region"), ("EMBER_ACCOUNT_ID", "account_id")):
            if key in env:
                values[name] = env[key]
        if "EMBER_SANDBOX" in env:
            values["sandbox_backend"] = env["EMBER_SANDBOX"]
        if "EMBER_SANDBOX_ZYGOTE" in env:
            values["sandbox_zygote"] = env["EMBER_SANDBOX_ZYGOTE"].strip().lower() not in (
                "0",
                "false",
                "no",
                "off",
            )
        if "EMBER_SANDBOX_PREFAULT" in env:
            values["sandbox_prefault"] = _prefault_mode(env["EMBER_SANDBOX_PREFAULT"])
        for key, (name, parse) in NUMBERS.items():
            if key in env:
                values[name] = parse(env[key])
        if "EMBER_AGENT_PYTHON" in env:
            values["agent_python"] = env["EMBER_AGENT_PYTHON"]
        values.update(_async_values(env))
        if env.get("EMBER_PYTHON_INTERPRETERS"):
            values["python_interpreters"] = _parse_pairs(env["EMBER_PYTHON_INTERPRETERS"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]  # keys are field names by construction


def _async_values(env: Mapping[str, str]) -> dict[str, object]:
    values: dict[str, object] = {}
    if env.get("EMBER_ASYNC_RETRY_DELAYS"):
        delays = tuple(float(v) for v in env["EMBER_ASYNC_RETRY_DELAYS"].split(",") if v.strip())
        values["async_retry_delays_s"] = delays
    floats = (
        ("EMBER_ASYNC_BACKOFF_INITIAL_SECONDS", "async_backoff_initial_s"),
        ("EMBER_ASYNC_BACKOFF_MAX_SECONDS", "async_backoff_max_s"),
        ("EMBER_ASYNC_EVENT_AGE_SCALE", "async_event_age_scale"),
    )
    for key, name in floats:
        if key in env:
            values[name] = float(env[key])
    ints = (
        ("EMBER_ASYNC_WORKERS", "async_workers"),
        ("EMBER_ASYNC_FUNCTION_IN_FLIGHT", "async_function_in_flight"),
        ("EMBER_ASYNC_PAYLOAD_LIMIT", "async_payload_limit"),
    )
    for key, name in ints:
        if key in env:
            values[name] = int(env[key])
    return values


# numeric variables: name => (field, parser)
NUMBERS: dict[str, tuple[str, Callable[[str], object]]] = {
    "EMBER_ACCOUNT_CONCURRENCY": ("account_concurrency", int),
    "EMBER_KEEP_ALIVE_SECONDS": ("keep_alive_s", float),
    "EMBER_SANDBOX_POOL_SIZE": ("sandbox_pool_size", int),
    "EMBER_SANDBOX_NODE_POOL_SIZE": ("sandbox_node_pool_size", int),
    "EMBER_SANDBOX_POOL_MAX": ("sandbox_pool_max", int),
    "EMBER_MEMORY_BUDGET_MB": ("memory_budget_mb", int),
    "EMBER_MEMORY_WAIT_SECONDS": ("memory_wait_s", float),
    "EMBER_SANDBOX_POOL_MIN_AVAILABLE_MB": ("sandbox_pool_min_available_mb", int),
    "EMBER_ROUTING_SEED": ("routing_seed", int),
}


def _parse_pairs(text: str) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in text.split(",") if item.strip())
    return {key.strip(): value.strip() for key, value in pairs}


def _prefault_mode(value: str) -> str:
    """``EMBER_SANDBOX_PREFAULT``: a mode, or a boolean (true = full, false = off)."""
    mode = value.strip().lower()
    mode = {"1": "full", "true": "full", "0": "off", "false": "off"}.get(mode, mode)
    if mode not in ("off", "working-set", "full"):
        raise ValueError(f"EMBER_SANDBOX_PREFAULT must be off, working-set or full, not {value!r}")
    return mode
