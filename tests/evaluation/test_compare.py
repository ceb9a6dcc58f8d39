"""``shipyard.evaluation.compare``: two registered models scored on the same rows, checked against figures
computed independently (with the scikit-learn / XGBoost / onnxruntime objects themselves and NumPy)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import confusion_matrix
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

import shipyard
from shipyard.errors import InvalidInput, ModelNotFound, NotFound, PredictionFailed, SchemaError, VersionNotFound
from shipyard.evaluation.compare import Comparison, compare

FEATURES = ["amount", "hour", "items", "score"]


def make_frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 30.0, rows),
            "hour": rng.integers(0, 24, rows),
            "items": rng.integers(1, 6, rows),
            "score": rng.normal(0.0, 1.0, rows),
        }
    )


def make_labels(X: pd.DataFrame, seed: int) -> np.ndarray[Any, Any]:
    """Three classes, noisy, so that two different models disagree on some rows."""
    rng = np.random.default_rng(seed)
    signal = X["amount"] / 60 + X["score"] + rng.normal(0, 0.8, len(X))
    return np.digitize(signal, [0.8, 2.0])


@pytest.fixture
def service(home: Path) -> Iterator[shipyard.ModelService]:
    svc = shipyard.connect()
    yield svc
    svc.store.close()


@pytest.fixture(scope="module")
def train() -> tuple[pd.DataFrame, np.ndarray[Any, Any]]:
    X = make_frame(1500, seed=1)
    return X, make_labels(X, seed=2)


@pytest.fixture(scope="module")
def holdout() -> pd.DataFrame:
    return make_frame(2500, seed=3)


@pytest.fixture
def classifiers(service: shipyard.ModelService, train: tuple[pd.DataFrame, np.ndarray[Any, Any]]) -> tuple[Any, Any]:
    """fraud:1 a scaled logistic regression, fraud:2 a shallow tree: trained differently on the same rows."""
    X, y = train
    first = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    second = DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, y)
    service.register(first, "fraud", X=X)
    service.register(second, "fraud", X=X)
    return first, second


def independent(first: Any, second: Any, X: pd.DataFrame) -> dict[str, Any]:
    """The figures compare() should report, from the estimators themselves."""
    pa, pb = first.predict_proba(X), second.predict_proba(X)
    assert list(first.classes_) == list(second.classes_)
    la, lb = first.predict(X), second.predict(X)
    diff = np.abs(pa - pb)
    return {
        "agreement": float(np.mean(la == lb)),
        "max": float(diff.max()),
        "mean": float(diff.mean()),
        "row_diff": diff.max(axis=1),
        "labels_a": la,
        "labels_b": lb,
        "confusion": confusion_matrix(la, lb, labels=first.classes_),
    }


def test_a_model_against_itself_passes(
    service: shipyard.ModelService, classifiers: tuple[Any, Any], holdout: pd.DataFrame
) -> None:
    first, _ = classifiers
    result = compare(service, "fraud:1", "fraud:1", holdout)
    assert result.passed and result.verdict == "pass" and result.reasons == ()
    assert (result.rows, result.agreement, result.disagreements) == (len(holdout), 1.0, 0)
    assert result.max_abs_diff == 0.0 and result.mean_abs_diff == 0.0
    assert result.task == "classification" and result.classes == (0, 1, 2) and result.labels == (0, 1, 2)
    counts = pd.Series(first.predict(holdout)).value_counts()
    assert np.array_equal(np.diag(result.confusion), [counts.get(c, 0) for c in (0, 1, 2)])
    assert np.sum(result.confusion) == len(holdout) and np.trace(result.confusion) == len(holdout)
    assert result.top == ()


def test_two_versions_trained_differently_fail_with_independent_figures(
    service: shipyard.ModelService, classifiers: tuple[Any, Any], holdout: pd.DataFrame
) -> None:
    first, second = classifiers
    expected = independent(first, second, holdout)
    assert 0.5 < expected["agreement"] < 1.0  # the scenario: they mostly agree, but not everywhere
    result = compare(service, "fraud:1", "fraud:2", holdout, top=5)

    assert not result.passed and result.verdict == "fail"
    assert result.agreement == expected["agreement"]
    assert result.disagreements == int(np.sum(expected["labels_a"] != expected["labels_b"]))
    assert result.max_abs_diff == pytest.approx(expected["max"], abs=1e-12)
    assert result.mean_abs_diff == pytest.approx(expected["mean"], rel=1e-9)
    assert np.array_equal(np.array(result.confusion), expected["confusion"])
    assert len(result.reasons) == 2
    assert result.reasons[0].startswith(f"label agreement {expected['agreement']:.6g} is below the minimum 1")
    assert result.reasons[1].startswith("max absolute probability difference")

    # the worst rows: labels that differ first, by the largest probability difference
    differs = expected["labels_a"] != expected["labels_b"]
    order = np.lexsort((np.arange(len(holdout)), -expected["row_diff"], -differs.astype(int)))[:5]
    assert [row.row for row in result.top] == order.tolist()
    worst = result.top[0]
    assert worst.prediction_a == expected["labels_a"][worst.row]
    assert worst.prediction_b == expected["labels_b"][worst.row]
    assert worst.difference == pytest.approx(expected["row_diff"][worst.row], abs=1e-12)
    assert worst.features == {
        "amount": holdout["amount"][worst.row],
        "hour": holdout["hour"][worst.row],
        "items": holdout["items"][worst.row],
        "score": holdout["score"][worst.row],
    }
    assert type(worst.features["hour"]) is int  # plain Python values, the column's own type

    # the thresholds move the verdict: generous enough and it passes
    assert compare(service, "fraud:1", "fraud:2", holdout, atol=1.0, min_agreement=0.5).passed
    only_labels = compare(service, "fraud:1", "fraud:2", holdout, atol=1.0)
    assert only_labels.reasons == (result.reasons[0],)


def test_to_dict_is_strict_json(
    service: shipyard.ModelService, classifiers: tuple[Any, Any], holdout: pd.DataFrame
) -> None:
    import json

    data = compare(service, "fraud:1", "fraud:2", holdout, top=3).to_dict()
    again = json.loads(json.dumps(data, allow_nan=False))
    assert again["verdict"] == "fail" and again["rows"] == len(holdout) and len(again["top"]) == 3
    assert again["labels"] == [0, 1, 2] and sum(map(sum, again["confusion"])) == len(holdout)
    assert set(again["top"][0]["features"]) == set(FEATURES)


@pytest.fixture
def onnx_export(service: shipyard.ModelService, train: tuple[pd.DataFrame, np.ndarray[Any, Any]]) -> tuple[Any, Any]:
    """fraud:1 a scikit-learn pipeline; fraud:2 its skl2onnx export, registered with an array signature."""
    from skl2onnx import to_onnx

    X, y = train
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    proto = to_onnx(model, X.to_numpy(np.float32)[:1], options={"zipmap": False})
    service.register(model, "fraud", X=X)
    service.register(proto, "fraud", X=X.to_numpy(np.float32))
    return model, proto


def test_sklearn_against_its_onnx_export(
    service: shipyard.ModelService, onnx_export: tuple[Any, Any], holdout: pd.DataFrame
) -> None:
    import onnxruntime as ort

    model, proto = onnx_export
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    onnx_labels, onnx_proba = session.run(None, {"X": holdout[FEATURES].to_numpy(np.float32)})
    expected_max = float(np.abs(model.predict_proba(holdout) - onnx_proba).max())

    result = compare(service, "fraud:1", "fraud:2", holdout, atol=1e-5)
    print(f"scikit-learn vs ONNX: max abs probability difference {result.max_abs_diff:.3g} over {result.rows} rows")
    assert (result.flavor_a, result.flavor_b) == ("sklearn", "onnx")
    assert result.passed, result.reasons
    assert result.agreement == float(np.mean(model.predict(holdout) == onnx_labels))
    assert result.max_abs_diff == pytest.approx(expected_max, abs=1e-12)
    assert result.max_abs_diff is not None and 0 < result.max_abs_diff <= 1e-5  # float32 rounding, no more

    # the default tolerance is tighter than float32: the verdict says which condition failed
    strict = compare(service, "fraud:1", "fraud:2", holdout, atol=1e-9)
    assert not strict.passed and len(strict.reasons) == 1
    assert strict.reasons[0].startswith("max absolute probability difference")
    assert strict.top and all(row.difference is not None and row.difference > 1e-9 for row in strict.top)


def test_regressor_pair(service: shipyard.ModelService, train: tuple[pd.DataFrame, Any], holdout: pd.DataFrame) -> None:
    from xgboost import XGBRegressor

    X, _ = train
    y = X["amount"] * 0.5 + X["score"] * 3 + X["hour"] * 0.1
    ridge = Ridge(alpha=1.0).fit(X, y)
    boosted = XGBRegressor(n_estimators=30, max_depth=3).fit(X, y)
    service.register(ridge, "price", X=X)
    service.register(boosted, "price", X=X)
    service.register(GradientBoostingRegressor(n_estimators=20, random_state=0).fit(X, y), "price", X=X)

    same = compare(service, "price:1", "price:1", holdout)
    assert same.passed and same.task == "regression" and same.max_abs_diff == 0.0
    assert same.labels == () and same.confusion == ()

    result = compare(service, "price:1", "price:2", holdout, atol=0.5, top=3)
    assert (result.flavor_a, result.flavor_b) == ("sklearn", "xgboost")
    diff = np.abs(ridge.predict(holdout) - boosted.predict(holdout).astype(np.float64))
    assert result.task == "regression" and not result.passed
    assert result.agreement == float(np.mean(diff <= 0.5))
    assert result.max_abs_diff == pytest.approx(float(diff.max()), rel=1e-9)
    assert result.mean_abs_diff == pytest.approx(float(diff.mean()), rel=1e-9)
    assert [row.row for row in result.top] == np.argsort(-diff, kind="stable")[:3].tolist()
    assert "prediction difference" in result.reasons[-1]


@pytest.mark.parametrize("kind", ["csv", "parquet", "sqlite"])
def test_file_and_database_sources_give_the_dataframe_figures(
    service: shipyard.ModelService, classifiers: tuple[Any, Any], holdout: pd.DataFrame, tmp_path: Path, kind: str
) -> None:
    if kind == "csv":
        source: str = str(tmp_path / "holdout.csv")
        holdout.to_csv(source, index=False)
    elif kind == "parquet":
        source = str(tmp_path / "holdout.parquet")
        holdout.to_parquet(source)
    else:
        from sqlalchemy import create_engine

        source = f"sqlite:///{tmp_path / 'holdout.db'}?table=holdout"
        engine = create_engine(f"sqlite:///{tmp_path / 'holdout.db'}")
        holdout.rename_axis("id").reset_index().to_sql("holdout", engine, index=False)
        engine.dispose()
    from_frame = compare(service, "fraud:1", "fraud:2", holdout)
    from_source = compare(service, "fraud:1", "fraud:2", source, chunk_rows=700)
    assert from_source.rows == len(holdout) and from_source.chunks == 4
    assert same_figures(from_source, from_frame)


def same_figures(a: Comparison, b: Comparison) -> bool:
    assert (a.rows, a.agreement, a.disagreements, a.labels, a.confusion) == (
        b.rows,
        b.agreement,
        b.disagreements,
        b.labels,
        b.confusion,
    )
    assert a.max_abs_diff == b.max_abs_diff
    assert a.mean_abs_diff == pytest.approx(b.mean_abs_diff, rel=1e-12)
    assert [(r.row, r.prediction_a, r.prediction_b, r.difference) for r in a.top] == [
        (r.row, r.prediction_a, r.prediction_b, r.difference) for r in b.top
    ]
    assert (a.passed, a.reasons[:1]) == (b.passed, b.reasons[:1])
    return True


def test_many_chunks_give_the_one_chunk_figures(
    service: shipyard.ModelService, classifiers: tuple[Any, Any], holdout: pd.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "holdout.parquet"
    holdout.to_parquet(path)
    one = compare(service, "fraud:1", "fraud:2", path, chunk_rows=len(holdout), top=7)
    many = compare(service, "fraud:1", "fraud:2", path, chunk_rows=97, top=7)
    assert one.chunks == 1 and many.chunks == -(-len(holdout) // 97)
    assert same_figures(many, one)
    assert [r.features for r in many.top] == [r.features for r in one.top]


def test_bad_input_is_refused_with_a_clear_error(
    service: shipyard.ModelService,
    classifiers: tuple[Any, Any],
    train: tuple[pd.DataFrame, Any],
    holdout: pd.DataFrame,
    tmp_path: Path,
) -> None:
    X, y = train
    with pytest.raises(ModelNotFound, match="'nope' is not registered"):
        compare(service, "fraud:1", "nope", holdout)
    with pytest.raises(VersionNotFound, match="no version 9"):
        compare(service, "fraud:9", "fraud:1", holdout)
    with pytest.raises(NotFound, match="no such file"):
        compare(service, "fraud:1", "fraud:2", tmp_path / "missing.parquet")
    with pytest.raises(SchemaError, match=r"fraud:1 and fraud:2: missing column 'score' \(<DataFrame> has: amount"):
        compare(service, "fraud:1", "fraud:2", holdout.drop(columns=["score"]))
    service.register(LogisticRegression(max_iter=500).fit(X[["amount", "hour"]], y), "small", X=X[["amount", "hour"]])
    with pytest.raises(SchemaError, match=r"signature: fraud:1: missing column 'score' .*\)$"):
        compare(service, "fraud:1", "small", holdout.drop(columns=["score"]))
    with pytest.raises(SchemaError, match="column 'hour' is string"):
        compare(service, "fraud:1", "fraud:2", holdout.assign(hour=holdout["hour"].astype(str)))
    with_nan = holdout.copy()
    with_nan.loc[1234, "score"] = np.nan
    partial = compare(service, "fraud:1", "fraud:2", with_nan, chunk_rows=100)  # the other rows are compared
    assert (partial.rows, partial.unscored) == (len(holdout) - 1, 1)
    assert [(r.row, r.reason_a == r.reason_b) for r in partial.unscored_rows] == [(1234, True)]
    assert partial.unscored_rows[0].reason_a == (
        "column 'score' row 1234 is missing; the model was trained without missing values there"
    )
    with pytest.raises(PredictionFailed, match=r"no row of <DataFrame> could be scored by both models \(3 rows"):
        compare(service, "fraud:1", "fraud:2", with_nan.iloc[:3].assign(score=np.nan))
    with pytest.raises(InvalidInput, match="has no rows"):
        compare(service, "fraud:1", "fraud:2", holdout.iloc[:0])
    with pytest.raises(InvalidInput, match="atol must be"):
        compare(service, "fraud:1", "fraud:2", holdout, atol=-1)
    with pytest.raises(InvalidInput, match="min_agreement must be between 0 and 1"):
        compare(service, "fraud:1", "fraud:2", holdout, min_agreement=1.5)

    service.register(LogisticRegression(max_iter=500).fit(X, y > 0), "binary", X=X)
    with pytest.raises(InvalidInput, match=r"do not predict the same classes \(0, 1, 2 vs False, True\)"):
        compare(service, "fraud:1", "binary", holdout)


def test_probabilities_are_lined_up_by_class_label(
    service: shipyard.ModelService, train: tuple[pd.DataFrame, np.ndarray[Any, Any]], holdout: pd.DataFrame
) -> None:
    """An ONNX export whose probability columns come in another class order (2, 0, 1) still matches."""
    import onnx
    from onnx import helper, numpy_helper
    from skl2onnx import to_onnx

    X, y = train
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    proto = to_onnx(model, X.to_numpy(np.float32)[:1], options={"zipmap": False})
    graph = proto.graph
    probabilities = graph.output[1]
    graph.initializer.append(numpy_helper.from_array(np.array([2, 0, 1], dtype=np.int64), "class_order"))
    graph.node.append(
        helper.make_node("Gather", [probabilities.name, "class_order"], ["probabilities_reordered"], axis=1)
    )
    reordered = helper.make_tensor_value_info("probabilities_reordered", onnx.TensorProto.FLOAT, [None, 3])
    graph.output.remove(probabilities)
    graph.output.append(reordered)
    helper.set_model_props(proto, {"classes": "[2, 0, 1]"})
    onnx.checker.check_model(proto)
    service.register(model, "fraud", X=X)
    version = service.register(proto, "fraud", X=X.to_numpy(np.float32))
    assert service.load(f"fraud:{version.version}").classes == [2, 0, 1]

    result = compare(service, "fraud:1", "fraud:2", holdout, atol=1e-5)
    assert result.passed, result.reasons
    assert result.classes == (0, 1, 2) and result.agreement == 1.0 and result.notes == ()
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-5


def test_a_classifier_without_probabilities_is_compared_on_labels(
    service: shipyard.ModelService,
    classifiers: tuple[Any, Any],
    train: tuple[pd.DataFrame, np.ndarray[Any, Any]],
    holdout: pd.DataFrame,
) -> None:
    from sklearn.linear_model import RidgeClassifier

    X, y = train
    ridge = make_pipeline(StandardScaler(), RidgeClassifier()).fit(X, y)
    service.register(ridge, "fraud", X=X)
    first, _ = classifiers
    agreement = float(np.mean(first.predict(holdout) == ridge.predict(holdout)))
    assert agreement < 1.0

    result = compare(service, "fraud:1", "fraud:3", holdout, min_agreement=agreement)
    assert result.notes == ("fraud:3 gives no probabilities: only the labels are compared",)
    assert result.max_abs_diff is None and result.mean_abs_diff is None
    assert result.agreement == agreement and result.passed
    assert all(row.difference is None and row.prediction_a != row.prediction_b for row in result.top)
    assert not compare(service, "fraud:1", "fraud:3", holdout, min_agreement=agreement + 1e-9).passed
