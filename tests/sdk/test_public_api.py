"""The Python SDK as a user meets it: the declared surface, the README flow, signature errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import shipyard
from shipyard.errors import SchemaError


def test_public_surface_is_pinned() -> None:
    assert sorted(shipyard.__all__) == [
        "AliasMove",
        "Client",
        "Model",
        "ModelRef",
        "ModelService",
        "ModelVersion",
        "RegisteredModel",
        "Settings",
        "ShipyardError",
        "Signature",
        "__version__",
        "alias_history",
        "connect",
        "delete_alias",
        "get_model",
        "list_models",
        "list_versions",
        "load",
        "register",
        "register_file",
        "resolve",
        "rollback",
        "set_alias",
    ]
    for name in shipyard.__all__:
        assert getattr(shipyard, name) is not None


@pytest.fixture
def fraud_data() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(7)
    n = 400
    X = pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 60.0, n),
            "merchant_id": rng.integers(0, 50, n),
            "hour": rng.integers(0, 24, n),
        }
    )
    y = pd.Series(((X["amount"] > 150) ^ (X["hour"] < 3)).astype(int), name="is_fraud")
    return X, y


def test_readme_flow(home: Path, fraud_data: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = fraud_data
    X_train, X_test, y_train = X[:300], X[300:], y[:300]
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X_train, y_train)
    mv = shipyard.register(pipe, name="fraud", X=X_train, y=y_train, metrics={"auc": 0.97}, tags={"team": "risk"})
    assert mv.version == 1
    shipyard.register(pipe, name="other", model_description="card fraud", model_tags={"owner": "risk"})
    assert (shipyard.get_model("other").description, shipyard.get_model("other").tags) == (
        "card fraud",
        {"owner": "risk"},
    )
    assert shipyard.set_alias("fraud", "production", mv.version) is not None
    second = shipyard.register(pipe, name="fraud", X=X_train, y=y_train)
    shipyard.set_alias("fraud", "production", second.version)

    for ref in ("fraud@production", "fraud:2", "fraud"):
        model = shipyard.load(ref)
        assert model.version == 2
        np.testing.assert_array_equal(model.predict(X_test), pipe.predict(X_test))
        np.testing.assert_allclose(model.predict_proba(X_test), pipe.predict_proba(X_test))
    assert shipyard.load("fraud").classes == [0, 1]

    move = shipyard.rollback("fraud")
    assert (move.from_version, move.to_version) == (2, 1)
    assert shipyard.load("fraud").version == 1
    info = shipyard.get_model("fraud")
    assert info.aliases == {"production": 1}
    assert info.latest_version == 2
    stored = shipyard.list_versions("fraud")[-1]
    assert stored.metrics == {"auc": 0.97}
    assert stored.tags == {"team": "risk"}
    assert stored.signature == {
        "inputs": [
            {"name": "amount", "dtype": "float64", "nullable": False},
            {"name": "merchant_id", "dtype": "int64", "nullable": False},
            {"name": "hour", "dtype": "int64", "nullable": False},
        ],
        "outputs": [{"name": "is_fraud", "dtype": "int64"}],
    }
    assert set(stored.environment) >= {"python", "scikit-learn", "skops", "numpy"}


def test_input_is_checked_against_the_signature(home: Path, fraud_data: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = fraud_data
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    shipyard.register(pipe, name="fraud", X=X, y=y)
    model = shipyard.load("fraud")
    good = {"amount": 12.5, "merchant_id": 3, "hour": 4}

    with pytest.raises(SchemaError, match=r"column 'amount': expected float64, got string 'abc' \(row 3\)"):
        model.predict([good, good, good, {**good, "amount": "abc"}])
    with pytest.raises(SchemaError, match="missing column 'merchant_id'"):
        model.predict([{"amount": 1.0, "hour": 2}])
    with pytest.raises(SchemaError, match="unexpected column 'note'"):
        model.predict([{**good, "note": "x"}])
    with pytest.raises(SchemaError, match=r"column 'hour': expected int64, got float 2.5 \(row 0\)"):
        model.predict([{**good, "hour": 2.5}])
    with pytest.raises(SchemaError, match=r"column 'merchant_id': expected int64, got null \(row 1\)"):
        model.predict([good, {**good, "merchant_id": None}])

    # Accepted shapes: records, columns, frames (any column order), rows of values, extra columns when allowed.
    expected = pipe.predict(pd.DataFrame([good]))
    for data in (
        [good],
        {k: [v] for k, v in good.items()},
        pd.DataFrame([good])[["hour", "amount", "merchant_id"]],
        [[12.5, 3, 4]],
        [{**good, "amount": 12}],  # an int where a float is expected is safe
    ):
        np.testing.assert_array_equal(model.predict(data), expected)
    np.testing.assert_array_equal(model.predict([{**good, "note": "x"}], allow_extra=True), expected)


def test_tensor_signature_checks_shape_and_type(home: Path) -> None:
    X = np.random.default_rng(0).normal(size=(50, 3))
    y = (X[:, 0] > 0).astype(int)
    shipyard.register(LogisticRegression().fit(X, y), name="arr", X=X, y=y)
    model = shipyard.load("arr")
    assert model.signature is not None
    assert model.signature.tensor is not None
    assert model.signature.tensor.shape == (None, 3)
    assert model.predict(X[:4]).tolist() == LogisticRegression().fit(X, y).predict(X[:4]).tolist()
    with pytest.raises(SchemaError, match=r"expected an array of shape \(N, 3\), got \(2, 2\)"):
        model.predict([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(SchemaError, match=r"expected float64, got string 'x' \(row 1\)"):
        model.predict([[1.0, 2.0, 3.0], [1.0, "x", 3.0]])


def test_metrics_must_be_numbers(home: Path) -> None:
    from shipyard.errors import InvalidInput

    with pytest.raises(InvalidInput, match="metric 'auc' must be a number"):
        shipyard.register(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), "m", metrics={"auc": "high"})
    with pytest.raises(shipyard.ShipyardError):
        shipyard.get_model("m")


def test_unsupported_objects_are_refused_with_the_supported_kinds(home: Path) -> None:
    from shipyard.errors import UnsupportedModel

    with pytest.raises(UnsupportedModel, match="scikit-learn estimators and pipelines, ONNX"):
        shipyard.register({"not": "a model"}, "m")
