"""Metrics in Prometheus's text format, named after Lambda's CloudWatch metrics.

Counters and histograms are recorded by the invoker as invocations end; gauges (concurrent
executions, environments by state) are read from the services' ``statistics()`` when
``/metrics`` is scraped. Everything lives in a registry of its own (no global state).

Scope: one per server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                    10, 30, 60, 300, 900)  # fmt: skip
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Gauges = Callable[[], dict[tuple[str, ...], float]]  # label values => value


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.invocations = Counter(
            "ember_invocations", "Invocations, by function", ["function"], registry=self.registry
        )
        self.errors = Counter(
            "ember_errors",
            "Invocations that ended in a function or runtime error, by function and type",
            ["function", "error_type"],
            registry=self.registry,
        )
        self.throttles = Counter(
            "ember_throttles", "Invocations refused with a 429, by function", ["function"],
            registry=self.registry,
        )  # fmt: skip
        self.duration = Histogram(
            "ember_duration_seconds", "Invocation duration (REPORT's Duration)", ["function"],
            buckets=DURATION_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.init_duration = Histogram(
            "ember_init_duration_seconds", "Init duration of new environments", ["function"],
            buckets=DURATION_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.async_events = Counter(
            "ember_async_events", "Async events by function and outcome (accepted, Success, "
            "RetriesExhausted, EventAgeExceeded, ZeroReservedConcurrency, throttled, retried, "
            "discarded)", ["function", "outcome"], registry=self.registry,
        )  # fmt: skip
        self._children: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
        self.starts = Counter(
            "ember_starts", "How invocations started: cold, prewarmed, warm or provisioned",
            ["function", "kind"], registry=self.registry,
        )  # fmt: skip

    def invoked(self, function: str, kind: str, duration_s: float) -> None:
        """One invocation ended: its count, duration and start kind (the children of each
        label set are looked up once, then kept: ``labels()`` is the costly part)."""
        children = self._children.get((function, kind))
        if children is None:
            children = self._children[(function, kind)] = (
                self.invocations.labels(function),
                self.duration.labels(function),
                self.starts.labels(function, kind),
            )
        invocations, duration, starts = children
        invocations.inc()
        duration.observe(duration_s)
        starts.inc()

    def add_gauges(self, name: str, documentation: str, labels: list[str], read: Gauges) -> None:
        """A gauge family read at scrape time: ``read()[label values] = value``."""
        self.registry.register(_ScrapeTimeGauges(name, documentation, labels, read))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ScrapeTimeGauges(Collector):
    def __init__(self, name: str, documentation: str, labels: list[str], read: Gauges) -> None:
        self._name, self._documentation, self._labels, self._read = (
            name,
            documentation,
            labels,
            read,
        )

    def collect(self) -> Iterator[Any]:
        family = GaugeMetricFamily(self._name, self._documentation, labels=self._labels)
        for values, value in self._read().items():
            family.add_metric(list(values), value)
        yield family
