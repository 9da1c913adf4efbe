"""Settings come from EMBER_* variables, with explicit overrides on top."""

from __future__ import annotations

from pathlib import Path

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
