"""Sandbox backends by name, imported lazily (so ``import ember`` imports no backend)."""

from __future__ import annotations

import importlib

from ember.errors import InvalidParameterValueException
from ember.sandbox.base import SandboxBackend
from ember.settings import Settings

# backend name => "module:factory"; a factory takes Settings and returns a SandboxBackend
BACKENDS = {
    "namespace": "ember.sandbox.namespace:from_settings",
    "process": "ember.sandbox.process:from_settings",
}


def create_backend(settings: Settings) -> SandboxBackend:
    """The backend named in ``settings.sandbox_backend``."""
    target = BACKENDS.get(settings.sandbox_backend)
    if target is None:
        names = ", ".join(sorted(BACKENDS))
        raise InvalidParameterValueException(
            f"unknown sandbox backend {settings.sandbox_backend!r}; known: {names}"
        )
    module_name, factory_name = target.split(":")
    factory = getattr(importlib.import_module(module_name), factory_name)
    backend: SandboxBackend = factory(settings)
    return backend
