"""One drift threshold source: ``shipyard monitor`` and the server's live monitor, given the same serve config and
the same logged rows, apply the same thresholds, reach the same verdicts and word them the same way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from tests.monitoring.conftest import frame, pipeline, truth
from typer.testing import CliRunner

import shipyard
from shipyard.cli.app import app
from shipyard.evaluation.drift import DriftThresholds
from shipyard.monitoring.live import LiveMonitor, registry_profiles
from shipyard.monitoring.logs import PredictionLog
from shipyard.monitoring.predlog import PredictionLogger
from shipyard.serving.settings import LogSettings, ServeSettings

COLUMNS, TYPES = ["amount", "hour", "channel"], ["float64", "int64", "string"]


def _live(n: int) -> pd.DataFrame:
    """The training distribution with the channel mix moved a little (PSI about 0.04, a clear chi2)."""
    X = frame(n, seed=5)
    rng = np.random.default_rng(5)
    X["channel"] = rng.choice(["web", "pos", "app"], n, p=[0.4, 0.35, 0.25]).astype(object)
    return X


def test_the_cli_and_the_live_monitor_share_thresholds_verdicts_and_words(home: Path, tmp_path: Path) -> None:
    X = frame(2000, seed=0)
    model = pipeline(X, truth(X, seed=0))
    service = shipyard.connect()
    service.register(model, "fraud", X=X, y=truth(X, seed=0))
    logs = tmp_path / "logs"
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({"logging": {"path": str(logs)},
                                      "monitoring": {"psi_warn": 0.02, "psi_alert": 0.5}}))  # fmt: skip
    live = _live(1000)
    logger = PredictionLogger(LogSettings(path=logs), home=logs)
    logger.start()
    for start in range(0, len(live), 100):
        part = live.iloc[start : start + 100]
        rows = part.to_dict("records")
        logger.record("fraud", 1, "native", f"r{start}", rows, COLUMNS, model.predict(part),
                      model.predict_proba(part), 0.002, input_types=TYPES)  # fmt: skip
    logger.close()

    result = CliRunner().invoke(app, ["monitor", "fraud", "--config", str(config), "--json"])
    report = json.loads(result.stdout)
    assert report["thresholds"] == {"psi_warn": 0.02, "psi_alert": 0.5, "p_value": 0.05, "min_samples": 100}
    cli = {d["feature"]: d for d in report["drift"]}
    assert cli["channel"]["verdict"] == "alert" and result.exit_code == 1  # the server's 0.02, not the CLI's 0.1

    thresholds = DriftThresholds.from_settings(ServeSettings.from_file(config).monitoring)
    monitor = LiveMonitor(registry_profiles(service), window_rows=1000, thresholds=thresholds)
    monitor.listen("fraud", 1, PredictionLog(logs).query("fraud", "SELECT * FROM predictions"))
    alerts = {a.feature: a for a in monitor.check() if a.kind == "drift"}
    served = {d.feature: d for d in monitor.status[("fraud", 1)].drift}
    assert {f: d.verdict for f, d in served.items()} == {f: d["verdict"] for f, d in cli.items()}
    assert served["channel"].psi == cli["channel"]["psi"]

    channel = alerts["channel"]
    assert channel.threshold == 0.02  # the threshold the verdict crossed, as the CLI's sentence says
    cli_sentence = next(s for s in report["alerts"] if s.startswith("channel:"))
    assert channel.reason == cli_sentence
    assert "PSI 0.0" in cli_sentence and ">= warn threshold 0.02 and chi2 p-value" in cli_sentence
    assert channel.sentence() == f"fraud:1: drift of {cli_sentence}"  # the server log's line
    assert set(alerts) == {s.split(":")[0] for s in report["alerts"]}
