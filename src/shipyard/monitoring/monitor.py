"""Is a served model still healthy? Drift, live accuracy, latency and traffic over a window of its prediction log.

:func:`monitor` checks one window (the last hour, the last N predictions) against the reference profile
stored with the version at registration; :func:`timeseries` buckets the same log over time for charts.
``shipyard monitor`` prints the first and exits 1 when an alert fires; ``shipyard report`` draws both.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from shipyard.errors import InvalidInput, NotFound
from shipyard.types import ModelRef

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.evaluation.drift import DriftThresholds, FeatureDrift
    from shipyard.monitoring.logs import PredictionLog
    from shipyard.service import ModelService

PERCENTILES = (50, 95, 99)
META_COLUMNS = ("request_id", "ts", "model", "version", "route", "latency_ms", "prediction", "probabilities")


class NoPredictions(NotFound):
    """Nothing was logged for the model in the window asked for."""


@dataclass(frozen=True)
class MonitorReport:
    """The health of one model over one window of its prediction log."""

    model: str
    version: int | None
    """The version checked for drift (``None``: all versions in the window)."""
    window: str
    """Which predictions were looked at, e.g. ``last 1h`` or ``last 10000 predictions``."""
    rows: int
    drift: list[FeatureDrift]
    accuracy: list[dict[str, Any]] = field(default_factory=list)
    """Live accuracy per version, from feedback labels joined by request id (empty without labels)."""
    latency: dict[int, dict[str, float]] = field(default_factory=dict)
    """Version -> ``{"count", "p50_ms", "p95_ms", "p99_ms"}`` over requests."""
    traffic: dict[int, int] = field(default_factory=dict)
    """Version -> predictions (rows) logged."""
    alerts: list[str] = field(default_factory=list)
    """One sentence per alert; empty: healthy."""
    thresholds: dict[str, float] = field(default_factory=dict)
    """The drift thresholds the verdicts used (``psi_warn``, ``psi_alert``, ``p_value``, ``min_samples``)."""

    @property
    def healthy(self) -> bool:
        """True when no alert fired."""
        return not self.alerts

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (version keys of ``latency`` and ``traffic`` become strings)."""
        return {
            "model": self.model,
            "version": self.version,
            "window": self.window,
            "rows": self.rows,
            "drift": [d.to_dict() for d in self.drift],
            "accuracy": self.accuracy,
            "latency": {str(k): v for k, v in self.latency.items()},
            "traffic": {str(k): v for k, v in self.traffic.items()},
            "alerts": self.alerts,
            "thresholds": self.thresholds,
        }


def describe_window(window: timedelta | None, last: int | None) -> str:
    """The window in words.

    >>> describe_window(timedelta(hours=1), None), describe_window(None, 10000), describe_window(None, None)
    ('last 1h', 'last 10000 predictions', 'everything logged')
    >>> describe_window(timedelta(minutes=90), 500)
    'last 500 predictions in the last 1h30m'
    """
    parts = []
    if last is not None:
        parts.append(f"last {last} predictions")
    if window is not None:
        seconds = int(window.total_seconds())
        text = "".join(
            f"{amount}{unit}"
            for amount, unit in ((seconds // 86400, "d"), (seconds % 86400 // 3600, "h"),
                                 (seconds % 3600 // 60, "m"), (seconds % 60, "s"))
            if amount
        ) or "0s"
        parts.append(f"last {text}")
    return " in the ".join(parts) if parts else "everything logged"


def task_of(profile: dict[str, Any] | None, predictions: pd.Series | None = None) -> str:
    """``"classification"`` or ``"regression"``: from the profile's prediction entry, else from the values.

    >>> task_of({"prediction": {"kind": "categorical"}}), task_of({"prediction": {"kind": "numeric"}})
    ('classification', 'regression')
    >>> import pandas as pd
    >>> task_of(None, pd.Series([0.5, 1.25])), task_of(None, pd.Series(["a", "b"]))
    ('regression', 'classification')
    """
    entry = (profile or {}).get("prediction") or {}
    if entry.get("kind") in ("categorical", "numeric"):
        return "classification" if entry["kind"] == "categorical" else "regression"
    if predictions is None or len(predictions) == 0:
        return "classification"
    import numpy as np
    import pandas as pd

    values = predictions.dropna()
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return "classification"
    numbers = values.to_numpy(dtype=float)
    if not np.all(np.equal(np.mod(numbers, 1), 0)):
        return "regression"
    return "classification" if values.nunique() <= 50 else "regression"


def classes_of(profile: dict[str, Any] | None, observed: Sequence[Any] = ()) -> list[Any] | None:
    """The class labels in the model's probability order, typed like the logged values.

    The profile keeps them as strings (``"0"``, ``"1"``); each is matched to the observed value it spells.

    >>> classes_of({"probabilities": {"0": {}, "1": {}}}, [1, 0, 1])
    [0, 1]
    >>> classes_of(None) is None
    True
    """
    names = list(((profile or {}).get("probabilities") or {}).keys())
    if not names:
        return None
    spelled = {str(value): value for value in observed}
    return [spelled.get(name, name) for name in names]


def request_latencies(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per request (``version``, ``ts``, ``latency_ms``): the rows of a request share its latency."""
    base = frame["request_id"].astype(str).str.replace(r"/\d+$", "", regex=True)
    keyed = frame.assign(_request=base)
    return keyed.drop_duplicates(["version", "_request", "ts"])[["version", "ts", "latency_ms"]]


def latency_summary(latency_ms: Any) -> dict[str, float]:
    """``count`` and the p50/p95/p99 of request latencies in milliseconds.

    >>> latency_summary([1.0, 2.0, 3.0, 4.0])["p50_ms"]
    2.5
    """
    import numpy as np

    values = np.asarray(latency_ms, dtype=float)
    values = values[~np.isnan(values)]
    summary: dict[str, float] = {"count": float(len(values))}
    for p in PERCENTILES:
        summary[f"p{p}_ms"] = float(np.percentile(values, p)) if len(values) else float("nan")
    return summary


def drift_alerts(drift: Sequence[FeatureDrift], thresholds: DriftThresholds) -> list[str]:
    """One sentence per feature whose verdict is ``alert``."""
    from shipyard.evaluation.drift import drift_sentence

    return [drift_sentence(d, thresholds) for d in drift if d.verdict == "alert"]


def drift_frame(frame: pd.DataFrame, profile: dict[str, Any], skip: Collection[str] = ()) -> pd.DataFrame:
    """The columns :func:`~shipyard.evaluation.drift.drift_report` reads: the features, prediction, probabilities.

    Features in ``skip`` (hashed or dropped in the log: see :meth:`PredictionLog.unmonitored`) are left out.
    """
    columns = [c for c in profile.get("features", {}) if c in frame.columns and c not in skip]
    columns += [c for c in ("prediction", "probabilities") if c in frame.columns]
    return frame[columns]


def monitor(
    service: ModelService,
    log: PredictionLog,
    name: str,
    *,
    window: timedelta | None = None,
    last: int | None = None,
    version: int | None = None,
    thresholds: DriftThresholds | None = None,
) -> MonitorReport:
    """Check the predictions ``name`` served in a window against the checked version's reference profile.

    The window is the predictions of the last ``window`` of time and/or the ``last`` N predictions
    (everything logged when neither is given), of ``version`` only when given. Drift is computed against
    the profile of ``version``, by default the newest version in the window. Raises
    :class:`~shipyard.errors.ModelNotFound` for an unknown model, :class:`NoPredictions` when nothing was
    logged in the window, and :class:`~shipyard.errors.InvalidInput` when the version has no profile.
    """
    from shipyard.evaluation.accuracy import live_accuracy
    from shipyard.evaluation.drift import DriftThresholds, drift_report

    thresholds = thresholds or DriftThresholds()
    if last is not None and last < 1:
        raise InvalidInput(f"--last must be at least 1, got {last}")
    service.get_model(name)  # ModelNotFound names the registered models
    if version is not None:
        service.resolve(ModelRef(name, version=version))  # VersionNotFound
    since = datetime.now(UTC) - window if window is not None else None
    described = describe_window(window, last)
    frame = log.predictions(name, since=since, last=last, version=version, shadow=False)
    if frame.empty:
        which = f"{name}:{version}" if version is not None else name
        raise NoPredictions(
            f"no logged predictions of {which} in the {described}; serve it with the prediction log on "
            "(logging.enabled in serve.yaml, the default) or widen --window/--last"
        )
    checked = int(version if version is not None else frame["version"].max())
    info = service.resolve(ModelRef(name, version=checked))
    profile = getattr(info, "profile", None)
    if not profile:
        raise InvalidInput(
            f"{info.ref} has no reference profile to compare with; register it with X=... (its training data) "
            "to store a reference profile"
        )
    live = frame[frame["version"] == checked]
    drift = drift_report(profile, drift_frame(live, profile, log.unmonitored(name, live.columns)), thresholds)
    joined = log.joined(name, since=since, last=last, version=version, inputs=False, shadow=False)
    accuracy: list[dict[str, Any]] = []
    if not joined.empty:
        task = task_of(profile, live["prediction"])
        observed = [*joined["prediction"].dropna().unique().tolist(), *joined["label"].dropna().unique().tolist()]
        classes = classes_of(profile, observed) if task == "classification" else None
        accuracy = live_accuracy(joined, task=task, classes=classes)
    requests = request_latencies(frame)
    latency = {int(cast(int, v)): latency_summary(group["latency_ms"]) for v, group in requests.groupby("version")}
    traffic = {int(cast(int, v)): int(n) for v, n in frame.groupby("version").size().items()}
    return MonitorReport(
        model=name,
        version=checked,
        window=described,
        rows=len(frame),
        drift=drift,
        accuracy=accuracy,
        latency=latency,
        traffic=traffic,
        alerts=drift_alerts(drift, thresholds),
        thresholds=asdict(thresholds),
    )


def timeseries(
    log: PredictionLog, name: str, *, since: datetime | None = None, every: str = "1min"
) -> dict[str, Any]:
    """Traffic, latency percentiles and live accuracy of ``name`` per version and time bucket of ``every``.

    ``every`` is a pandas offset alias (``"1min"``, ``"10min"``, ``"1h"``). Returns
    ``{"traffic": [{"t", "version", "count"}], "latency": [{"t", "version", "p50_ms", "p95_ms", "p99_ms"}],
    "accuracy": [{"t", "version", "n", <metrics>}]}`` sorted by time then version, ``t`` in ISO 8601.
    """
    import pandas as pd

    from shipyard.evaluation.accuracy import live_accuracy

    try:
        pd.tseries.frequencies.to_offset(every)
    except ValueError:
        raise InvalidInput(f"every must be a pandas offset such as 1min, 10min or 1h, got {every!r}") from None
    frame = log.predictions(name, since=since, inputs=False, shadow=False)
    series: dict[str, Any] = {"traffic": [], "latency": [], "accuracy": []}
    if frame.empty:
        return series
    buckets = frame.assign(t=pd.to_datetime(frame["ts"], utc=True).dt.floor(every))
    for key, group in buckets.groupby(["t", "version"], sort=True):
        t, v = cast("tuple[pd.Timestamp, int]", key)
        series["traffic"].append({"t": t.isoformat(), "version": int(v), "count": len(group)})
    requests = request_latencies(buckets.drop(columns=["t"]))
    requests = requests.assign(t=pd.to_datetime(requests["ts"], utc=True).dt.floor(every))
    for key, group in requests.groupby(["t", "version"], sort=True):
        t, v = cast("tuple[pd.Timestamp, int]", key)
        summary = latency_summary(group["latency_ms"])
        series["latency"].append(
            {"t": t.isoformat(), "version": int(v), **{k: summary[k] for k in ("p50_ms", "p95_ms", "p99_ms")}}
        )
    joined = log.joined(name, since=since, inputs=False, shadow=False)
    if not joined.empty:
        probabilities = frame["probabilities"] if "probabilities" in frame.columns else None
        has_proba = probabilities is not None and bool(probabilities.notna().any())
        task = "classification" if has_proba else task_of(None, frame["prediction"])
        for row in live_accuracy(joined, task=task, every=every):
            entry = {k: v for k, v in row.items() if k != "window_start"}
            series["accuracy"].append({"t": row.get("window_start"), **entry})
        series["accuracy"].sort(key=lambda r: (r["t"] or "", r["version"]))
    return series
