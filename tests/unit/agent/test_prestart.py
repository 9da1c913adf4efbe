"""Whether a pre-started runtime may stand for a START (``agent/prestart.py``)."""

from __future__ import annotations

import os
import subprocess

from ember.agent import prestart
from ember.agent.prestart import PrestartedRuntime

ARGV = ["/usr/bin/node", "--max-old-space-size=115", "/var/runtime/index.mjs"]
STARTED_WITH = {"TZ": ":UTC", "NODE_PATH": "/opt/nodejs/node_modules"}
MATCH = ("TZ", "NODE_PATH", "NODE_OPTIONS")


def prestarted(pid: int = -1) -> PrestartedRuntime:
    """One standing for a process ``pid`` (-1: none, nothing to kill)."""
    fds = [fd for pair in (os.pipe(), os.pipe()) for fd in pair]
    for fd in fds[1::2]:
        os.close(fd)
    return PrestartedRuntime(pid, os.dup(fds[0]), fds[0], fds[2], tuple(ARGV), STARTED_WITH, MATCH)


def test_it_stands_for_the_same_command_and_startup_variables() -> None:
    runtime = prestarted()
    function_env = {**STARTED_WITH, "_HANDLER": "index.handler", "AWS_REGION": "x"}
    assert runtime.stands_for(ARGV, function_env)
    assert not runtime.stands_for([*ARGV[:1], "--max-old-space-size=231", ARGV[2]], function_env)
    assert not runtime.stands_for(ARGV, {**function_env, "NODE_OPTIONS": "--no-deprecation"})
    assert not runtime.stands_for(ARGV, {**function_env, "TZ": "Europe/Paris"})
    assert not runtime.stands_for(ARGV, {"TZ": ":UTC"})  # NODE_PATH absent: not the same
    runtime.discard()


def test_take_hands_it_out_once_and_discards_it_for_another_start() -> None:
    prestart.enable(prestarted())
    taken = prestart.take(ARGV, STARTED_WITH)
    assert taken is not None
    assert prestart.take(ARGV, STARTED_WITH) is None  # once
    taken.discard()
    with subprocess.Popen(["sleep", "60"]) as sleeper:
        prestart.enable(prestarted(sleeper.pid))
        assert prestart.take(ARGV, {**STARTED_WITH, "NODE_OPTIONS": "-r x"}) is None
        assert sleeper.wait(timeout=30) == -9  # killed: the START execs afresh
