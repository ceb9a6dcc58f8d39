"""``shipyard logs query`` and ``shipyard logs show`` as a user runs them (a real ``shipyard`` process)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.cli.test_cli import run

from shipyard.monitoring.predlog import PredictionLogger
from shipyard.serving.settings import LogSettings

ROWS = [{"amount": float(10 * i), "channel": ["web", "pos"][i % 2]} for i in range(6)]


def write_log(root: Path, **settings: Any) -> None:
    """Six one-row requests of ``fraud`` (versions 1 then 2) and two labels."""
    logger = PredictionLogger(LogSettings(path=root, **settings), home=root)
    logger.start()
    for i, row in enumerate(ROWS):
        proba = [1.0 - i / 10, i / 10]
        logger.record("fraud", 1 + i // 3, "native", f"r{i}", [row], ["amount", "channel"], np.array([i % 2]),
                      np.array([proba]), 0.001, input_types=["float64", "string"])  # fmt: skip
    logger.record_labels("fraud", [("r1", 1), ("r2", 1)])
    logger.close()


def test_query_prints_a_table_or_json(home: Path) -> None:
    write_log(home / "logs")
    sql = "select version, count(*) as n, sum(input.amount) as total from predictions group by 1 order by 1"
    table = run(home, "logs", "query", "fraud", "--since", "1h", "--sql", sql).ok().out
    assert "version" in table and "total" in table
    as_json = json.loads(run(home, "logs", "query", "fraud", "--sql", sql, "--json").ok().out)
    assert as_json == [
        {"version": 1, "n": 3, "total": sum(r["amount"] for r in ROWS[:3])},
        {"version": 2, "n": 3, "total": sum(r["amount"] for r in ROWS[3:])},
    ]
    joined = "select p.request_id, p.prediction, l.label from predictions p join labels l using (request_id) order by 1"
    assert json.loads(run(home, "logs", "query", "fraud", "--sql", joined, "--json").ok().out) == [
        {"request_id": "r1", "prediction": 1, "label": 1},
        {"request_id": "r2", "prediction": 0, "label": 1},
    ]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    empty = run(home, "logs", "query", "fraud", "--since", future, "--sql", "select * from predictions", "--json")
    assert json.loads(empty.ok().out) == []


def test_show_prints_the_newest_predictions(home: Path) -> None:
    write_log(home / "logs")
    out = run(home, "logs", "show", "fraud", "--last", "2").ok().out
    assert "r4" in out and "r5" in out and "r3" not in out
    rows = json.loads(run(home, "logs", "show", "fraud", "--last", "3", "--json").ok().out)
    assert [r["request_id"] for r in rows] == ["r3", "r4", "r5"]
    assert [r["amount"] for r in rows] == [r["amount"] for r in ROWS[3:]]
    assert [r["channel"] for r in rows] == [r["channel"] for r in ROWS[3:]]
    assert [r["probabilities"] for r in rows] == [[1.0 - i / 10, i / 10] for i in (3, 4, 5)]
    assert {r["version"] for r in rows} == {2} and {r["route"] for r in rows} == {"native"}
    assert all(datetime.fromisoformat(r["ts"]).tzinfo is not None for r in rows)


def test_the_log_of_a_serve_config(home: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    write_log(elsewhere)
    config = tmp_path / "serve.yaml"
    config.write_text(f"logging:\n  path: {elsewhere}\n")
    assert "r5" in run(home, "logs", "show", "fraud", "--config", str(config)).ok().out
    assert "no prediction log" in run(home, "logs", "show", "fraud").failed().error_line  # not in $SHIPYARD_HOME


@pytest.mark.postgres
def test_the_postgres_log_of_a_serve_config(home: Path, tmp_path: Path, postgres_url: str) -> None:
    write_log(tmp_path / "unused", backend="postgres", postgres_url=postgres_url)
    config = tmp_path / "serve.yaml"
    config.write_text(f"logging:\n  backend: postgres\n  postgres_url: {postgres_url}\n")
    sql = "select count(*) n from predictions"
    out = run(home, "logs", "query", "fraud", "--config", str(config), "--json", "--sql", sql)
    assert json.loads(out.ok().out) == [{"n": 6}]
    assert not (tmp_path / "unused").exists()


def test_errors_are_one_line(home: Path, tmp_path: Path) -> None:
    no_logs = run(home, "logs", "show", "fraud").failed().error_line
    assert "no prediction log for model 'fraud'" in no_logs and "serve a model" in no_logs
    write_log(home / "logs")
    assert "the SQL query failed" in run(home, "logs", "query", "fraud", "--sql", "selec 1").failed().error_line
    assert "nope" in run(home, "logs", "query", "fraud", "--sql", "select nope from predictions").failed().error_line
    unknown = run(home, "logs", "query", "other", "--sql", "select 1").failed().error_line
    assert "'other'" in unknown and "fraud" in unknown
    assert "30m, 1h" in run(home, "logs", "show", "fraud", "--since", "soon").failed().error_line
    bad = tmp_path / "bad.yaml"
    bad.write_text("logging:\n  backend: postgres\n")
    assert "postgres_url" in run(home, "logs", "show", "fraud", "--config", str(bad)).failed().error_line
    run(home, "logs", "query", "fraud").failed(2)  # --sql is required: a usage error
