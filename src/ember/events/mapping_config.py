"""Event source mappings as data: the record, its wire shape, and request validation.

Pure (no I/O). Rules follow lambda-spec.md §6.2 for SQS sources: BatchSize 1-10000
(default 10; above 10 needs MaximumBatchingWindowInSeconds ≥ 1), window 0-300 (default
0), FunctionResponseTypes ⊆ {ReportBatchItemFailures}, ScalingConfig.MaximumConcurrency
2-1000. Range violations are ``ValidationException`` in AWS's words; meaning problems are
``InvalidParameterValueException``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from ember.errors import InvalidParameterValueException
from ember.model.arns import validation_error, violation

REPORT_BATCH_ITEM_FAILURES = "ReportBatchItemFailures"
STREAM_ONLY = (
    "StartingPosition",
    "StartingPositionTimestamp",
    "ParallelizationFactor",
    "BisectBatchOnFunctionError",
    "MaximumRetryAttempts",
    "MaximumRecordAgeInSeconds",
    "TumblingWindowInSeconds",
    "DestinationConfig",
)
UNSUPPORTED = ("FilterCriteria", "KMSKeyArn", "MetricsConfig", "ProvisionedPollerConfig")


@dataclass(frozen=True, slots=True)
class MappingConfig:
    """One mapping. ``state`` is Lambda's: Creating, Enabling, Enabled, Updating,
    Disabling, Disabled, Deleting."""

    uuid: str
    mapping_arn: str
    function_name: str
    function_arn: str
    event_source_arn: str
    queue: str
    batch_size: int = 10
    window_s: int = 0
    enabled: bool = True
    response_types: tuple[str, ...] = ()
    max_concurrency: int | None = None
    state: str = "Creating"
    last_modified: float = 0.0
    last_result: str = "No records processed"

    @property
    def report_failures(self) -> bool:
        return REPORT_BATCH_ITEM_FAILURES in self.response_types

    def with_state(self, state: str) -> MappingConfig:
        return replace(self, state=state)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["response_types"] = list(self.response_types)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MappingConfig:
        return cls(**{**data, "response_types": tuple(data.get("response_types", ()))})

    def to_wire(self) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "UUID": self.uuid,
            "BatchSize": self.batch_size,
            "MaximumBatchingWindowInSeconds": self.window_s,
            "EventSourceArn": self.event_source_arn,
            "FunctionArn": self.function_arn,
            "LastModified": self.last_modified,
            "LastProcessingResult": self.last_result,
            "State": self.state,
            "StateTransitionReason": "USER_INITIATED",
            "FunctionResponseTypes": list(self.response_types),
            "EventSourceMappingArn": self.mapping_arn,
        }
        if self.max_concurrency is not None:
            shape["ScalingConfig"] = {"MaximumConcurrency": self.max_concurrency}
        return shape


def apply_settings(config: MappingConfig, body: dict[str, Any]) -> MappingConfig:
    """The mapping with ``body``'s settable fields applied and checked together."""
    for name in STREAM_ONLY:
        if name in body:
            raise InvalidParameterValueException(
                f"Unsupported parameter for SQS event sources: {name}"
            )
    for name in UNSUPPORTED:
        if body.get(name):
            raise InvalidParameterValueException(
                f"{name} is not supported by Ember's event source mappings yet."
            )
    batch_size = _integer(body, "BatchSize", "batchSize", 1, 10000, config.batch_size)
    window = _integer(
        body,
        "MaximumBatchingWindowInSeconds",
        "maximumBatchingWindowInSeconds",
        0,
        300,
        config.window_s,
    )
    if batch_size > 10 and window < 1:
        raise InvalidParameterValueException(
            "Maximum batch window in seconds must be greater than 0 if maximum batch size "
            "is greater than 10"
        )
    return replace(
        config,
        batch_size=batch_size,
        window_s=window,
        enabled=_boolean(body, "Enabled", config.enabled),
        response_types=_response_types(body, config.response_types),
        max_concurrency=_scaling(body, config.max_concurrency),
    )


def _integer(body: dict[str, Any], key: str, field: str, low: int, high: int, default: int) -> int:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidParameterValueException(f"{key} must be an integer.")
    if value < low:
        raise validation_error(
            [violation(value, field, f"Member must have value greater than or equal to {low}")]
        )
    if value > high:
        raise validation_error(
            [violation(value, field, f"Member must have value less than or equal to {high}")]
        )
    return value


def _boolean(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidParameterValueException(f"{key} must be a boolean.")
    return value


def _response_types(body: dict[str, Any], default: tuple[str, ...]) -> tuple[str, ...]:
    value = body.get("FunctionResponseTypes")
    if value is None:
        return default
    if not isinstance(value, list) or any(v != REPORT_BATCH_ITEM_FAILURES for v in value):
        raise validation_error(
            [
                violation(
                    value,
                    "functionResponseTypes",
                    "Member must satisfy enum value set: [ReportBatchItemFailures]",
                )
            ]
        )
    return tuple(dict.fromkeys(value))


def _scaling(body: dict[str, Any], default: int | None) -> int | None:
    scaling = body.get("ScalingConfig")
    if scaling is None:
        return default
    if not isinstance(scaling, dict):
        raise InvalidParameterValueException("ScalingConfig must be an object.")
    value = scaling.get("MaximumConcurrency")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 2 <= value <= 1000:
        raise validation_error(
            [
                violation(
                    value,
                    "scalingConfig.maximumConcurrency",
                    "Member must have value between 2 and 1000",
                )
            ]
        )
    return value
