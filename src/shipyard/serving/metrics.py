"""Prometheus metrics of one server: requests, latency, batching, queue wait, in-flight, model loads, online learning,
and the evaluation layer's: prediction latency per model version, drift and live accuracy, per-worker resources.

With several workers, ``shipyard serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before they start: every
worker then writes its values to files there, and ``/metrics`` on any worker reports the sum of all.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from shipyard.scoring.batcher import BatchStats

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from shipyard.evaluation.drift import FeatureDrift
    from shipyard.monitoring.live import LiveMonitor
    from shipyard.monitoring.predlog import PredictionLogger
    from shipyard.service import ModelService
    from shipyard.serving.repository import ServedModel
    from shipyard.serving.settings import ServeSettings

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
        self.prediction_seconds = Histogram(
            "shipyard_prediction_seconds",
            "Time from request to answer of successful predictions, by model and version.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_memory = Gauge(
            "shipyard_model_memory_bytes",
            "Growth of the process's resident memory while a model version was loaded and warmed up.",
            ["model", "version"],
            registry=self.registry,
            multiprocess_mode="max",
        )
        # Labelled by pid: with several workers prometheus_client adds the label itself ("liveall": every live
        # worker's value, a dead worker's dropped) and strips any of our own; alone, the label is ours.
        self._own_pid_label = not os.environ.get(MULTIPROCESS_ENV)
        pid_label = ["pid"] if self._own_pid_label else []
        self.cpu_seconds = Gauge(
            "shipyard_process_cpu_seconds",
            "CPU seconds (user + system) used by each worker process.",
            pid_label,
            registry=self.registry,
            multiprocess_mode="liveall",
        )
        self.rss_bytes = Gauge(
            "shipyard_process_rss_bytes",
            "Resident memory of each worker process.",
            pid_label,
            registry=self.registry,
            multiprocess_mode="liveall",
        )
        self.log_dropped = Counter(
            "shipyard_prediction_log_dropped",
            "Predictions the prediction log dropped because its buffer was full or their write failed.",
            registry=self.registry,
        )
        self.log_failed_writes = Counter(
            "shipyard_prediction_log_failed_writes",
            "Writes of the prediction log that failed (a full disk, a database down); their rows count as dropped.",
            registry=self.registry,
        )
        self.drift_psi = Gauge(
            "shipyard_feature_drift_psi",
            "Population stability index of a feature (or prediction) over the live window against the reference.",
            ["model", "version", "feature"],
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.drift_alert = Gauge(
            "shipyard_feature_drift_alert",
            "1 while a feature's drift verdict over the live window is 'alert', else 0.",
            ["model", "version", "feature"],
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.live_accuracy = Gauge(
            "shipyard_live_accuracy",
            "A quality metric of the served predictions over the live window, from labels joined by request id.",
            ["model", "version", "metric"],
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.shadow_dropped = Counter(
            "shipyard_shadow_dropped",
            "Copies of answered requests dropped because a model's shadow (or canary comparison) queue was full.",
            ["model"],
            registry=self.registry,
        )
        self.deployment_revision = Gauge(
            "shipyard_deployment_revision",
            "The registry deployment revision this server routes a model by (0: none, the alias is followed).",
            ["model"],
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.connections_refused = Counter(
            "shipyard_connections_refused",
            "Connections refused (429) because their client address already held max_connections_per_client.",
            registry=self.registry,
        )
        self.client_timeouts = Counter(
            "shipyard_client_timeouts",
            "Connections closed because the client did not send a request's head (kind=header) or body "
            "(kind=body) within its deadline.",
            ["kind"],
            registry=self.registry,
        )
        self._request_children: dict[tuple[str, str, str, str], tuple[Any, Any, Any]] = {}
        self._log_dropped_seen = 0
        self._log_failed_seen = 0
        self._resources_lock = threading.Lock()
        self.dropped_source: Callable[[], int] | None = None
        """Reads the prediction log's count of dropped rows (set by the app when logging is on)."""
        self.failed_writes_source: Callable[[], int] | None = None
        """Reads the prediction log's count of failed writes (set with ``dropped_source``)."""

    def observe_request(self, model: str, version: str, route: str, status: str, seconds: float) -> None:
        """Record one answered request (labelled children are cached: ``labels()`` is slow on the hot path).

        A successful request that names a served model version also counts in ``shipyard_prediction_seconds``.
        """
        key = (model, version, route, status)
        children = self._request_children.get(key)
        if children is None:
            predicted = bool(model and version) and status.startswith("2")  # only predictions set a version
            children = (
                self.requests.labels(*key),
                self.latency.labels(route),
                self.prediction_seconds.labels(model, version) if predicted else None,
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if children[2] is not None:
            children[2].observe(seconds)

    def connection_refused(self) -> None:
        """Count a connection refused by the per-client cap (see :mod:`shipyard.serving.limits`)."""
        self.connections_refused.inc()

    def client_timed_out(self, kind: str) -> None:
        """Count a client too slow to send its request's ``kind`` (``header`` or ``body``)."""
        self.client_timeouts.labels(kind).inc()

    def observe_batch(self, model: str, version: int, stats: BatchStats) -> None:
        """Record one model call."""
        labels = (model, str(version))
        self.batch_size.labels(*labels).observe(stats.rows)
        self.queue_wait.labels(*labels).observe(stats.queue_wait_seconds)

    def observe_load(self, model: str, version: int, seconds: float) -> None:
        """Record that a version was loaded."""
        self.load_seconds.labels(model, str(version)).set(seconds)
        self.loaded.inc()

    def observe_served(self, served: ServedModel) -> None:
        """Record that a version was loaded: its load time and the memory it took."""
        self.observe_load(served.name, served.version, served.load_seconds)
        if served.memory_bytes is not None:
            self.model_memory.labels(served.name, str(served.version)).set(served.memory_bytes)

    def observe_resources(self) -> None:
        """Sample this process's CPU seconds and resident memory, and the prediction log's drop count."""
        import psutil

        process = psutil.Process()
        with process.oneshot():
            times = process.cpu_times()
            rss = process.memory_info().rss
        cpu, memory = self.cpu_seconds, self.rss_bytes
        if self._own_pid_label:
            cpu, memory = cpu.labels(str(process.pid)), memory.labels(str(process.pid))
        cpu.set(times.user + times.system)
        memory.set(rss)
        dropped = self.dropped_source() if self.dropped_source is not None else 0
        failed = self.failed_writes_source() if self.failed_writes_source is not None else 0
        with self._resources_lock:  # the live monitor's thread samples too
            if dropped > self._log_dropped_seen:
                self.log_dropped.inc(dropped - self._log_dropped_seen)
                self._log_dropped_seen = dropped
            if failed > self._log_failed_seen:
                self.log_failed_writes.inc(failed - self._log_failed_seen)
                self._log_failed_seen = failed

    def set_drift(self, model: str, version: int, drift: Sequence[FeatureDrift]) -> None:
        """Publish the live monitor's drift of one model version: PSI and alert flag per feature."""
        for d in drift:
            labels = (model, str(version), d.feature)
            if d.psi is not None:
                self.drift_psi.labels(*labels).set(d.psi)
            self.drift_alert.labels(*labels).set(1.0 if d.verdict == "alert" else 0.0)

    def set_accuracy(self, model: str, version: int, metrics: Mapping[str, float]) -> None:
        """Publish the live monitor's accuracy metrics of one model version (accuracy, f1, mae, n...)."""
        for metric, value in metrics.items():
            self.live_accuracy.labels(model, str(version), metric).set(value)

    def render(self) -> bytes:
        """The text exposition format: this process's metrics, or every worker's when they share a directory.

        This process's resources are sampled first; other workers' are as of their live monitor's last check.
        """
        self.observe_resources()
        if os.environ.get(MULTIPROCESS_ENV):
            from prometheus_client import multiprocess

            combined = CollectorRegistry()
            multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(combined))
        return bytes(generate_latest(self.registry))


def live_monitor(
    settings: ServeSettings, service: ModelService, metrics: ServerMetrics, logger: PredictionLogger | None
) -> LiveMonitor | None:
    """The server's live monitor, listening to ``logger`` and publishing to ``metrics`` (start it after a fork).

    ``None`` when monitoring is off or nothing is logged. The log's drop count goes to ``metrics`` either way.
    With several workers the crossings are shared through marker files in the log's folder (posted once).
    """
    if logger is None:
        return None
    metrics.dropped_source = lambda: logger.dropped
    metrics.failed_writes_source = lambda: logger.failed_writes
    config = settings.monitoring
    if not config.enabled:
        return None
    from shipyard.evaluation.drift import DriftThresholds
    from shipyard.monitoring.live import LiveMonitor, registry_profiles
    from shipyard.monitoring.logs import PredictionLog
    from shipyard.monitoring.webhook import SharedCrossings

    postgres = settings.logging.backend == "postgres"
    shared = None
    if settings.workers > 1:  # built before the fork: the workers start with no crossing
        shared = SharedCrossings(logger.root / ".crossings")
        shared.clear()
    monitor = LiveMonitor(
        registry_profiles(service),
        interval_s=config.interval_s,
        window_rows=config.window_rows,
        thresholds=DriftThresholds.from_settings(config),
        webhook_url=config.webhook_url,
        accuracy_alert_below=config.accuracy_alert_below,
        log=PredictionLog(
            None if postgres else logger.root,
            postgres_url=settings.logging.postgres_url if postgres else None,
            sensitive=settings.logging.sensitive,
            hash_personal=settings.logging.hash_personal_columns,
        ),
        gauges=metrics,
        on_tick=metrics.observe_resources,
        crossings=shared,
    )
    logger.add_listener(monitor.listen)
    return monitor
