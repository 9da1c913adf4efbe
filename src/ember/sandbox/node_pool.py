"""Node slots: pooled sandboxes whose Node.js runtime is already started (host side).

A node cold start costs node's own start (~50 ms) on top of the sandbox; a node slot
pays it ahead (``node_slot.py`` starts it inside the pooled sandbox, ``agent/prestart.py``
hands it the START). Scope: one per namespace backend; created lazily, so a server that
never starts a Node.js function pays nothing.

Policy: one pool of ``size`` slots (``EMBER_SANDBOX_NODE_POOL_SIZE``, default 1; 0 = off),
keyed by what its node was started as: the command (node, heap flags of one MemorySize)
and the startup variables (``SandboxSpec.runtime_prestart``). A start with another key
finds no slot (it starts as before) and re-keys the pool to itself, discarding the
waiting slots: the pool follows the most recently started node configuration. A slot
counts as ready once its pid 1 said its node is up (not merely forked). The
alternative, a pool per MemorySize, would keep ~50 MB of idle node per size ever seen;
bursts, where cold starts cluster, are of one function, hence one key. Starts that may
not use a slot (``runtime_prestart`` None: the function sets NODE_OPTIONS or another
startup variable) leave the pool alone. Node slots turn themselves off after
``MAX_FAILED_SLOTS`` slots in a row whose node did not come up. The agent checks again at
START and execs the runtime afresh when the slot's node could not be equivalent.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from ember.runtimes import nodejs
from ember.sandbox.base import SandboxSpec
from ember.sandbox.warm_pool import Prepared, WarmPool

if TYPE_CHECKING:
    from ember.sandbox.namespace import NamespaceBackend
    from ember.sandbox.zygote import Zygote

log = logging.getLogger("ember")
READY = b"N"  # what a node slot's pid 1 sends once its node waits (= node_slot.READY)
NODE_READY_TIMEOUT_S = 15.0
MAX_FAILED_SLOTS = 3  # slots in a row whose node did not come up: node slots off


class NodeSlots:
    """The backend's node slots. Invariant: at most one pool, keyed by ``_key``."""

    def __init__(
        self, backend: NamespaceBackend, size: int, paths: tuple[str, str, str], seccomp: bytes
    ) -> None:
        self._backend = backend
        self._size = size
        self._paths = paths  # task root, opt root, runtime dir as sandboxes show them
        self._seccomp = seccomp.hex()
        self._pool: WarmPool | None = None
        self._key = ""
        self._retired: set[asyncio.Task[None]] = set()
        self._failures = 0  # slots in a row whose node did not come up
        self.handed_out = 0  # slots taken by starts (statistics, tests)

    def config_for(self, spec: SandboxSpec) -> dict[str, Any] | None:
        """The launcher config's ``node_prestart`` for ``spec``; None when it has none."""
        if spec.runtime_prestart is None or spec.runtime_client is None:
            return None
        argv, env = spec.runtime_prestart(*self._paths)
        binds = [[str(spec.runtime_client), self._paths[2]]]
        binds += [[str(path), str(path)] for path in spec.read_only_paths]
        match = list(nodejs.STARTUP_VARIABLES)
        return {"argv": argv, "env": env, "match": match, "binds": binds, "seccomp": self._seccomp}

    def take(self, spec: SandboxSpec, zygote: Zygote) -> Prepared | None:
        """A waiting slot started as ``spec``'s runtime would be, if any (see the module
        doc for what a start of another configuration does to the pool)."""
        if self._size <= 0 or self._failures >= MAX_FAILED_SLOTS:
            return None
        config = self.config_for(spec)
        if config is None:
            return None
        key = json.dumps([zygote.interpreter, config], sort_keys=True)
        if self._pool is None or key != self._key:
            self._rekey(key, config, zygote)
            return None
        assert self._pool is not None
        prepared = self._pool.take_ready()
        if prepared is not None:
            self.handed_out += 1
        return prepared

    def _rekey(self, key: str, config: dict[str, Any], zygote: Zygote) -> None:
        if self._pool is not None:
            self._retire(self._pool)
        self._key = key
        extra = {"node_prestart": config, "warm": False}
        self._pool = WarmPool(
            self._backend,
            zygote,
            extra_config=extra,
            size=self._size,
            ready_wait=self._node_started,
        )
        self._pool.refill_later()
        log.info("cold starts: node slots now pre-start %s", " ".join(config["argv"]))

    async def _node_started(self, prepared: Prepared) -> bool:
        """Wait for a slot's pid 1 to say its node is up (``node_slot.READY``); after
        ``MAX_FAILED_SLOTS`` failures in a row, node slots are off for good."""
        control = prepared.control
        control.setblocking(False)
        try:
            loop = asyncio.get_running_loop()
            answer = await asyncio.wait_for(loop.sock_recv(control, 1), NODE_READY_TIMEOUT_S)
        except (OSError, TimeoutError):
            answer = b""
        finally:
            control.setblocking(True)
        if answer == READY:
            self._failures = 0
            return True
        self._failures += 1
        if self._failures == MAX_FAILED_SLOTS:
            log.error(
                "cold starts: node slots off: node did not start in %d in a row", self._failures
            )
        return False

    def _retire(self, pool: WarmPool) -> None:
        task = asyncio.get_running_loop().create_task(pool.close())
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    def statistics(self) -> dict[str, int]:
        pool = self._pool
        return {
            "ready": pool.ready if pool is not None else 0,
            "refilling": int(pool is not None and pool.refilling),
            "memory_low": int(pool is not None and pool.low_memory_seen),
            "handed_out": self.handed_out,
            "target": pool.target if pool is not None and self._failures < MAX_FAILED_SLOTS else 0,
        }

    async def close(self) -> None:
        if self._pool is not None:
            self._retire(self._pool)
            self._pool = None
        await asyncio.gather(*self._retired, return_exceptions=True)
