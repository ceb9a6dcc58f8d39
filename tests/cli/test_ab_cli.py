"""``shipyard ab report`` as a user runs it (a real ``shipyard`` process over a log the real logger wrote)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import accuracy_score
from tests.cli.test_cli import run, run_many
from tests.evaluation.test_abtest import Arm, primary_joined, write_log, z_test
from tests.evaluation.test_shadow_compare import two_versions, wait_for_rows
from tests.serving.conftest import start_server  # noqa: F401  (the fixture: a real `shipyard serve`)

from shipyard.evaluation.abtest import ab_report
from shipyard.monitoring.logs import PredictionLog


def test_the_report_as_json_and_as_tables(home: Path) -> None:
    write_log(home / "logs", [Arm(3, labelled=400, correct=300, unlabelled=100), Arm(4, labelled=400, correct=370)])
    as_json, text, small = run_many(
        home,
        ["ab", "report", "fraud", "--since", "1h", "--json"],
        ["ab", "report", "fraud"],
        ["ab", "report", "fraud", "--min-labels", "100000", "--confidence", "0.99"],
    )
    report = json.loads(as_json.ok().out)
    expected = ab_report(PredictionLog(home / "logs"), "fraud").to_dict()
    assert report["window"] == "last 1h"
    assert {k: v for k, v in report.items() if k != "window"} == {k: v for k, v in expected.items() if k != "window"}
    joined = primary_joined(home / "logs")
    three = joined[joined["version"] == 3]
    assert report["variants"][0]["value"] == pytest.approx(float((three["prediction"] == three["label"]).mean()))
    v3, v4 = report["variants"]
    assert report["p_value"] == pytest.approx(z_test(v4["correct"], v4["labelled"], v3["correct"], v3["labelled"]))
    assert report["outcome"] == "better" and report["winner"] == 4

    lines = text.ok().out.rstrip().splitlines()
    assert lines[-1] == report["verdict"] and lines[-1].startswith("version 4 is better (p=")
    assert any(line.startswith("two-proportion z-test, version 4 vs version 3: statistic") for line in lines)
    table = "\n".join(lines)
    for column in ("requests", "share", "p50 ms", "p99 ms", "labelled", "accuracy", "95% CI"):
        assert column in table
    assert f"{v3['value']:.2%}" in table and f"{v4['requests']:,}" in table

    last = small.ok().out.rstrip().splitlines()
    assert last[-1].startswith("sample too small to decide: need >= 100,000 labelled rows per variant (have version 3:")
    assert any("99% CI" in line for line in last)


def test_the_log_of_a_serve_config_and_one_line_errors(home: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    write_log(elsewhere, [Arm(3, labelled=20, correct=10), Arm(4, labelled=20, correct=12)], task="regression")
    config = tmp_path / "serve.yaml"
    config.write_text(f"logging:\n  path: {elsewhere}\n")
    ok, regression, *errors = run_many(
        home,
        ["ab", "report", "fraud", "--config", str(config), "--versions", "3"],
        ["ab", "report", "fraud", "--config", str(config), "--json"],
        ["ab", "report", "fraud"],
        ["ab", "report", "fraud", "--config", str(config), "--since", "soon"],
        ["ab", "report", "fraud", "--config", str(config), "--task", "ranking"],
        ["ab", "report", "fraud", "--config", str(config), "--versions", "three"],
        ["ab", "report", "fraud", "--config", str(config), "--versions", "9"],
    )
    assert (
        ok.ok().out.rstrip().splitlines()[-1]
        == "only version 3 served primary traffic in the window: nothing to compare"
    )
    as_json = json.loads(regression.ok().out)
    assert as_json["task"] == "regression" and as_json["metric"] == "mae" and as_json["outcome"] == "too-small"
    messages = [
        "no prediction log for model 'fraud'",
        "cannot read 'soon' as a time",
        "--task must be classification or regression",
        "--versions expects version numbers",
        "no primary predictions of version(s) 9",
    ]
    for result, message in zip(errors, messages, strict=True):
        assert message in result.failed(1).error_line, result.args
    usage = run(home, "ab", "report", "fraud", "--confidence", "1.5")
    assert usage.code == 2 and "Traceback" not in usage.err


def test_an_ab_deployment_through_a_real_server_with_feedback(
    home: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Requests split 50/50 by the server, labels sent to its feedback route; the report's figures equal those
    computed from the answers the clients received (which version answered, what it said)."""
    import shipyard
    from shipyard.rollouts.spec import DeploymentSpec, parse_ab

    X, y, _, _ = two_versions(rows=800, seed=1)
    service = shipyard.connect()
    service.deploy("fraud", DeploymentSpec(kind="ab", variants=parse_ab("1:50,2:50")))
    service.store.close()
    config = tmp_path / "serve.yaml"
    config.write_text("logging:\n  flush_interval_s: 0.2\n")
    start: Callable[..., Any] = request.getfixturevalue("start_server")
    server = start("fraud", "--config", str(config))
    served: dict[int, list[tuple[int, int]]] = {1: [], 2: []}
    labels = []
    for i in range(len(X)):
        body = {"instances": [X.iloc[i].to_dict()]}
        answer = server.client.post("/v1/models/fraud/predict", json=body, headers={"x-request-id": f"ab{i}"})
        assert answer.status_code == 200, answer.text
        version = int(answer.headers["x-shipyard-version"])
        served[version].append((int(answer.json()["predictions"][0]), int(y.iloc[i])))
        labels.append({"request_id": f"ab{i}", "label": int(y.iloc[i])})
    sent = server.client.post("/v1/models/fraud/feedback", json={"labels": labels})
    assert sent.status_code == 202, sent.text
    wait_for_rows(home / "logs", "native", len(X))

    report = json.loads(run(home, "ab", "report", "fraud", "--config", str(config), "--json").ok().out)
    for entry in report["variants"]:
        pairs = np.array(served[entry["version"]])
        assert entry["requests"] == entry["rows"] == entry["labelled"] == len(pairs)
        assert entry["share_pct"] == pytest.approx(100 * len(pairs) / len(X))
        assert entry["value"] == pytest.approx(accuracy_score(pairs[:, 1], pairs[:, 0]))
    assert abs(report["variants"][0]["share_pct"] - 50) < 10
    accuracy = {v: accuracy_score(np.array(p)[:, 1], np.array(p)[:, 0]) for v, p in served.items()}
    assert accuracy[1] > accuracy[2] + 0.1
    assert report["outcome"] == "better" and report["winner"] == 1 and report["verdict"].startswith("version 1 is")
