"""Events short of a whole block are learnt after ``max_wait_seconds``, and ``online status`` says why events wait."""

from __future__ import annotations

import json
import time

from sklearn.linear_model import SGDClassifier
from tests.online.conftest import stream
from typer.testing import CliRunner

import shipyard
from shipyard.cli.app import app
from shipyard.online import FeedbackEvent, Learner, OnlineSettings, OnlineStore


def test_pending_events_are_learnt_after_the_time_limit_and_status_says_why_they_wait(
    service: shipyard.ModelService,
) -> None:
    X, y = stream(260)
    service.register(SGDClassifier(random_state=0).fit(X[:50], y[:50]), "fraud-online", X=X[:50], y=y[:50], online=True)
    store = OnlineStore(service)
    store.append("fraud-online", [FeedbackEvent(r, t) for r, t in zip(X.tolist(), y.tolist(), strict=True)])
    learner = Learner(service, "fraud-online", OnlineSettings(batch=100, max_wait_seconds=0.3))
    try:
        assert learner.step() == 200  # two whole blocks; the other 60 start waiting
        result = CliRunner().invoke(app, ["online", "status", "fraud-online", "--json"])
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        assert data["pending"] == 60
        # the CLI explains with the default settings: a block of 100 or 5 s
        assert data["pending_reason"].startswith("60 pending: waiting for 40 more events or ")
        assert data["pending_reason"].endswith("(batch of 100 or every 5 s)")
        deadline = time.monotonic() + 5.0
        applied = 0
        while applied == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
            applied = learner.step()
        assert applied == 60
        status = store.status("fraud-online")
        assert (status.pending, status.committed_offset) == (0, 260)  # snapshotted at once: replay stays exact
        snapshot = service.resolve(f"fraud-online:{status.last_snapshot_version}")
        assert snapshot.lineage["online"]["offset"] == 260
    finally:
        learner.release()
    # no learner now: the reason says so rather than leaving the user guessing
    store.append("fraud-online", [FeedbackEvent(X[0].tolist(), int(y[0]))])
    text = CliRunner().invoke(app, ["online", "status", "fraud-online"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert "1 pending: no learner holds the lease" in text.output
