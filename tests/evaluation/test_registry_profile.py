"""Registration stores a reference profile of the training data and the model's predictions; the CLI shows it."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from typer.testing import CliRunner

import shipyard
from shipyard.cli.app import app


def _frame(rows: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3.0, 1.0, rows)
    hour = rng.integers(0, 24, rows).astype(np.float64)
    country = rng.choice(["FR", "DE", "IT", "ES"], size=rows, p=[0.4, 0.3, 0.2, 0.1])
    X = pd.DataFrame({"amount": amount, "hour": hour, "country": country, "weekend": rng.uniform(size=rows) < 0.3})
    score = np.log(amount) - 3.0 + (country == "FR") * 0.8 + rng.normal(0.0, 0.5, rows)
    return X, (score > 0).astype(np.int64)


def _classifier(X: pd.DataFrame, y: np.ndarray) -> object:
    encode = ColumnTransformer(
        [("num", StandardScaler(), ["amount", "hour"]), ("cat", OneHotEncoder(), ["country", "weekend"])]
    )
    return make_pipeline(encode, LogisticRegression()).fit(X, y)


def test_register_stores_a_profile_equal_to_numpy_on_the_same_rows(service: shipyard.ModelService) -> None:
    X, y = _frame(3_000)
    model = _classifier(X, y)
    registered = service.register(model, "fraud", X=X, y=y)
    stored = shipyard.connect().resolve("fraud:1").profile  # read back through a fresh connection
    assert stored is not None
    assert stored == registered.profile
    assert stored["rows"] == 3_000
    amount = stored["features"]["amount"]
    assert amount["kind"] == "numeric"
    assert amount["mean"] == pytest.approx(X["amount"].mean())
    assert amount["std"] == pytest.approx(np.std(X["amount"].to_numpy()))
    assert (amount["min"], amount["max"]) == (X["amount"].min(), X["amount"].max())
    assert amount["quantiles"] == pytest.approx(np.percentile(X["amount"], np.arange(101)).tolist())
    assert sum(amount["counts"]) == 3_000
    hour = stored["features"]["hour"]
    assert hour["kind"] == "numeric" and hour["mean"] == pytest.approx(X["hour"].mean())
    country = stored["features"]["country"]
    assert country["kind"] == "categorical"
    assert country["frequencies"] == pytest.approx(X["country"].value_counts(normalize=True).to_dict())
    assert stored["features"]["weekend"]["frequencies"]["True"] == pytest.approx(X["weekend"].mean())
    predictions = model.predict(X)  # type: ignore[attr-defined]
    proba = model.predict_proba(X)  # type: ignore[attr-defined]
    assert stored["prediction"]["kind"] == "categorical"
    assert stored["prediction"]["frequencies"]["1"] == pytest.approx(np.mean(predictions == 1))
    assert list(stored["probabilities"]) == ["0", "1"]
    assert stored["probabilities"]["1"]["mean"] == pytest.approx(proba[:, 1].mean())
    assert stored["probabilities"]["1"]["quantiles"] == pytest.approx(np.percentile(proba[:, 1], np.arange(101)))


def test_a_regressor_on_an_array_gets_a_numeric_prediction_profile(service: shipyard.ModelService) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 3))
    model = LinearRegression().fit(X, X @ [1.0, 2.0, 3.0])
    profile = service.register(model, "line", X=X).profile
    assert profile is not None
    assert list(profile["features"]) == ["f0", "f1", "f2"]
    assert profile["features"]["f2"]["mean"] == pytest.approx(X[:, 2].mean())
    assert profile["prediction"]["kind"] == "numeric"
    assert profile["prediction"]["mean"] == pytest.approx(model.predict(X).mean())
    assert "probabilities" not in profile


def test_at_most_100000_rows_are_profiled(service: shipyard.ModelService) -> None:
    rng = np.random.default_rng(2)
    X = pd.DataFrame({"x": rng.normal(5.0, 2.0, 150_000)})
    model = LinearRegression().fit(X, X["x"] * 2.0)
    profile = service.register(model, "big", X=X).profile
    assert profile is not None and profile["rows"] == 100_000
    entry = profile["features"]["x"]
    assert entry["mean"] == pytest.approx(X["x"].mean(), abs=0.05)  # a uniform sample, not the first rows
    assert (X["x"].min() <= entry["min"]) and (entry["max"] <= X["x"].max())
    again = service.register(model, "big", X=X).profile
    assert again == profile  # the sample is drawn with a fixed seed


def test_without_data_or_when_profiling_fails_the_version_is_still_registered(
    service: shipyard.ModelService, caplog: pytest.LogCaptureFixture
) -> None:
    X, y = _frame(200)
    numeric = X[["amount", "hour"]]
    model = LogisticRegression().fit(numeric.to_numpy(), y)
    assert service.register(model, "plain").profile is None  # no data, no profile
    with caplog.at_level(logging.WARNING, logger="shipyard.service"):
        wrong = service.register(model, "plain", X=X[["amount"]])  # the model needs two columns: predict fails
    assert wrong.version == 2 and wrong.profile is None
    assert service.resolve("plain:2").profile is None
    assert any("could not profile the training data of plain" in r.getMessage() for r in caplog.records)


def test_a_version_registered_from_a_parent_without_data_keeps_the_parents_profile(
    service: shipyard.ModelService,
) -> None:
    """Online snapshots are registered with a parent and no rows: they monitor against the base's profile."""
    X, y = _frame(300)
    model = _classifier(X, y)
    base = service.register(model, "fraud", X=X, y=y)
    assert base.profile is not None and "inherited_from" not in base.profile
    snapshot = service.register(model, "fraud", parent=1)
    again = service.register(model, "fraud", parent=2)
    assert snapshot.profile == {**base.profile, "inherited_from": 1}
    assert service.resolve("fraud:3").profile == {**base.profile, "inherited_from": 1}
    assert again.profile == snapshot.profile
    assert service.register(model, "fraud").profile is None  # no data and no parent: nothing to inherit


def test_models_show_prints_the_profile(service: shipyard.ModelService) -> None:
    X, y = _frame(1_000)
    service.register(_classifier(X, y), "fraud", X=X, y=y)
    model = LinearRegression().fit(X[["amount"]], y)
    service.register(model, "fraud")
    runner = CliRunner()
    shown = runner.invoke(app, ["models", "show", "fraud:1"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "Reference profile of fraud:1 (1,000 rows)" in shown.stdout
    lines = {line.split()[1]: line for line in shown.stdout.splitlines() if line.startswith("│ ")}
    assert "numeric" in lines["amount"] and f"{X['amount'].mean():.4g}" in lines["amount"]
    assert "categorical" in lines["country"] and "FR " in lines["country"]
    share = X["country"].value_counts(normalize=True)["FR"]
    assert f"FR {share:.1%}" in lines["country"]
    assert "(prediction)" in lines and "(proba" in lines
    newest = runner.invoke(app, ["models", "show", "fraud"], env={"COLUMNS": "200"})
    assert newest.exit_code == 0, newest.output
    assert "fraud:2 has no reference profile" in newest.stdout


def test_training_stores_the_profile_of_its_rows(service: shipyard.ModelService, tmp_path: Path) -> None:
    from shipyard.training import train

    X, y = _frame(2_000, seed=3)
    frame = X[["amount", "hour"]].assign(is_fraud=y)
    frame.to_parquet(tmp_path / "tx.parquet", index=False)
    spec = {
        "name": "trained",
        "data": {"source": str(tmp_path / "tx.parquet")},
        "target": "is_fraud",
        "features": ["amount", "hour"],
        "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
        "validation": {"holdout": 0.25, "seed": 0},
        "metrics": ["accuracy"],
    }
    result = train(spec, service=service)
    profile = result.version.profile
    assert profile is not None
    assert profile["rows"] == result.rows  # every training row, not the 100-row signature sample
    assert profile["features"]["amount"]["min"] > 0 and profile["features"]["amount"]["max"] <= X["amount"].max()
    assert set(profile["probabilities"]) == {"0", "1"}


def test_a_database_at_0004_upgrades_to_0005_keeping_its_rows_and_back(backend: str, home: Path) -> None:
    """The profile column (0005) is added to an existing registry: old versions have none; new ones get one."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import inspect, text

    from shipyard.config import Settings
    from shipyard.registry.store import SCHEMA_HEAD, _make_engine

    engine = _make_engine(Settings().resolved_registry_url())
    config = Config()
    config.set_main_option("script_location", "shipyard.registry:migrations")

    def move(to: str, how: str = "upgrade") -> None:
        with engine.connect().execution_options(shipyard_write=True) as conn, conn.begin():
            config.attributes["connection"] = conn
            getattr(command, how)(config, to)

    def columns() -> set[str]:
        with engine.connect() as conn:
            return {c["name"] for c in inspect(conn).get_columns("model_versions")}

    move("0004")
    assert "profile" not in columns()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO models (name, description, tags, latest_version, created_at, updated_at) "
                "VALUES ('old', 'before profiles', '{}', 1, :now, :now)"
            ),
            {"now": "2026-11-20 12:00:00+00:00"},
        )
        conn.execute(
            text(
                "INSERT INTO model_versions (model_id, version, flavor, artifact_uri, sha256, size_bytes, metrics, "
                "params, tags, flavor_meta, environment, description, creator, created_at, lineage) VALUES "
                "((SELECT id FROM models WHERE name = 'old'), 1, 'sklearn', 'file:///nowhere/model.skops', :sha, 10, "
                "'{\"auc\": 0.9}', '{}', '{}', '{}', '{}', 'v1', 'someone', :now, '{\"rows\": 5}')"
            ),
            {"sha": "0" * 64, "now": "2026-11-20 12:00:00+00:00"},
        )

    service = shipyard.connect()  # first use migrates to the head
    (old,) = service.list_versions("old")
    assert (old.version, old.metrics, old.lineage, old.profile) == (1, {"auc": 0.9}, {"rows": 5}, None)
    assert SCHEMA_HEAD >= "0005" and "profile" in columns()
    X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    new = service.register(LinearRegression().fit(X, [0.0, 2.0, 4.0, 6.0]), "old", X=X)
    assert new.version == 2 and new.profile is not None and new.profile["rows"] == 4
    service.store.close()

    move("0004", "downgrade")
    assert "profile" not in columns()
    move("0005")
    assert "profile" in columns()
    engine.dispose()
