"""A/B test report: which served version does better on live traffic, and is the difference real?

:func:`ab_report` reads the prediction log of a model (primary routes only: rows the shadow wrote,
route ``"shadow"``, are left out) and gives, per variant (model version): its traffic (requests, rows,
share of requests), request latency p50/p95/p99, the rows with a feedback label, and the accuracy of
those rows (classifiers) or their mean absolute error (regressors), with a confidence interval (Wilson
for accuracy, Student's t for the MAE). Then one significance test between the variants:

- classifiers, two variants: the pooled two-proportion z-test on accuracy; three or more: the chi-squared
  test of the variants x (right, wrong) table, then the best against the runner-up (z-test, Bonferroni);
- regressors: Welch's t-test on the absolute errors of the best and the runner-up (Bonferroni with three
  or more variants).

The verdict says ``version 4 is better (p=...)``, ``no significant difference (p=...)``, or that the
sample is too small (a variant with fewer than ``min_labels`` labelled rows). Everything is aggregated in
DuckDB over the log into sufficient statistics (counts, means, variances); the tests use SciPy.

>>> [round(x, 4) for x in wilson_interval(45, 50, 0.95)]
[0.7864, 0.9565]
>>> round(two_proportion_z_test(90, 100, 70, 100)[1], 6)
0.000407
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    from shipyard.monitoring.logs import PredictionLog
    from shipyard.registry.entities import DeploymentState

__all__ = [
    "ABReport",
    "ABRevision",
    "SignificanceTest",
    "VariantStats",
    "ab_report",
    "ab_revision",
    "chi_squared_test",
    "decide",
    "mean_interval",
    "task_from_log",
    "two_proportion_z_test",
    "welch_t_test",
    "wilson_interval",
]

Task = Literal["classification", "regression"]
Outcome = Literal["better", "no-difference", "too-small", "one-variant"]
SHADOW_ROUTE = "shadow"
TASK_SAMPLE_ROWS = 10_000


# ---------------------------------------------------------------------- statistics
def wilson_interval(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``successes / n`` at ``confidence`` (e.g. 0.95).

    >>> wilson_interval(0, 10, 0.95)
    (0.0, 0.2775...)
    """
    from scipy.stats import norm

    if n <= 0:
        raise InvalidInput("a confidence interval needs at least one labelled row")
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, center - half), min(1.0, center + half)


def mean_interval(mean: float, std: float, n: int, confidence: float) -> tuple[float, float]:
    """Student's t interval of a mean from its sample standard deviation ``std`` over ``n`` values.

    >>> mean_interval(2.0, 1.0, 4, 0.95)
    (0.408..., 3.591...)
    """
    from scipy.stats import t

    if n < 2:
        return mean, mean
    half = float(t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return mean - half, mean + half


def two_proportion_z_test(successes_a: int, n_a: int, successes_b: int, n_b: int) -> tuple[float, float]:
    """The pooled two-proportion z-test: ``(z, two-sided p)``; ``z > 0`` when A's proportion is higher.

    When both proportions are 0 or both are 1 there is no variance: ``(0.0, 1.0)``.

    >>> two_proportion_z_test(50, 100, 50, 100)
    (0.0, 1.0)
    """
    from scipy.stats import norm

    pa, pb = successes_a / n_a, successes_b / n_b
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return 0.0, 1.0
    z = (pa - pb) / se
    return z, float(2 * norm.sf(abs(z)))


def chi_squared_test(successes: Sequence[int], totals: Sequence[int]) -> tuple[float, float]:
    """The chi-squared test of homogeneity of the (successes, failures) rows: ``(chi2, p)``.

    >>> chi_squared_test([50, 50, 50], [100, 100, 100])
    (0.0, 1.0)
    """
    import numpy as np
    from scipy.stats import chi2_contingency

    table = np.array([[s, n - s] for s, n in zip(successes, totals, strict=True)], dtype=np.float64)
    table = table[:, table.sum(axis=0) > 0]  # a column of zeros (all right or all wrong) has no variance
    if table.shape[1] < 2:
        return 0.0, 1.0
    result = chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def welch_t_test(mean_a: float, std_a: float, n_a: int, mean_b: float, std_b: float, n_b: int) -> tuple[float, float]:
    """Welch's t-test from summary statistics: ``(t, two-sided p)``; ``t > 0`` when A's mean is higher.

    Two samples without variance are equal (``p = 1``) or certainly different (``p = 0``).

    >>> t, p = welch_t_test(1.0, 0.5, 50, 1.5, 0.5, 50)
    >>> round(t, 3), p < 0.001
    (-5.0, True)
    """
    from scipy.stats import ttest_ind_from_stats

    if std_a == 0 and std_b == 0:
        if mean_a == mean_b:
            return 0.0, 1.0
        return math.copysign(math.inf, mean_a - mean_b), 0.0
    result = ttest_ind_from_stats(mean_a, std_a, n_a, mean_b, std_b, n_b, equal_var=False)
    return float(result.statistic), float(result.pvalue)


# ---------------------------------------------------------------------- report
@dataclass(frozen=True)
class VariantStats:
    """One variant (model version) of an A/B test over a window of the prediction log.

    ``share_pct`` is its percent of the primary requests of all variants reported; ``metric`` is
    ``"accuracy"`` (``correct`` of ``labelled`` rows) or ``"mae"`` (``std``: the sample standard deviation
    of the absolute errors); ``value`` and the interval are ``None`` without labelled rows.
    """

    version: int
    requests: int
    rows: int
    share_pct: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    labelled: int
    metric: str
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    correct: int | None = None
    std: float | None = None


@dataclass(frozen=True)
class SignificanceTest:
    """One significance test: its name, the versions compared, the statistic and the two-sided p-value.

    ``p_value`` is already adjusted (Bonferroni) when ``adjusted`` is more than 1.
    """

    name: str
    versions: tuple[int, ...]
    statistic: float
    p_value: float
    adjusted: int = 1


@dataclass(frozen=True)
class ABReport:
    """What :func:`ab_report` found; ``verdict`` is the sentence to show, ``outcome`` its kind."""

    model: str
    window: str
    task: Task
    metric: str
    confidence: float
    min_labels: int
    variants: tuple[VariantStats, ...]
    tests: tuple[SignificanceTest, ...]
    p_value: float | None
    outcome: Outcome
    winner: int | None
    verdict: str

    def variant(self, version: int) -> VariantStats:
        """The figures of ``version``."""
        for stats in self.variants:
            if stats.version == version:
                return stats
        raise KeyError(version)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (strict JSON: infinities and NaN become ``None``)."""
        return _finite(asdict(self))  # type: ignore[no-any-return]


def ab_report(
    log: PredictionLog,
    model: str,
    *,
    since: dt.datetime | None = None,
    versions: Sequence[int] | None = None,
    task: Task | None = None,
    confidence: float = 0.95,
    min_labels: int = 100,
    window: str | None = None,
    until: dt.datetime | None = None,
) -> ABReport:
    """Compare the versions that served ``model``'s primary traffic since ``since`` (and before ``until``;
    see :func:`ab_revision` for one deployment revision's window and variants; and the module docs).

    ``versions`` keeps only those versions; ``task`` is found from the log when not given (rows with
    probabilities, or few distinct whole-number predictions: classification). ``window`` describes the
    window in the report (default from ``since``). Raises :class:`~shipyard.errors.NotFound` when the model
    has no log or no primary predictions in the window, :class:`~shipyard.errors.InvalidInput` for options
    out of range.
    """
    from shipyard.monitoring.monitor import NoPredictions

    _check(confidence, min_labels, task)
    where = f"route <> '{SHADOW_ROUTE}'"
    if versions:
        where += " AND version IN (" + ", ".join(str(int(v)) for v in versions) + ")"
    if until is not None:
        where += f" AND ts < '{until.astimezone(dt.UTC).isoformat()}'::TIMESTAMPTZ"
    traffic = log.query(model, _TRAFFIC_SQL.format(where=where), since=since).to_pylist()
    described = window or ("since " + since.isoformat(timespec="seconds") if since is not None else "everything logged")
    if not traffic:
        which = f" of version(s) {', '.join(str(v) for v in versions)}" if versions else ""
        raise NoPredictions(
            f"no primary predictions{which} of {model!r} in the prediction log ({described}); serve it with "
            "the prediction log on, or widen --since"
        )
    task = task or task_from_log(log, model, since, where)
    scores = {row["version"]: row for row in log.query(model, _score_sql(task, where), since=since).to_pylist()}
    total = sum(int(row["requests"]) for row in traffic)
    variants: list[VariantStats] = []
    for row in traffic:
        version = int(row["version"])
        score = scores.get(version, {"n": 0})
        p50, p95, p99 = (float(q) for q in row["q"])
        variants.append(
            _variant(version, int(row["requests"]), int(row["rows"]), 100.0 * int(row["requests"]) / total,
                     (p50, p95, p99), task, score, confidence)
        )  # fmt: skip
    return decide(model, described, task, variants, confidence=confidence, min_labels=min_labels)


@dataclass(frozen=True)
class ABRevision:
    """The window and variants of one A/B deployment revision: traffic logged from ``since`` to ``until``
    (``None``: still running) by ``versions``."""

    revision: int
    since: dt.datetime
    until: dt.datetime | None
    versions: tuple[int, ...]

    def describe(self) -> str:
        """The window in words, e.g. ``deployment revision 4 (versions 3, 4) since 2026-01-01T10:00:00+00:00``."""
        versions = ", ".join(map(str, self.versions))
        since = self.since.isoformat(timespec="seconds")
        text = f"deployment revision {self.revision} (versions {versions}) since {since}"
        return text if self.until is None else f"{text} until {self.until.isoformat(timespec='seconds')}"


def ab_revision(history: Sequence[DeploymentState], revision: int | None = None) -> ABRevision | None:
    """The A/B revision to report on: ``revision`` (which must be an A/B deployment), else the newest A/B
    revision of ``history`` (oldest first); ``None`` when the model never had an A/B deployment.

    Its traffic starts when that revision was written and ends when the next revision was (so a report
    never mixes in the versions served before or after the test).
    """
    from shipyard.errors import NotFound

    for index in range(len(history) - 1, -1, -1):
        state = history[index]
        if revision is not None and state.revision != revision:
            continue
        spec = state.deployment_spec()
        if spec is None or spec.kind != "ab":
            if revision is None:
                continue
            raise InvalidInput(
                f"revision {revision} of {state.model!r} is {state.describe()!r}, not an A/B test; "
                f"see 'shipyard deploy history {state.model}' for the A/B revisions"
            )
        until = history[index + 1].at if index + 1 < len(history) else None
        return ABRevision(state.revision, state.at, until, tuple(v.version for v in spec.variants))
    if revision is not None:
        raise NotFound(f"no deployment revision {revision}; see 'shipyard deploy history' for the revisions")
    return None


def decide(
    model: str,
    window: str,
    task: Task,
    variants: Sequence[VariantStats],
    *,
    confidence: float = 0.95,
    min_labels: int = 100,
) -> ABReport:
    """Run the significance tests between ``variants`` and word the verdict (no log needed)."""
    metric = "accuracy" if task == "classification" else "mae"
    alpha = 1 - confidence
    tests: list[SignificanceTest] = []
    ranked = sorted(
        (v for v in variants if v.value is not None),
        key=lambda v: (-(v.value or 0.0) if task == "classification" else (v.value or 0.0), v.version),
    )
    testable = len(ranked) == len(variants) and len(variants) >= 2
    if testable and task == "regression":
        testable = all(v.labelled >= 2 for v in variants)
    decisive: SignificanceTest | None = None
    overall: SignificanceTest | None = None
    if testable:
        best, runner = ranked[0], ranked[1]
        k = len(variants)
        if task == "classification":
            if k > 2:
                chi2, p = chi_squared_test([v.correct or 0 for v in variants], [v.labelled for v in variants])
                overall = SignificanceTest("chi-squared", tuple(v.version for v in variants), chi2, p)
                tests.append(overall)
            z, p = two_proportion_z_test(best.correct or 0, best.labelled, runner.correct or 0, runner.labelled)
            pair = (best.version, runner.version)
            decisive = SignificanceTest("two-proportion z-test", pair, z, min(1.0, p * (k - 1)), k - 1)
        else:
            t, p = welch_t_test(best.value or 0.0, best.std or 0.0, best.labelled,
                                runner.value or 0.0, runner.std or 0.0, runner.labelled)  # fmt: skip
            decisive = SignificanceTest("Welch t-test", (best.version, runner.version), t, min(1.0, p * (k - 1)), k - 1)
        tests.append(decisive)
    winner: int | None = None
    p_value = decisive.p_value if decisive is not None else None
    if len(variants) < 2:
        outcome: Outcome = "one-variant"
        only = variants[0].version if variants else None
        verdict = f"only version {only} served primary traffic in the window: nothing to compare"
    elif not testable or any(v.labelled < min_labels for v in variants):
        outcome = "too-small"
        have = ", ".join(f"version {v.version}: {v.labelled:,}" for v in variants)
        verdict = f"sample too small to decide: need >= {min_labels:,} labelled rows per variant (have {have})"
    elif overall is not None and overall.p_value >= alpha:
        outcome, p_value = "no-difference", overall.p_value
        verdict = f"no significant difference (chi-squared p={_p(overall.p_value)})"
    else:
        assert decisive is not None
        if decisive.p_value < alpha:
            outcome, winner = "better", decisive.versions[0]
            verdict = f"version {winner} is better (p={_p(decisive.p_value)})"
            if overall is not None:
                verdict += f"; all variants differ (chi-squared p={_p(overall.p_value)})"
        elif overall is not None:
            outcome = "no-difference"
            verdict = (
                f"no significant difference between the best two: the variants differ (chi-squared "
                f"p={_p(overall.p_value)}) but version {decisive.versions[0]} is not significantly better than "
                f"version {decisive.versions[1]} (p={_p(decisive.p_value)})"
            )
        else:
            outcome = "no-difference"
            verdict = f"no significant difference (p={_p(decisive.p_value)})"
    return ABReport(
        model=model,
        window=window,
        task=task,
        metric=metric,
        confidence=confidence,
        min_labels=min_labels,
        variants=tuple(sorted(variants, key=lambda v: v.version)),
        tests=tuple(tests),
        p_value=p_value,
        outcome=outcome,
        winner=winner,
        verdict=verdict,
    )


# ---------------------------------------------------------------------- SQL over the log
_TRAFFIC_SQL = """
WITH requests AS (
    SELECT version, regexp_replace(request_id, '/[0-9]+$', '') AS request, ts,
           any_value(latency_ms) AS latency_ms, count(*) AS rows
    FROM predictions WHERE {where} GROUP BY ALL
)
SELECT version, count(*) AS requests, sum(rows) AS rows, quantile_cont(latency_ms, [0.5, 0.95, 0.99]) AS q
FROM requests GROUP BY version ORDER BY version
"""

_LABELLED = """
WITH newest AS (SELECT request_id, arg_max(label, ts) AS label FROM labels GROUP BY request_id),
labelled AS (
    SELECT p.version, p.prediction, n.label FROM predictions p JOIN newest n USING (request_id) WHERE {where}
)
"""


def _score_sql(task: Task, where: str) -> str:
    """Per version: ``n`` and ``correct`` (classification) or ``n``, ``mean``, ``std`` of absolute errors."""
    if task == "classification":
        same = (
            "coalesce(try_cast(prediction AS DOUBLE) = try_cast(label AS DOUBLE), "
            "CAST(prediction AS VARCHAR) = CAST(label AS VARCHAR))"
        )
        return (
            _LABELLED.format(where=where)
            + f"SELECT version, count(*) AS n, count_if({same}) AS correct FROM labelled GROUP BY version"
        )
    error = "abs(try_cast(prediction AS DOUBLE) - try_cast(label AS DOUBLE))"
    return (
        _LABELLED.format(where=where) + f", errors AS (SELECT version, {error} AS e FROM labelled) "
        "SELECT version, count(e) AS n, avg(e) AS mean, stddev_samp(e) AS std FROM errors "
        "WHERE e IS NOT NULL GROUP BY version"
    )


def task_from_log(log: PredictionLog, model: str, since: dt.datetime | None, where: str) -> Task:
    """Classification when the rows matching ``where`` carry probabilities or their predictions look like labels
    (few distinct whole numbers, text), else regression."""
    from shipyard.monitoring.monitor import task_of

    sql = f"SELECT count(probabilities) AS n FROM (SELECT probabilities FROM predictions WHERE {where} LIMIT 1000)"
    if log.query(model, sql, since=since).column("n")[0].as_py():
        return "classification"
    sample = log.query(model, f"SELECT prediction FROM predictions WHERE {where} LIMIT {TASK_SAMPLE_ROWS}", since=since)
    predictions = sample.column("prediction").to_pandas()
    return "classification" if task_of(None, predictions) == "classification" else "regression"


def _variant(
    version: int,
    requests: int,
    rows: int,
    share: float,
    latency: tuple[float, float, float],
    task: Task,
    score: dict[str, Any],
    confidence: float,
) -> VariantStats:
    n = int(score.get("n") or 0)
    base = VariantStats(version, requests, rows, share, *latency, labelled=n,
                        metric="accuracy" if task == "classification" else "mae")  # fmt: skip
    if n == 0:
        return base
    if task == "classification":
        correct = int(score["correct"])
        low, high = wilson_interval(correct, n, confidence)
        return _replace(base, value=correct / n, ci_low=low, ci_high=high, correct=correct)
    mean, std = float(score["mean"]), float(score["std"] or 0.0)
    low, high = mean_interval(mean, std, n, confidence)
    return _replace(base, value=mean, ci_low=low, ci_high=high, std=std)


def _replace(stats: VariantStats, **changes: Any) -> VariantStats:
    from dataclasses import replace

    return replace(stats, **changes)


def _check(confidence: float, min_labels: int, task: str | None) -> None:
    if not (isinstance(confidence, (int, float)) and 0.5 <= confidence < 1):
        raise InvalidInput(f"confidence must be at least 0.5 and below 1 (e.g. 0.95), got {confidence!r}")
    if isinstance(min_labels, bool) or not isinstance(min_labels, int) or min_labels < 1:
        raise InvalidInput(f"min_labels must be a whole number of at least 1, got {min_labels!r}")
    if task is not None and task not in ("classification", "regression"):
        raise InvalidInput(f"unknown task {task!r}; use classification or regression")


def _p(value: float) -> str:
    """A p-value in a sentence.

    >>> _p(0.04321), _p(3.2e-9), _p(0.0)
    ('0.0432', '3.2e-09', '<1e-300')
    """
    if value <= 0:
        return "<1e-300"
    return f"{value:.3g}"


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
