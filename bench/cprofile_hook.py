"""Run a module under a cProfile that signals switch on and off (used by ``profile_warm``).

    python -m bench.cprofile_hook OUT.prof -m ember.cli.main serve ...

Runs the module as ``__main__`` (as ``python -m`` would) with a profiler that records
nothing until ``SIGUSR1``; ``SIGUSR2`` stops it and writes the stats to ``OUT.prof``. So
only the measured window is profiled: no imports, start-up, warm-up or shutdown, which
``python -m cProfile`` would mix in. Profiles the main thread only (where Ember's event
loop runs); worker threads (``asyncio.to_thread``, aiosqlite) are not in it.
"""

from __future__ import annotations

import cProfile
import runpy
import signal
import sys
from pathlib import Path
from types import FrameType


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or args[1] != "-m" or args[0] in ("-h", "--help"):
        print("usage: " + __doc__.strip().splitlines()[2].strip())
        return
    out, module = args[0], args[2]
    profiler = cProfile.Profile()

    def start(_signum: int, _frame: FrameType | None) -> None:
        profiler.enable()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(out + ".part")
        Path(out + ".part").replace(out)  # the reader waits for ``out``: never half-written

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = [module, *args[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
