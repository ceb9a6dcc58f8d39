"""The live monitor in the server: drift and accuracy over a sliding window of logged predictions, and alerts.

The prediction logger hands every flushed table of predictions to :meth:`LiveMonitor.listen` (from its
writer thread); the monitor keeps the last ``window_rows`` rows per model version. Every ``interval_s``
its own thread (never the event loop) compares each window that changed with the version's reference
profile, joins feedback labels from the log for live accuracy, sets the gauges and posts an alert to the
webhook once per threshold crossing (:class:`~shipyard.monitoring.webhook.Crossings`).

With several workers each worker monitors the predictions it served itself (its gauges), and the crossings
are shared through marker files (:class:`~shipyard.monitoring.webhook.SharedCrossings`): a crossing is posted once
by whichever worker sees it first, not once per worker.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

from shipyard.monitoring.webhook import Alert, Crossings, post_alert
from shipyard.types import ModelRef

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from shipyard.evaluation.drift import DriftThresholds, FeatureDrift
    from shipyard.monitoring.logs import PredictionLog
    from shipyard.service import ModelService

log = logging.getLogger("shipyard.monitoring")
Key = tuple[str, int]


class MonitorGauges(Protocol):
    """Where the monitor's results go (the server's Prometheus metrics)."""

    def set_drift(self, model: str, version: int, drift: Sequence[FeatureDrift]) -> None: ...

    def set_accuracy(self, model: str, version: int, metrics: Mapping[str, float]) -> None: ...


@dataclass
class LiveStatus:
    """The latest results for one model version."""

    rows: int = 0
    drift: list[FeatureDrift] = field(default_factory=list)
    accuracy: dict[str, Any] = field(default_factory=dict)
    checked_at: str | None = None


class SlidingWindow:
    """The last ``rows`` rows of the Arrow tables appended to it (whole tables are dropped once too old)."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self._tables: deque[pa.Table] = deque()
        self._count = 0
        self.appended = 0
        """Rows appended since the start (tells whether anything changed since the last look)."""

    def append(self, table: pa.Table) -> None:
        self._tables.append(table)
        self._count += table.num_rows
        self.appended += table.num_rows
        while self._tables and self._count - self._tables[0].num_rows >= self.rows:
            self._count -= self._tables.popleft().num_rows

    def oldest(self) -> datetime | None:
        """The time of the oldest row held (``ts`` of the logged rows), or ``None``."""
        import pyarrow.compute as pc

        if not self._tables:
            return None
        value = pc.min(self._tables[0].column("ts")).as_py()
        return value if isinstance(value, datetime) else None

    def table(self) -> pa.Table | None:
        """The window as one table, or ``None`` while empty."""
        import pyarrow as pa

        if not self._tables:
            return None
        table = pa.concat_tables(list(self._tables), promote_options="default")
        return table.slice(max(0, table.num_rows - self.rows))


def live_frame(table: pa.Table) -> pd.DataFrame:
    """A logged predictions table as the frame drift reads: one column per input feature, prediction, probabilities."""
    import pandas as pd

    columns: dict[str, Any] = {}
    if "input" in table.column_names:
        inputs = table.column("input").combine_chunks()
        for index, item in enumerate(inputs.type):
            columns[item.name] = inputs.field(index).to_pandas()
    for name in ("prediction", "probabilities"):
        if name in table.column_names:
            columns[name] = table.column(name).to_pandas()
    return pd.DataFrame(columns)


def registry_profiles(service: ModelService) -> Callable[[str, int], dict[str, Any] | None]:
    """Looks up the reference profile stored with a model version (the monitor's ``profile_of``)."""

    def profile_of(model: str, version: int) -> dict[str, Any] | None:
        info = service.resolve(ModelRef(model, version=version))
        profile: dict[str, Any] | None = getattr(info, "profile", None)
        return profile

    return profile_of


class LiveMonitor:
    """Drift, live accuracy and alerts over a sliding window of each served model version's predictions.

    ``profile_of(model, version)`` gives a version's reference profile (:func:`registry_profiles`);
    ``log`` is read for feedback labels (live accuracy); ``gauges`` receive the results; ``crossings`` says
    which values are over their threshold (shared by workers: :class:`~shipyard.monitoring.webhook.SharedCrossings`).
    """

    def __init__(
        self,
        profile_of: Callable[[str, int], dict[str, Any] | None],
        *,
        interval_s: float = 10.0,
        window_rows: int = 10_000,
        thresholds: DriftThresholds | None = None,
        webhook_url: str | None = None,
        accuracy_alert_below: float | None = None,
        log: PredictionLog | None = None,
        gauges: MonitorGauges | None = None,
        on_tick: Callable[[], None] | None = None,
        crossings: Crossings | None = None,
    ) -> None:
        from shipyard.evaluation.drift import DriftThresholds

        self.profile_of = profile_of
        self.interval_s = interval_s
        self.window_rows = window_rows
        self.thresholds = thresholds or DriftThresholds()
        self.webhook_url = webhook_url
        self.accuracy_alert_below = accuracy_alert_below
        self.log = log
        self.gauges = gauges
        self.on_tick = on_tick
        self.crossings = crossings or Crossings()
        self.status: dict[Key, LiveStatus] = {}
        self.alerts: list[Alert] = []
        """Every alert raised since the start (posted or not), oldest first; the last 1,000."""
        self._windows: dict[Key, SlidingWindow] = {}
        self._checked: dict[Key, int] = {}
        self._profiles: dict[Key, dict[str, Any] | None] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ input
    def listen(self, model: str, version: int, table: pa.Table) -> None:
        """Add a flushed table of logged predictions (the prediction logger's listener; any thread)."""
        with self._lock:
            window = self._windows.get((model, version))
            if window is None:
                window = self._windows[(model, version)] = SlidingWindow(self.window_rows)
            window.append(table)

    # ------------------------------------------------------------------ one pass
    def check(self) -> list[Alert]:
        """Recompute every window that changed, set the gauges, post new alerts; returns the new alerts."""
        if self.on_tick is not None:
            try:
                self.on_tick()
            except Exception:
                log.exception("sampling the process's resources failed")
        alerts: list[Alert] = []
        with self._lock:
            changed = [
                (key, window.table(), window.appended)
                for key, window in self._windows.items()
                if window.appended != self._checked.get(key)
            ]
        for key, table, appended in changed:
            self._checked[key] = appended
            if table is not None:
                alerts.extend(self._check_drift(key, table))
        alerts.extend(self._check_accuracy())
        for alert in alerts:
            self._raise(alert)
        return alerts

    def _profile(self, key: Key) -> dict[str, Any] | None:
        if key not in self._profiles:
            profile = self.profile_of(*key)
            if not profile:
                log.info("%s:%d has no reference profile: no drift is computed for it", *key)
            self._profiles[key] = profile or None
        return self._profiles[key]

    def _check_drift(self, key: Key, table: pa.Table) -> list[Alert]:
        from shipyard.evaluation.drift import drift_report, drift_sentence, drift_threshold

        profile = self._profile(key)
        if profile is None:
            return []
        frame = live_frame(table)
        if self.log is not None:  # hashed or dropped inputs never match the reference: not checked
            frame = frame.drop(columns=[c for c in self.log.unmonitored(key[0], frame.columns) if c in frame.columns])
        drift = drift_report(profile, frame, self.thresholds)
        status = self.status.setdefault(key, LiveStatus())
        status.rows, status.drift, status.checked_at = table.num_rows, drift, _now()
        if self.gauges is not None:
            self.gauges.set_drift(key[0], key[1], drift)
        alerts = []
        for d in drift:
            over = None if d.verdict == "insufficient" else d.verdict == "alert"
            if self.crossings.update(("drift", *key, d.feature), over):
                alerts.append(Alert(
                    key[0], key[1], "drift", d.psi or 0.0, drift_threshold(d, self.thresholds), d.verdict, _now(),
                    feature=d.feature, reason=drift_sentence(d, self.thresholds),
                ))  # fmt: skip
        return alerts

    def _check_accuracy(self) -> list[Alert]:
        if self.log is None:
            return []
        from shipyard.evaluation.accuracy import live_accuracy
        from shipyard.monitoring.monitor import classes_of, task_of

        alerts = []
        oldest: dict[str, datetime] = {}
        with self._lock:
            for (model, _), window in self._windows.items():
                start = window.oldest()
                if start is not None:
                    oldest[model] = min(start, oldest.get(model, start))
        for model, since in sorted(oldest.items()):
            try:  # only the files of the windows' days are read; nothing more without labels
                if self.log.labels(model, since=since).empty:
                    continue
                joined = self.log.joined(model, since=since, last=self.window_rows, inputs=False)
            except Exception:
                log.exception("%s: reading the prediction log for live accuracy failed", model)
                continue
            if joined.empty:
                continue
            for version, rows in joined.groupby("version"):
                key = (model, int(cast(int, version)))
                profile = self._profile(key)
                task = task_of(profile, rows["prediction"])
                observed = [*rows["prediction"].dropna().unique().tolist(), *rows["label"].dropna().unique().tolist()]
                classes = classes_of(profile, observed) if task == "classification" else None
                results = live_accuracy(rows, task=task, classes=classes)
                if not results:
                    continue
                metrics = {k: float(v) for k, v in results[0].items() if k not in ("version", "window_start")}
                status = self.status.setdefault(key, LiveStatus())
                status.accuracy = metrics
                if self.gauges is not None:
                    self.gauges.set_accuracy(model, key[1], metrics)
                alerts.extend(self._accuracy_alert(key, metrics))
        return alerts

    def _accuracy_alert(self, key: Key, metrics: Mapping[str, float]) -> list[Alert]:
        threshold = self.accuracy_alert_below
        value = metrics.get("accuracy")
        if threshold is None or value is None:
            return []
        over = None if metrics.get("n", 0) < self.thresholds.min_samples else value < threshold
        if self.crossings.update(("accuracy", *key, "accuracy"), over):
            return [Alert(key[0], key[1], "accuracy", value, threshold, "alert", _now(), metric="accuracy")]
        return []

    def _raise(self, alert: Alert) -> None:
        log.warning("alert: %s", alert.sentence())
        self.alerts = [*self.alerts[-999:], alert]
        if self.webhook_url and not post_alert(self.webhook_url, alert):
            subject = alert.feature if alert.kind == "drift" else alert.metric
            self.crossings.forget((alert.kind, alert.model, alert.version, subject))

    # ------------------------------------------------------------------ thread
    def start(self) -> None:
        """Check every ``interval_s`` in a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="shipyard-live-monitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception:
                log.exception("the live monitor's check failed; it runs again in %g s", self.interval_s)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (waits for a check in progress)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


def _now() -> str:
    return datetime.now(UTC).isoformat()
