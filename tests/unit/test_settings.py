"""Settings come from EMBER_* variables, with explicit overrides on top."""

from __future__ import annotations

from pathlib import Path

import pytest

from ember import settings
from ember.settings import Settings


def test_defaults_need_no_configuration() -> None:
    settings = Settings.from_env({})
    assert (settings.host, settings.port, settings.region) == ("127.0.0.1", 9000, "us-east-1")
    assert settings.account_id == "000000000000"
    assert settings.account_concurrency == 1000
    assert settings.sandbox_backend == "namespace"


def test_environment_then_overrides() -> None:
    env = {
        "EMBER_ACCOUNT_CONCURRENCY": "50",
        "EMBER_REGION": "eu-west-1",
        "EMBER_PYTHON_INTERPRETERS": "python3.12=/opt/py312/bin/python3.12",
    }
    settings = Settings.from_env(env, data_dir=Path("/data"), port=None)
    assert settings.account_concurrency == 50
    assert settings.region == "eu-west-1"
    assert settings.python_interpreters == {"python3.12": "/opt/py312/bin/python3.12"}
    assert settings.data_dir == Path("/data")
    assert settings.port == 9000  # a None override keeps the default


def test_async_timings_default_to_lambdas_and_can_be_shortened() -> None:
    defaults = Settings.from_env({})
    assert defaults.async_retry_delays_s == (60.0, 120.0)
    assert (defaults.async_backoff_initial_s, defaults.async_backoff_max_s) == (1.0, 300.0)
    assert defaults.async_payload_limit == 1048576
    env = {
        "EMBER_ASYNC_RETRY_DELAYS": "0.3, 0.6",
        "EMBER_ASYNC_BACKOFF_INITIAL_SECONDS": "0.1",
        "EMBER_ASYNC_EVENT_AGE_SCALE": "0.01",
        "EMBER_ASYNC_FUNCTION_IN_FLIGHT": "4",
    }
    settings = Settings.from_env(env)
    assert settings.async_retry_delays_s == (0.3, 0.6)
    assert settings.async_backoff_initial_s == 0.1
    assert settings.async_event_age_scale == 0.01
    assert settings.async_function_in_flight == 4


def test_the_pool_size_defaults_to_a_share_of_the_machines_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """4 % of MemTotal at 9 MB a pooled sandbox, at least 3 and at most 128; 3 when
    /proc/meminfo cannot be read; the variable overrides it."""
    totals: dict[str, int | None] = {"MemTotal": 24_000}
    monkeypatch.setattr(settings, "meminfo_mb", lambda name: totals[name])
    assert Settings().sandbox_pool_size == 106  # 24,000 MB * 0.04 / 9
    totals["MemTotal"] = 512
    assert Settings().sandbox_pool_size == 3
    totals["MemTotal"] = 256_000
    assert Settings().sandbox_pool_size == 128
    totals["MemTotal"] = None
    assert Settings().sandbox_pool_size == 3
    configured = Settings.from_env({"EMBER_SANDBOX_POOL_SIZE": "7"})
    assert configured.sandbox_pool_size == 7
