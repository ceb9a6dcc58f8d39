"""The A/B report over a real prediction log written by the real ``PredictionLogger``.

Every figure is checked against a reference computed independently on the same rows: accuracy with
scikit-learn on the joined frame, the z-test with the textbook formula and ``scipy.stats.norm``, the
Wilson interval with SciPy's ``binomtest``, Welch's test with ``scipy.stats.ttest_ind`` on the raw errors,
latency percentiles with NumPy over one latency per request.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, mean_absolute_error

from shipyard.errors import InvalidInput, NotFound
from shipyard.evaluation.abtest import ab_report, chi_squared_test, decide, wilson_interval
from shipyard.monitoring.logs import PredictionLog
from shipyard.monitoring.predlog import PredictionLogger
from shipyard.serving.settings import LogSettings

MODEL = "fraud"


@dataclass
class Arm:
    """One variant's traffic: ``labelled`` requests of which ``correct`` right, plus ``unlabelled`` requests.

    Every fifth request has two rows (labelled row by row); regressors get errors drawn around ``mae``.
    """

    version: int
    labelled: int
    correct: int = 0
    unlabelled: int = 0
    mae: float = 0.0
    latency_ms: float = 2.0
    requests: list[dict[str, Any]] = field(default_factory=list)


def write_log(
    root: Path, arms: list[Arm], *, task: str = "classification", seed: int = 0, shadow: bool = True, **settings: Any
) -> None:
    """Write the arms' requests (interleaved at random) with the real logger, a shadow copy of each, and labels."""
    rng = np.random.default_rng(seed)
    logger = PredictionLogger(LogSettings(path=root, **settings), home=root)
    logger.start()
    plan: list[tuple[Arm, int, bool]] = []
    for arm in arms:
        plan += [(arm, i, True) for i in range(arm.labelled)] + [(arm, i, False) for i in range(arm.unlabelled)]
    order = rng.permutation(len(plan))
    labels: list[tuple[str, Any]] = []
    right_so_far: dict[int, int] = {}
    for position in order:
        arm, i, labelled = plan[position]
        rid = f"v{arm.version}-{'l' if labelled else 'u'}{i}"
        rows = 2 if i % 5 == 0 else 1
        ids = [rid] if rows == 1 else [f"{rid}/{j}" for j in range(rows)]
        latency = arm.latency_ms * (0.5 + rng.random()) / 1000.0
        truths, predictions, probabilities = [], [], []
        for _ in ids:
            if task == "classification":
                y = int(rng.integers(0, 2))
                done = right_so_far.get(arm.version, 0)
                right = labelled and done < arm.correct
                right_so_far[arm.version] = done + int(right)
                pred = y if right else 1 - y
                p = float(rng.uniform(0.55, 0.99))
                probabilities.append([1 - p, p] if pred == 1 else [p, 1 - p])
            else:
                y = float(rng.normal(100.0, 10.0))
                pred = y + float(rng.normal(arm.mae, arm.mae / 2))
            truths.append(y)
            predictions.append(pred)
        data = [{"amount": float(rng.normal(50, 5)), "channel": "web"} for _ in ids]
        proba = np.array(probabilities) if probabilities else None
        logger.record(MODEL, arm.version, "native", rid, data, ["amount", "channel"], np.array(predictions), proba,
                      latency, input_types=["float64", "string"])  # fmt: skip
        if shadow:  # a shadow copy scored by another version: never part of the A/B figures
            wrong = [1 - p if task == "classification" else p + 50.0 for p in predictions]
            logger.record(MODEL, 99, "shadow", rid, data, ["amount", "channel"], np.array(wrong), proba, 1.0,
                          input_types=["float64", "string"])  # fmt: skip
        if labelled:
            labels += list(zip(ids, truths, strict=True))
        arm.requests.append({"id": rid, "rows": rows, "latency_ms": latency * 1000.0})
    logger.record_labels(MODEL, labels)
    logger.close()


def primary_joined(root: Path) -> pd.DataFrame:
    """The labelled primary rows, through the log reader's own join (the reference for the figures)."""
    joined = PredictionLog(root).joined(MODEL)
    return joined[joined["route"] != "shadow"]


def z_test(c1: int, n1: int, c2: int, n2: int) -> float:
    """The pooled two-proportion z-test p-value, by the textbook formula."""
    p1, p2, pooled = c1 / n1, c2 / n2, (c1 + c2) / (n1 + n2)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return float(2 * (1 - stats.norm.cdf(abs(z))))


def test_clearly_different_accuracy_is_significant(tmp_path: Path) -> None:
    arms = [Arm(3, labelled=600, correct=480, unlabelled=150, latency_ms=2.0),
            Arm(4, labelled=600, correct=550, unlabelled=50, latency_ms=6.0)]  # fmt: skip
    write_log(tmp_path, arms)
    report = ab_report(PredictionLog(tmp_path), MODEL)

    assert report.task == "classification" and report.metric == "accuracy"
    assert [v.version for v in report.variants] == [3, 4]  # the shadow's version 99 is left out
    joined = primary_joined(tmp_path)
    total_requests = sum(len(arm.requests) for arm in arms)
    for arm in arms:
        v = report.variant(arm.version)
        rows = joined[joined["version"] == arm.version]
        assert v.labelled == len(rows) == sum(r["rows"] for r in arm.requests if "-l" in r["id"])
        assert v.value == pytest.approx(accuracy_score(rows["label"], rows["prediction"]))
        assert v.correct == round(v.value * v.labelled)
        wilson = stats.binomtest(v.correct, v.labelled).proportion_ci(confidence_level=0.95, method="wilson")
        assert (v.ci_low, v.ci_high) == pytest.approx((wilson.low, wilson.high))
        assert v.requests == len(arm.requests)
        assert v.rows == sum(r["rows"] for r in arm.requests)
        assert v.share_pct == pytest.approx(100.0 * len(arm.requests) / total_requests)
        latencies = [r["latency_ms"] for r in arm.requests]
        assert (v.p50_ms, v.p95_ms, v.p99_ms) == pytest.approx(tuple(np.percentile(latencies, [50, 95, 99])))

    three, four = report.variant(3), report.variant(4)
    assert four.value is not None and three.value is not None and four.value > three.value + 0.08
    assert four.p95_ms > three.p95_ms
    (test,) = report.tests
    assert test.name == "two-proportion z-test" and test.versions == (4, 3)
    assert report.p_value == pytest.approx(z_test(four.correct or 0, four.labelled, three.correct or 0,
                                                  three.labelled), rel=1e-9)  # fmt: skip
    assert report.p_value < 0.001
    assert report.outcome == "better" and report.winner == 4
    assert report.verdict == f"version 4 is better (p={report.p_value:.3g})"


def test_equal_accuracy_is_no_significant_difference(tmp_path: Path) -> None:
    write_log(tmp_path, [Arm(3, labelled=500, correct=400), Arm(4, labelled=500, correct=405)], seed=1)
    report = ab_report(PredictionLog(tmp_path), MODEL)
    three, four = report.variant(3), report.variant(4)
    assert report.p_value == pytest.approx(z_test(four.correct or 0, four.labelled, three.correct or 0,
                                                  three.labelled), rel=1e-9)  # fmt: skip
    assert report.p_value > 0.5
    assert report.outcome == "no-difference" and report.winner is None
    assert report.verdict == f"no significant difference (p={report.p_value:.3g})"


def test_few_labels_are_too_small_a_sample(tmp_path: Path) -> None:
    write_log(tmp_path, [Arm(3, labelled=40, correct=20, unlabelled=500), Arm(4, labelled=30, correct=30)], seed=2)
    report = ab_report(PredictionLog(tmp_path), MODEL, min_labels=100)
    three, four = report.variant(3), report.variant(4)
    assert three.requests == 540 and three.labelled == sum("-l" in r for r in arm_requests(tmp_path, 3))
    assert report.outcome == "too-small" and report.winner is None
    assert report.verdict == (
        "sample too small to decide: need >= 100 labelled rows per variant "
        f"(have version 3: {three.labelled}, version 4: {four.labelled})"
    )
    assert report.p_value is not None and report.p_value < 0.05  # the test still ran; the verdict refuses it
    lower = ab_report(PredictionLog(tmp_path), MODEL, min_labels=min(three.labelled, four.labelled))
    assert lower.outcome == "better" and lower.winner == 4


def arm_requests(root: Path, version: int) -> list[str]:
    """The primary row ids of ``version`` in the log."""
    frame = PredictionLog(root).predictions(MODEL, version=version)
    return frame.loc[frame["route"] != "shadow", "request_id"].tolist()


def test_three_variants_use_chi_squared_then_best_against_runner_up(tmp_path: Path) -> None:
    arms = [Arm(1, labelled=400, correct=300), Arm(2, labelled=400, correct=310), Arm(3, labelled=400, correct=370)]
    write_log(tmp_path, arms, seed=3)
    report = ab_report(PredictionLog(tmp_path), MODEL)
    overall, pairwise = report.tests
    observed = np.array([[v.correct, v.labelled - (v.correct or 0)] for v in report.variants], dtype=float)
    expected = observed.sum(axis=1, keepdims=True) * observed.sum(axis=0, keepdims=True) / observed.sum()
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert overall.name == "chi-squared" and overall.statistic == pytest.approx(chi2)
    assert overall.p_value == pytest.approx(float(stats.chi2.sf(chi2, df=2)))
    best, runner = report.variant(3), report.variant(2)
    assert pairwise.versions == (3, 2) and pairwise.adjusted == 2
    assert pairwise.p_value == pytest.approx(min(1.0, 2 * z_test(best.correct or 0, best.labelled,
                                                                 runner.correct or 0, runner.labelled)))  # fmt: skip
    assert report.outcome == "better" and report.winner == 3
    assert report.verdict.startswith(f"version 3 is better (p={pairwise.p_value:.3g})")


def test_regressors_compare_mean_absolute_errors_with_welch(tmp_path: Path) -> None:
    arms = [Arm(1, labelled=300, mae=5.0, unlabelled=20), Arm(2, labelled=250, mae=3.0)]
    write_log(tmp_path, arms, task="regression", seed=4)
    report = ab_report(PredictionLog(tmp_path), MODEL)
    assert report.task == "regression" and report.metric == "mae"
    joined = primary_joined(tmp_path)
    errors = {}
    for version in (1, 2):
        rows = joined[joined["version"] == version]
        errors[version] = np.abs(rows["prediction"].to_numpy(float) - rows["label"].to_numpy(float))
        v = report.variant(version)
        assert v.labelled == len(rows)
        assert v.value == pytest.approx(mean_absolute_error(rows["label"], rows["prediction"]))
        sem = errors[version].std(ddof=1) / math.sqrt(len(rows))
        half = stats.t.ppf(0.975, len(rows) - 1) * sem
        assert (v.ci_low, v.ci_high) == pytest.approx((v.value - half, v.value + half))
    (test,) = report.tests
    reference = stats.ttest_ind(errors[2], errors[1], equal_var=False)
    assert test.name == "Welch t-test" and test.versions == (2, 1)
    assert (test.statistic, test.p_value) == pytest.approx((reference.statistic, reference.pvalue))
    assert report.outcome == "better" and report.winner == 2


def test_since_versions_and_confidence(tmp_path: Path) -> None:
    write_log(tmp_path / "early", [Arm(1, labelled=50, correct=10)], seed=5)  # not read: another folder
    arms = [Arm(3, labelled=200, correct=150), Arm(4, labelled=200, correct=160), Arm(5, labelled=10, correct=5)]
    logger_root = tmp_path / "log"
    write_log(logger_root, arms[:1], seed=6, shadow=False)
    time.sleep(0.05)
    cut = pd.Timestamp.now(tz="UTC").to_pydatetime()
    time.sleep(0.05)
    write_log(logger_root, arms[1:], seed=7, shadow=False)
    log = PredictionLog(logger_root)
    assert [v.version for v in ab_report(log, MODEL).variants] == [3, 4, 5]
    later = ab_report(log, MODEL, since=cut)
    assert [v.version for v in later.variants] == [4, 5] and later.variant(4).share_pct == pytest.approx(
        100 * len(arms[1].requests) / (len(arms[1].requests) + len(arms[2].requests))
    )
    only = ab_report(log, MODEL, versions=[3, 4], confidence=0.99)
    assert [v.version for v in only.variants] == [3, 4]
    v = only.variant(3)
    wilson = stats.binomtest(v.correct or 0, v.labelled).proportion_ci(confidence_level=0.99, method="wilson")
    assert (v.ci_low, v.ci_high) == pytest.approx((wilson.low, wilson.high))
    one = ab_report(log, MODEL, versions=[4])
    assert one.outcome == "one-variant" and "only version 4" in one.verdict and one.tests == ()


def test_bad_options_and_missing_logs(tmp_path: Path) -> None:
    write_log(tmp_path, [Arm(3, labelled=5, correct=5)], shadow=False)
    log = PredictionLog(tmp_path)
    with pytest.raises(NotFound, match="no prediction log for model 'other'"):
        ab_report(log, "other")
    with pytest.raises(NotFound, match="no primary predictions of version"):
        ab_report(log, MODEL, versions=[7])
    for kwargs, message in (({"confidence": 1.0}, "confidence"), ({"min_labels": 0}, "min_labels"),
                            ({"task": "ranking"}, "unknown task")):  # fmt: skip
        with pytest.raises(InvalidInput, match=message):
            ab_report(log, MODEL, **kwargs)


def test_statistics_without_variance_and_without_labels() -> None:
    assert wilson_interval(10, 10, 0.95)[1] == pytest.approx(1.0)
    assert chi_squared_test([10, 10, 10], [10, 10, 10]) == (0.0, 1.0)
    from shipyard.evaluation.abtest import VariantStats

    def arm(version: int, labelled: int, correct: int | None) -> VariantStats:
        value = None if correct is None else correct / labelled
        return VariantStats(version, 10, 10, 50.0, 1.0, 1.0, 1.0, labelled, "accuracy", value, correct=correct)

    same = decide(MODEL, "test", "classification", [arm(1, 200, 200), arm(2, 200, 200)])
    assert same.outcome == "no-difference" and same.p_value == 1.0
    unlabelled = decide(MODEL, "test", "classification", [arm(1, 0, None), arm(2, 200, 150)])
    assert unlabelled.outcome == "too-small" and unlabelled.tests == ()
    assert "version 1: 0, version 2: 200" in unlabelled.verdict


@pytest.mark.postgres
def test_the_postgres_log_gives_the_same_report(tmp_path: Path, postgres_url: str) -> None:
    def arms() -> list[Arm]:
        return [Arm(3, labelled=150, correct=100, unlabelled=20), Arm(4, labelled=150, correct=140)]

    write_log(tmp_path / "parquet", arms(), seed=8)
    write_log(tmp_path / "unused", arms(), seed=8, backend="postgres", postgres_url=postgres_url)
    on_files = ab_report(PredictionLog(tmp_path / "parquet"), MODEL).to_dict()
    on_postgres = ab_report(PredictionLog(postgres_url=postgres_url), MODEL).to_dict()
    assert on_postgres == on_files
    assert on_files["outcome"] == "better" and on_files["winner"] == 4
