"""Fixtures of the batch-scoring tests: one registry with a classifier, a forest and a regressor per session.

The models are fitted and registered once (``registry``); every test writes its own files under its
``tmp_path`` and passes the registry's service to :func:`shipyard.batch.score` explicitly, or its home
to the ``shipyard`` command through ``SHIPYARD_HOME``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import shipyard
from shipyard.app import build_service
from shipyard.config import Settings

STAMP = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
FEATURES = ["amount", "items", "channel", "flag"]


def make_rows(rows: int, seed: int = 0) -> pd.DataFrame:
    """Transactions: an id, the model's four features, and a column the model does not use."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "tx_id": np.arange(rows, dtype="int64") + 1_000,
            "amount": np.round(rng.lognormal(3.0, 1.0, rows), 2),
            "items": rng.integers(0, 20, rows).astype("int64"),
            "channel": pd.array(rng.choice(["web", "pos", "app"], rows).tolist(), dtype="str"),
            "flag": rng.random(rows) < 0.3,
            "note": pd.array([f"n{i % 7}" for i in range(rows)], dtype="str"),
        }
    )


def _target(frame: pd.DataFrame, seed: int) -> pd.Series:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 0.5, len(frame))
    return ((np.log(frame["amount"]) + frame["flag"] * 1.5 + noise) > 3.4).astype("int64").rename("label")


@dataclass(frozen=True)
class Registry:
    """The session's registry: where it lives, a service on it, and the fitted models by name."""

    home: Path
    service: shipyard.ModelService
    models: dict[str, Any]


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """fraud:1 (pipeline + logistic regression; alias production), forest:1 (30 trees), price:1 (regressor)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    def features() -> ColumnTransformer:
        return ColumnTransformer(
            [
                ("num", StandardScaler(), ["amount", "items"]),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["channel"]),
                ("flag", "passthrough", ["flag"]),
            ]
        )

    train = make_rows(2_000, seed=1)
    X, y = train[FEATURES], _target(train, seed=1)
    models = {
        "fraud": Pipeline([("features", features()), ("model", LogisticRegression())]).fit(X, y),
        "forest": Pipeline(
            [("features", features()), ("model", RandomForestClassifier(30, max_depth=8, random_state=0))]
        ).fit(X, y),
        "price": Pipeline([("features", features()), ("model", LinearRegression())]).fit(X, train["amount"] * 2),
    }
    home = tmp_path_factory.mktemp("batch-registry")
    service = build_service(Settings(home=home, user="tester"))
    for name, model in models.items():
        service.register(model, name, X=X, y=y if name != "price" else None)
    service.set_alias("fraud", "production", 1)
    yield Registry(home, service, models)
    service.store.close()


def expected_scores(registry: Registry, name: str, rows: pd.DataFrame) -> pd.DataFrame:
    """What the model gives for ``rows`` when called in this process: ``prediction`` and ``proba_<class>``."""
    model = registry.models[name]
    out = pd.DataFrame({"prediction": model.predict(rows[FEATURES])})
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(rows[FEATURES])
        for i, label in enumerate(model.classes_):
            out[f"proba_{label}"] = proba[:, i]
    return out
