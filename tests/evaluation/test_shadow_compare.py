"""``shipyard compare NAME --shadow``: the shadow's logged answers against the primary's on the same requests.

The logs are written by the real ``PredictionLogger`` (primary rows with route ``native``, shadow rows with
route ``shadow`` and the same request ids, as the server writes them); every figure is checked against
NumPy / scikit-learn on the same data. The command runs as a real subprocess.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix
from tests.cli.test_cli import run
from tests.serving.conftest import start_server  # noqa: F401  (the fixture: a real `shipyard serve`)

from shipyard.errors import InvalidInput, NotFound
from shipyard.evaluation.shadow import shadow_report
from shipyard.monitoring.logs import PredictionLog
from shipyard.monitoring.predlog import PredictionLogger
from shipyard.serving.settings import LogSettings

MODEL = "fraud"
COLUMNS = ["amount", "channel"]
TYPES = ["float64", "string"]


@dataclass
class Traffic:
    """What was logged, row by row, for the compared rows (primary and shadow side by side)."""

    primary_pred: list[Any] = field(default_factory=list)
    shadow_pred: list[Any] = field(default_factory=list)
    primary_proba: list[list[float]] = field(default_factory=list)
    shadow_proba: list[list[float]] = field(default_factory=list)
    primary_latency: list[float] = field(default_factory=list)  # per compared request, ms
    shadow_latency: list[float] = field(default_factory=list)
    primary_rows: int = 0
    shadow_rows: int = 0


def write_log(
    root: Path,
    requests: int = 400,
    *,
    noise: float = 0.1,
    sample: float = 0.8,
    orphans: int = 0,
    task: str = "classification",
    seed: int = 0,
    **settings: Any,
) -> Traffic:
    """Primary version 3 answers every request; version 4 shadows a ``sample`` of them (``noise`` apart)."""
    rng = np.random.default_rng(seed)
    logger = PredictionLogger(LogSettings(path=root, **settings), home=root)
    logger.start()
    seen = Traffic()
    for i in range(requests):
        rid = f"req-{i}"
        rows = 3 if i % 7 == 0 else 1
        data = [{"amount": float(rng.normal(50, 10)), "channel": ["web", "pos"][i % 2]} for _ in range(rows)]
        primary_latency = float(rng.uniform(1, 3)) / 1000
        shadow_latency = float(rng.uniform(5, 9)) / 1000
        if task == "classification":
            p = rng.uniform(0, 1, rows)
            q = np.clip(p + rng.normal(0, noise, rows), 0, 1) if noise else p.copy()
            a_pred, b_pred = (p > 0.5).astype(int), (q > 0.5).astype(int)
            a_proba, b_proba = np.column_stack([1 - p, p]), np.column_stack([1 - q, q])
        else:
            a_pred = rng.normal(100, 10, rows)
            b_pred = a_pred + rng.normal(0, noise, rows)
            a_proba = b_proba = None
        logger.record(MODEL, 3, "native", rid, data, COLUMNS, a_pred, a_proba, primary_latency, input_types=TYPES)
        seen.primary_rows += rows
        if rng.random() < sample:
            logger.record(MODEL, 4, "shadow", rid, data, COLUMNS, b_pred, b_proba, shadow_latency, input_types=TYPES)
            seen.shadow_rows += rows
            seen.primary_pred += a_pred.tolist()
            seen.shadow_pred += b_pred.tolist()
            if a_proba is not None and b_proba is not None:
                seen.primary_proba += a_proba.tolist()
                seen.shadow_proba += b_proba.tolist()
            seen.primary_latency.append(primary_latency * 1000)
            seen.shadow_latency.append(shadow_latency * 1000)
    for i in range(orphans):  # shadow rows whose primary row is not in the log
        logger.record(MODEL, 4, "shadow", f"gone-{i}", [{"amount": 1.0, "channel": "web"}], COLUMNS,
                      np.array([1]), np.array([[0.2, 0.8]]) if task == "classification" else None, 0.005,
                      input_types=TYPES)  # fmt: skip
        seen.shadow_rows += 1
    logger.close()
    return seen


def test_agreement_differences_confusion_and_latency_match_numpy(tmp_path: Path) -> None:
    seen = write_log(tmp_path, orphans=3)
    report = shadow_report(PredictionLog(tmp_path), MODEL, top=5, atol=1e-6)
    c = report.comparison
    a, b = np.array(seen.primary_pred), np.array(seen.shadow_pred)
    cells = np.abs(np.array(seen.primary_proba) - np.array(seen.shadow_proba))

    assert c.task == "classification"
    assert c.rows == len(a) and report.shadow_rows == seen.shadow_rows and report.unmatched == 3
    assert report.primary_rows == seen.primary_rows
    assert report.coverage == pytest.approx(len(a) / seen.primary_rows)
    assert c.agreement == pytest.approx(float(np.mean(a == b)))
    assert c.disagreements == int(np.sum(a != b)) > 0
    assert c.max_abs_diff == pytest.approx(float(cells.max()))
    assert c.mean_abs_diff == pytest.approx(float(cells.mean()))
    assert c.labels == (0, 1)
    assert [list(row) for row in c.confusion] == confusion_matrix(a, b, labels=[0, 1]).tolist()
    assert report.pairs == ((3, 4, len(a)),)
    assert (c.ref_a, c.ref_b) == ("fraud:3", "fraud:4")
    for side, values in (("primary", seen.primary_latency), ("shadow", seen.shadow_latency)):
        figures = report.latency[side]
        assert figures["requests"] == len(values)
        assert (figures["p50_ms"], figures["p99_ms"]) == pytest.approx(tuple(np.percentile(values, [50, 99])))
    assert report.latency["shadow"]["p50_ms"] > report.latency["primary"]["p99_ms"]

    assert not report.passed and c.verdict == "fail"
    assert c.reasons[0].startswith("label agreement") and c.reasons[1].startswith("max absolute probability")
    assert len(c.top) == 5 and all(row.prediction_a != row.prediction_b for row in c.top)  # labels differ first
    differences = [row.difference for row in c.top]
    assert differences == sorted(differences, reverse=True)  # type: ignore[type-var]
    assert all(row.features["request_id"].startswith("req-") and "amount" in row.features for row in c.top)

    lenient = shadow_report(PredictionLog(tmp_path), MODEL, atol=1.0, min_agreement=0.5)
    assert lenient.passed and lenient.comparison.reasons == ()


def test_an_identical_shadow_passes(tmp_path: Path) -> None:
    seen = write_log(tmp_path, noise=0.0, sample=1.0, seed=1)
    report = shadow_report(PredictionLog(tmp_path), MODEL)
    assert report.passed and report.comparison.agreement == 1.0 and report.comparison.max_abs_diff == 0.0
    assert report.comparison.rows == seen.primary_rows and report.coverage == 1.0 and report.comparison.top == ()


def test_regressors_compare_predictions_within_atol(tmp_path: Path) -> None:
    seen = write_log(tmp_path, task="regression", noise=0.01, seed=2)
    diff = np.abs(np.array(seen.primary_pred) - np.array(seen.shadow_pred))
    for atol in (0.005, 0.1):
        report = shadow_report(PredictionLog(tmp_path), MODEL, atol=atol, min_agreement=0.0)
        c = report.comparison
        assert c.task == "regression" and c.labels == () and c.confusion == ()
        assert c.agreement == pytest.approx(float(np.mean(diff <= atol)))
        assert c.max_abs_diff == pytest.approx(float(diff.max())) and c.mean_abs_diff == pytest.approx(diff.mean())
        assert report.passed == (diff.max() <= atol)


def test_a_reused_request_id_pairs_with_the_nearest_primary_row(tmp_path: Path) -> None:
    logger = PredictionLogger(LogSettings(path=tmp_path), home=tmp_path)
    logger.start()
    row = [{"amount": 1.0, "channel": "web"}]
    logger.record(MODEL, 3, "native", "same", row, COLUMNS, np.array([0]), np.array([[0.9, 0.1]]), 0.001)
    time.sleep(0.3)
    logger.record(MODEL, 3, "native", "same", row, COLUMNS, np.array([1]), np.array([[0.3, 0.7]]), 0.001)
    logger.record(MODEL, 4, "shadow", "same", row, COLUMNS, np.array([1]), np.array([[0.3, 0.7]]), 0.002)
    logger.close()
    report = shadow_report(PredictionLog(tmp_path), MODEL)
    assert report.comparison.rows == 1 and report.passed and report.primary_rows == 2


def test_no_shadow_rows_and_bad_options(tmp_path: Path) -> None:
    write_log(tmp_path, sample=0.0, requests=10)
    log = PredictionLog(tmp_path)
    with pytest.raises(NotFound, match=r"no shadow predictions of 'fraud'.*shipyard deploy fraud --shadow"):
        shadow_report(log, MODEL)
    with pytest.raises(NotFound, match="no prediction log for model 'other'"):
        shadow_report(log, "other")
    for kwargs in ({"atol": -1.0}, {"min_agreement": 2.0}, {"top": -1}):
        with pytest.raises(InvalidInput):
            shadow_report(log, MODEL, **kwargs)
    orphans = tmp_path / "orphans"
    write_log(orphans, sample=0.0, requests=0, orphans=2)
    with pytest.raises(NotFound, match="none of the 2 shadow predictions"):
        shadow_report(PredictionLog(orphans), MODEL)


@pytest.mark.postgres
def test_the_postgres_log_gives_the_same_comparison(tmp_path: Path, postgres_url: str) -> None:
    write_log(tmp_path / "files", requests=150, seed=5)
    write_log(tmp_path / "unused", requests=150, seed=5, backend="postgres", postgres_url=postgres_url)
    on_files = shadow_report(PredictionLog(tmp_path / "files"), MODEL).to_dict()
    on_postgres = shadow_report(PredictionLog(postgres_url=postgres_url), MODEL).to_dict()
    for report in (on_files, on_postgres):
        report.pop("seconds")
    assert on_postgres == on_files


# ---------------------------------------------------------------------- the command
def test_the_command_prints_json_or_tables_and_exits_1_on_fail(home: Path) -> None:
    seen = write_log(home / "logs", seed=3)
    failed = run(home, "compare", "fraud", "--shadow", "--since", "1h", "--json").failed(1)
    as_json = json.loads(failed.out)
    assert as_json["verdict"] == "fail" and as_json["rows"] == len(seen.primary_pred)
    assert as_json["agreement"] == pytest.approx(float(np.mean(np.array(seen.primary_pred) == seen.shadow_pred)))
    assert as_json["pairs"] == [{"primary": 3, "shadow": 4, "rows": len(seen.primary_pred)}]
    assert as_json["window"] == "last 1h" and set(as_json["latency"]) == {"primary", "shadow"}

    passed = run(home, "compare", "fraud", "--shadow", "--atol", "1", "--min-agreement", "0.5").ok()
    out = passed.out
    assert "fraud:3" in out and "fraud:4" in out and "latency p50 / p99 shadow" in out and "Label confusion" in out
    assert out.rstrip().splitlines()[-1].startswith("PASS: labels agree on")
    text = run(home, "compare", "fraud", "--shadow").failed(1)
    assert text.out.rstrip().splitlines()[-1].startswith("FAIL: label agreement")


def test_the_command_reads_the_log_of_a_serve_config_and_refuses_mixed_forms(home: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    write_log(elsewhere, noise=0.0, seed=4)
    config = tmp_path / "serve.yaml"
    config.write_text(f"logging:\n  path: {elsewhere}\n")
    assert (
        run(home, "compare", "fraud", "--shadow", "--config", str(config), "--atol", "1e-6")
        .ok()
        .out.rstrip()
        .endswith("<= atol 1e-06")
    )
    for args, message in (
        (["fraud", "--shadow"], "no prediction log for model 'fraud'"),
        (["fraud:3", "--shadow", "--config", str(config)], "--shadow takes a model name"),
        (["fraud", "fraud:4", "--shadow"], "REF_B cannot be given with it"),
        (["fraud", "--shadow", "--data", "x.csv"], "--data cannot be given with it"),
        (["fraud", "--shadow", "--since", "yesterday", "--config", str(config)], "cannot read 'yesterday' as a time"),
        (["fraud:3", "fraud:4"], "compare needs --data"),
        (["fraud:3"], "compare needs REF_B and --data"),
    ):
        assert message in run(home, "compare", *args).failed(1).error_line, args


# ---------------------------------------------------------------------- through a real server
def two_versions(rows: int = 600, seed: int = 0) -> tuple[Any, Any, Any, Any]:
    """``fraud`` version 1 (a fitted model) and version 2 (a weaker one), production on 1: (X, y, v1, v2)."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import shipyard

    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"amount": rng.normal(100, 20, rows).round(3), "hour": rng.integers(0, 24, rows)})
    y = ((X["amount"] + rng.normal(0, 5, rows)) > 100).astype(int)
    strong = LogisticRegression().fit(X, y)
    weak = LogisticRegression(C=1e-4).fit(X[["hour"]].assign(amount=0.0)[["amount", "hour"]], y)
    shipyard.register(strong, "fraud", X=X, y=y)
    shipyard.register(weak, "fraud", X=X, y=y)
    shipyard.set_alias("fraud", "production", 1)
    return X, y, strong, weak


def wait_for_rows(root: Path, route: str, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        models = PredictionLog(root).models()
        frame = PredictionLog(root).predictions(MODEL) if MODEL in models else None
        logged = 0 if frame is None else int((frame["route"] == route).sum())
        if logged >= count:
            return
        assert time.monotonic() < deadline, f"{logged} of {count} {route} rows logged after {timeout} s"
        time.sleep(0.2)


def test_a_shadow_deployment_through_a_real_server(home: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    import shipyard
    from shipyard.rollouts.spec import DeploymentSpec, Variant

    X, _, strong, weak = two_versions()
    service = shipyard.connect()
    service.deploy(MODEL, DeploymentSpec(kind="shadow", variants=(Variant(1, 100.0),), shadow=2))
    service.store.close()
    config = tmp_path / "serve.yaml"
    config.write_text("logging:\n  flush_interval_s: 0.2\n")
    start: Callable[..., Any] = request.getfixturevalue("start_server")
    server = start(MODEL, "--config", str(config))
    sent = X.iloc[:120]
    for i in range(60):
        body = {"instances": sent.iloc[2 * i : 2 * i + 2].to_dict("records")}
        answer = server.client.post(f"/v1/models/{MODEL}/predict", json=body, headers={"x-request-id": f"q{i}"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-shipyard-version"] == "1"  # the shadow never answers
    wait_for_rows(home / "logs", "shadow", len(sent))

    result = run(home, "compare", MODEL, "--shadow", "--config", str(config), "--json").failed(1)
    report = json.loads(result.out)
    a, b = strong.predict(sent), weak.predict(sent)
    cells = np.abs(strong.predict_proba(sent) - weak.predict_proba(sent))
    assert report["rows"] == len(sent) and report["unmatched"] == 0 and report["coverage"] == 1.0
    assert report["pairs"] == [{"primary": 1, "shadow": 2, "rows": len(sent)}]
    assert report["agreement"] == pytest.approx(float(np.mean(a == b)))
    assert report["confusion"] == confusion_matrix(a, b, labels=[0, 1]).tolist()
    assert report["max_abs_diff"] == pytest.approx(float(cells.max()), rel=1e-6)
    assert report["mean_abs_diff"] == pytest.approx(float(cells.mean()), rel=1e-6)
    assert report["latency"]["primary"]["requests"] == report["latency"]["shadow"]["requests"] == 60
    assert report["flavor_a"] == "primary, route native"
