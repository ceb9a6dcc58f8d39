"""``shipyard online status|alerts|pause|resume|reset``, through the real command line (in-process)."""

from __future__ import annotations

import json

from sklearn.linear_model import SGDClassifier
from tests.online.conftest import stream
from typer.testing import CliRunner

import shipyard
from shipyard.cli.app import app
from shipyard.online import FeedbackEvent, OnlineStore


def test_status_pause_resume_reset_and_alerts(service: shipyard.ModelService) -> None:
    X, y = stream(300)
    service.register(SGDClassifier(random_state=0).fit(X[:100], y[:100]), "fraud-online", X=X[:100], y=y[:100],
                     online=True)
    OnlineStore(service).append("fraud-online", [FeedbackEvent(r, t) for r, t in zip(X.tolist(), y.tolist(),
                                                                                      strict=True)])
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, ["online", *args], env={"COLUMNS": "200", "NO_COLOR": "1"})
        assert result.exit_code == 0, result.output
        return result.output

    data = json.loads(run("status", "fraud-online", "--json"))
    assert (data["last_offset"], data["pending"], data["paused"], data["metric_name"]) == (300, 300, False, "accuracy")
    assert "300 received" in run("status", "fraud-online")
    assert "paused" in run("pause", "fraud-online")
    assert json.loads(run("status", "fraud-online", "--json"))["paused"] is True
    assert "resumed" in run("resume", "fraud-online")
    assert "learning from offset 300" in run("reset", "fraud-online")
    assert "reset" in run("alerts", "fraud-online")
    assert runner.invoke(app, ["online", "status", "nope"]).exit_code != 0
