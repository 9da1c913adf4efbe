"""Entry point of Ember's Python runtime client (stdlib only; see ``ember_ric``).

Run as ``python -I -S -u bootstrap.py [handler]`` with the Lambda environment
(``_HANDLER``, ``LAMBDA_TASK_ROOT``, ``AWS_LAMBDA_RUNTIME_API``, ...). A pre-warmed process
can call ``preload()`` once and then ``main()`` in each forked child.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType


def preload() -> ModuleType:
    """Import the client (``ember_ric``, next to this file) without importing Ember."""
    here = os.path.dirname(os.path.abspath(__file__))  # noqa: PTH100, PTH120 - no pathlib
    if here not in sys.path:
        sys.path.append(here)  # after the standard library; the task root goes first later
    return importlib.import_module("ember_ric.bootstrap")


def main() -> None:
    """Serve invocations until the process is killed (exits 1 on an init error)."""
    preload().main()


if __name__ == "__main__":
    main()
