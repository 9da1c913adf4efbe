"""``ember serve``: build the platform (``ember.app``) and serve it with uvicorn.

SIGINT/SIGTERM stop uvicorn gracefully; then every environment is stopped and the store
closed before the process exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn
import uvloop

from ember.app import Ember
from ember.settings import Settings

log = logging.getLogger("ember")


def serve(args: argparse.Namespace) -> int:
    settings = Settings.from_env(
        host=args.host,
        port=args.port,
        data_dir=Path(args.data_dir),
        auth_enabled=not args.no_auth,
        sandbox_backend=args.sandbox,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    uvloop.run(_serve(settings))
    return 0


async def _serve(settings: Settings) -> None:
    listener = socket.create_server((settings.host, settings.port), backlog=1024)
    ember = await Ember.open(settings)
    try:
        _announce(ember, listener.getsockname()[1])
        config = uvicorn.Config(
            ember.app,
            http="httptools",
            lifespan="off",
            access_log=False,
            proxy_headers=False,  # Ember is the edge: no X-Forwarded-* rewriting per request
            server_header=False,  # Lambda's endpoint sends no "server: uvicorn"
            log_level="warning",
            # idle keep-alive connections stay open longer than clients' pools keep them
            # (uvicorn's 5 s default races botocore reusing a connection just closed)
            timeout_keep_alive=75,
            timeout_graceful_shutdown=int(settings.shutdown_grace_s) or None,
        )
        server = _Server(config, ember.begin_shutdown)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.request_exit)
        await server.serve(sockets=[listener])
    finally:
        await ember.close()
        listener.close()
        log.info("stopped")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling.

    uvicorn re-raises a captured SIGTERM once it has stopped, which would end the process
    before Ember stops its environments; Ember installs its handlers on the loop instead.
    """

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def request_exit(self) -> None:
        log.info("shutting down: in-flight requests get up to the graceful-shutdown time")
        self._on_exit()
        self.should_exit = True


def _announce(ember: Ember, port: int) -> None:
    settings = ember.settings
    if ember.backend.name == "process":
        log.warning("!" * 78)
        log.warning(ember.backend.describe())
        log.warning("!" * 78)
    else:
        log.info("isolation: %s", ember.backend.describe())
    unapplied: list[str] = getattr(ember.backend, "unapplied_limits", list)()
    for limit in unapplied:  # rootless: what the sandbox cannot enforce here, said aloud
        log.warning("isolation: NOT applied: %s", limit)
    if not settings.auth_enabled:
        log.warning("authentication is OFF (--no-auth): any local process can use this API")
    credentials = ember.credentials
    if credentials.generated:
        path = settings.data_dir.resolve() / "credentials"
        print(
            f"Generated admin credentials in {path} (shown once):\n"
            f"  aws configure set aws_access_key_id {credentials.access_key_id}\n"
            f"  aws configure set aws_secret_access_key {credentials.secret_access_key}\n"
            f"  aws configure set region {settings.region}",
            file=sys.stderr,
            flush=True,
        )
    url = f"http://{settings.host}:{port}"
    log.info("Ember listening on %s (data in %s)", url, settings.data_dir)
