"""Prometheus metrics of one server: requests, latency, batching, queue wait, in-flight, model loads, online learning.

With several workers, ``shipyard serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before they start: every
worker then writes its values to files there, and ``/metrics`` on any worker reports the sum of all.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from shipyard.scoring.batcher import BatchStats

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServerMetrics:
    """The metric families of one server, on their own registry (so several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "shipyard_requests",
            "HTTP requests by model, version, route and status.",
            ["model", "version", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "shipyard_request_seconds",
            "Time from request to response, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "shipyard_in_flight_requests",
            "Requests being handled.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.batch_size = Histogram(
            "shipyard_batch_rows",
            "Rows per model call after micro-batching.",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "shipyard_queue_wait_seconds",
            "Time a request waited for its batch to start.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.load_seconds = Gauge(
            "shipyard_model_load_seconds",
            "Seconds to load and warm up a model version.",
            ["model", "version"],
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.loaded = Gauge(
            "shipyard_loaded_models",
            "Model versions loaded (summed over live workers).",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.online_metric = Gauge(
            "shipyard_online_rolling_metric",
            "Rolling metric of an online model's learner on the feedback it learnt from.",
            ["model", "metric"],
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.online_events = Counter(
            "shipyard_online_events",
            "Feedback events accepted (stored durably).",
            ["model"],
            registry=self.registry,
        )
        self.online_pending = Gauge(
            "shipyard_online_pending_events",
            "Feedback events stored but not learnt yet.",
            ["model"],
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.online_snapshots = Gauge(
            "shipyard_online_snapshots_total",
            "Snapshots the online learner registered since this server started.",
            ["model"],
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self._request_children: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}

    def observe_request(self, model: str, version: str, route: str, status: str, seconds: float) -> None:
        """Record one answered request (labelled children are cached: ``labels()`` is slow on the hot path)."""
        key = (model, version, route, status)
        children = self._request_children.get(key)
        if children is None:
            children = (self.requests.labels(*key), self.latency.labels(route))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_batch(self, model: str, version: int, stats: BatchStats) -> None:
        """Record one model call."""
        labels = (model, str(version))
        self.batch_size.labels(*labels).observe(stats.rows)
        self.queue_wait.labels(*labels).observe(stats.queue_wait_seconds)

    def observe_load(self, model: str, version: int, seconds: float) -> None:
        """Record that a version was loaded."""
        self.load_seconds.labels(model, str(version)).set(seconds)
        self.loaded.inc()

    def render(self) -> bytes:
        """The text exposition format: this process's metrics, or every worker's when they share a directory."""
        if os.environ.get(MULTIPROCESS_ENV):
            from prometheus_client import multiprocess

            combined = CollectorRegistry()
            multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(combined))
        return bytes(generate_latest(self.registry))
