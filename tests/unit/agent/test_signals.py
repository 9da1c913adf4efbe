"""The agent answers ``signal.valid_signals()`` from a set taken once (asyncio asks on every
``add_signal_handler``): the same members, in a new set each time."""

from __future__ import annotations

import signal

from ember.agent.main import _known_valid_signals


def test_the_kept_answer_is_the_standard_librarys() -> None:
    first, second = _known_valid_signals(), _known_valid_signals()
    assert first == signal.valid_signals()
    assert first is not second  # a caller may change its copy
