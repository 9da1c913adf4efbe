"""A provisioned concurrency configuration: pure data (PutProvisionedConcurrencyConfig).

One per (function, qualifier); the qualifier is a published version number or an alias
name, never ``$LATEST``. ``last_modified`` is wall-clock seconds (rendered as Lambda's
ISO-8601 timestamp at the edge).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProvisionedConfig:
    function_name: str
    qualifier: str
    requested: int
    last_modified: float

    @property
    def key(self) -> tuple[str, str]:
        return (self.function_name, self.qualifier)
