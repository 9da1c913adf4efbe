"""Event source mapping settings: defaults, ranges and combinations (lambda-spec.md §6.2)."""

from __future__ import annotations

from typing import Any

import pytest

from ember.errors import InvalidParameterValueException, ValidationException
from ember.events.mapping_config import MappingConfig, apply_settings

BASE = MappingConfig(
    uuid="u",
    mapping_arn="arn",
    function_name="f",
    function_arn="farn",
    event_source_arn="qarn",
    queue="q",
)


def test_defaults_and_round_trip() -> None:
    mapping = apply_settings(BASE, {})
    assert (mapping.batch_size, mapping.window_s, mapping.enabled) == (10, 0, True)
    assert MappingConfig.from_json(mapping.to_json()) == mapping
    wire = apply_settings(BASE, {"ScalingConfig": {"MaximumConcurrency": 3}}).to_wire()
    assert wire["ScalingConfig"] == {"MaximumConcurrency": 3}
    assert wire["StateTransitionReason"] == "USER_INITIATED"


def test_settings_apply() -> None:
    mapping = apply_settings(
        BASE,
        {
            "BatchSize": 100,
            "MaximumBatchingWindowInSeconds": 2,
            "Enabled": False,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        },
    )
    assert (mapping.batch_size, mapping.window_s, mapping.enabled) == (100, 2, False)
    assert mapping.report_failures


@pytest.mark.parametrize(
    ("body", "error", "text"),
    [
        ({"BatchSize": 0}, ValidationException, "greater than or equal to 1"),
        ({"BatchSize": 10001}, ValidationException, "less than or equal to 10000"),
        ({"BatchSize": 11}, InvalidParameterValueException, "batch window"),
        ({"MaximumBatchingWindowInSeconds": 301}, ValidationException, "300"),
        ({"FunctionResponseTypes": ["Other"]}, ValidationException, "ReportBatchItemFailures"),
        ({"ScalingConfig": {"MaximumConcurrency": 1}}, ValidationException, "between 2 and 1000"),
        ({"StartingPosition": "LATEST"}, InvalidParameterValueException, "StartingPosition"),
        ({"FilterCriteria": {"Filters": [{}]}}, InvalidParameterValueException, "FilterCriteria"),
        ({"Enabled": "yes"}, InvalidParameterValueException, "Enabled"),
    ],
)
def test_bad_settings(body: dict[str, Any], error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        apply_settings(BASE, body)
