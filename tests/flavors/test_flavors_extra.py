"""Round trips, format checks and detection for the ONNX, XGBoost, LightGBM and River flavors."""

from __future__ import annotations

import copy
import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification, make_regression

from shipyard.errors import FlavorMismatch, InvalidInput, SchemaError
from shipyard.flavors import FlavorCatalog
from shipyard.flavors.base import Flavor
from shipyard.flavors.lightgbm import LightGBMFlavor
from shipyard.flavors.onnx import OnnxFlavor
from shipyard.flavors.river import MAGIC, RiverFlavor
from shipyard.flavors.sklearn import SklearnFlavor
from shipyard.flavors.xgboost import XGBoostFlavor

FLAVORS: dict[str, Flavor] = {
    "sklearn": SklearnFlavor(),
    "onnx": OnnxFlavor(),
    "xgboost": XGBoostFlavor(),
    "lightgbm": LightGBMFlavor(),
    "river": RiverFlavor(),
}


def roundtrip(flavor: Flavor, model: Any) -> Any:
    dumped = flavor.dump(model)
    flavor.check_format(dumped.data)
    return flavor.load(dumped.data, dumped.meta)


@pytest.fixture(scope="module")
def classification() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    X, y = make_classification(n_samples=150, n_features=5, n_informative=3, n_classes=3, random_state=0)
    return X, y


@pytest.fixture(scope="module")
def regression() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    X, y = make_regression(n_samples=120, n_features=4, noise=0.1, random_state=0)
    return X, y


@pytest.fixture(scope="module")
def mixed_frame() -> tuple[pd.DataFrame, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=160), "color": rng.choice(["red", "green", "blue"], 160)})
    y = np.where(frame["x"] + (frame["color"] == "red") * 1.0 + rng.normal(scale=0.3, size=160) > 0.5, "pos", "neg")
    return frame, y


def onnx_logistic(X: np.ndarray[Any, Any], y: np.ndarray[Any, Any], zipmap: bool) -> tuple[Any, Any]:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=500).fit(X, y)
    types = [("features", FloatTensorType([None, X.shape[1]]))]
    return clf, convert_sklearn(clf, initial_types=types, options={id(clf): {"zipmap": zipmap}})


@pytest.fixture(scope="module")
def river_phishing() -> tuple[Any, list[tuple[dict[str, Any], bool]]]:
    from river import datasets, linear_model, preprocessing

    rows = list(itertools.islice(datasets.Phishing(), 300))
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for x, y in rows[:200]:
        model.learn_one(x, y)
    return model, rows


@pytest.fixture(scope="module")
def artifacts(classification: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]) -> dict[str, bytes]:
    """Bytes written by each flavor, to feed into the others."""
    import lightgbm
    import xgboost
    from river import linear_model
    from sklearn.linear_model import LogisticRegression

    X, y = classification
    river_model = linear_model.LogisticRegression()
    river_model.learn_one({"a": 1.0}, True)
    models = {
        "sklearn": LogisticRegression(max_iter=500).fit(X, y),
        "onnx": onnx_logistic(X, y, zipmap=True)[1],
        "xgboost": xgboost.XGBClassifier(n_estimators=3, max_depth=2, n_jobs=1).fit(X, y),
        "lightgbm": lightgbm.LGBMClassifier(n_estimators=3, verbose=-1, n_jobs=1).fit(X, y),
        "river": river_model,
    }
    return {name: FLAVORS[name].dump(model).data for name, model in models.items()}


# ---------------------------------------------------------------- ONNX


@pytest.mark.parametrize("zipmap", [True, False])
def test_onnx_single_tensor_input_classifier(
    classification: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]], zipmap: bool
) -> None:
    X, y = classification
    clf, proto = onnx_logistic(X, y, zipmap)
    flavor = OnnxFlavor()
    dumped = flavor.dump(proto)
    assert dumped.meta["inputs"] == [{"name": "features", "type": "float", "shape": [None, 5]}]
    assert len(dumped.meta["outputs"]) == 2
    loaded = flavor.load(dumped.data, dumped.meta)

    assert loaded.has_predict_proba
    assert loaded.classes == [0, 1, 2]
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    proba = loaded.predict_proba(X)
    assert proba.shape == (len(X), 3)
    assert proba.dtype == np.float64
    assert np.allclose(proba, clf.predict_proba(X), atol=1e-5)
    # a frame feeds the single tensor input as a whole
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)])
    np.testing.assert_array_equal(loaded.predict(frame), clf.predict(X))
    with pytest.raises(InvalidInput):
        loaded.predict(X[0])


def test_onnx_regressor(regression: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]) -> None:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LinearRegression

    X, y = regression
    reg = LinearRegression().fit(X, y)
    loaded = roundtrip(OnnxFlavor(), to_onnx(reg, X[:1].astype(np.float32)))
    prediction = loaded.predict(X)
    assert prediction.shape == (len(X),)
    assert np.allclose(prediction, reg.predict(X), rtol=1e-4, atol=1e-3)
    assert not loaded.has_predict_proba
    assert loaded.classes is None
    with pytest.raises(InvalidInput):
        loaded.predict_proba(X)


@pytest.mark.parametrize("zipmap", [True, False])
def test_onnx_one_input_per_column(mixed_frame: tuple[pd.DataFrame, np.ndarray[Any, Any]], zipmap: bool) -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame, y = mixed_frame
    pre = ColumnTransformer([("num", "passthrough", ["x"]), ("cat", OneHotEncoder(), ["color"])])
    pipe = Pipeline([("pre", pre), ("clf", LogisticRegression())]).fit(frame, y)
    types = [("x", FloatTensorType([None, 1])), ("color", StringTensorType([None, 1]))]
    proto = convert_sklearn(pipe, initial_types=types, options={"zipmap": zipmap})
    loaded = roundtrip(OnnxFlavor(), proto)

    assert loaded.classes == ["neg", "pos"]
    assert loaded.has_predict_proba
    np.testing.assert_array_equal(loaded.predict(frame), pipe.predict(frame))
    assert np.allclose(loaded.predict_proba(frame), pipe.predict_proba(frame), atol=1e-5)
    # columns are matched by input name, whatever their order or extra columns
    shuffled = frame[["color", "x"]].assign(extra=1)
    np.testing.assert_array_equal(loaded.predict(shuffled), pipe.predict(frame))
    # a 2-D object array feeds the inputs by position
    array = frame[["x", "color"]].to_numpy(dtype=object)
    np.testing.assert_array_equal(loaded.predict(array), pipe.predict(frame))
    with pytest.raises(SchemaError, match="color"):
        loaded.predict(frame[["x"]])


def test_onnx_read_file_and_refusals(
    tmp_path: Path, classification: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]
) -> None:
    import onnx

    X, y = classification
    _, proto = onnx_logistic(X, y, zipmap=False)
    path = tmp_path / "model.onnx"
    path.write_bytes(proto.SerializeToString())
    flavor = OnnxFlavor()
    read = flavor.read_file(path)
    assert flavor.handles(read)
    assert read.SerializeToString() == proto.SerializeToString()

    empty = onnx.helper.make_model(onnx.helper.make_graph([], "empty", [], []))
    with pytest.raises(FlavorMismatch):
        flavor.check_format(empty.SerializeToString())
    path.write_bytes(b"not a model")
    with pytest.raises(FlavorMismatch):
        flavor.read_file(path)


# ---------------------------------------------------------------- XGBoost


def test_xgboost_classifier(tmp_path: Path, classification: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]) -> None:
    import xgboost

    X, y = classification
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    clf = xgboost.XGBClassifier(n_estimators=5, max_depth=3, n_jobs=1).fit(frame, y)
    flavor = XGBoostFlavor()
    dumped = flavor.dump(clf)
    assert dumped.data.startswith(b"{")
    assert dumped.meta == {"kind": "XGBClassifier", "classes": [0, 1, 2], "feature_names": list(frame.columns)}
    loaded = flavor.load(dumped.data, dumped.meta)

    assert type(loaded.model) is xgboost.XGBClassifier
    assert loaded.has_predict_proba
    assert loaded.classes == [0, 1, 2]
    np.testing.assert_array_equal(loaded.predict(frame), clf.predict(frame))
    assert np.allclose(loaded.predict_proba(frame), clf.predict_proba(frame))
    np.testing.assert_array_equal(loaded.predict(frame[frame.columns[::-1]]), clf.predict(frame))
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(frame))

    path = tmp_path / "model.ubj"
    path.write_bytes(dumped.data)
    read = flavor.read_file(path)
    assert type(read) is xgboost.XGBClassifier
    np.testing.assert_array_equal(read.predict(frame), clf.predict(frame))


def test_xgboost_regressor_and_booster(regression: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]) -> None:
    import xgboost

    X, y = regression
    reg = xgboost.XGBRegressor(n_estimators=5, max_depth=3, n_jobs=1).fit(X, y)
    loaded = roundtrip(XGBoostFlavor(), reg)
    assert not loaded.has_predict_proba
    assert loaded.classes is None
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))

    booster = xgboost.train({"max_depth": 2, "nthread": 1}, xgboost.DMatrix(X, label=y), num_boost_round=4)
    dumped = XGBoostFlavor().dump(booster)
    assert dumped.meta["kind"] == "Booster"
    loaded = XGBoostFlavor().load(dumped.data, dumped.meta)
    expected = booster.predict(xgboost.DMatrix(X))
    np.testing.assert_array_equal(loaded.predict(X), expected)
    np.testing.assert_array_equal(loaded.predict(pd.DataFrame(X)), expected)
    assert not loaded.has_predict_proba


def test_xgboost_refuses_json_and_unfitted() -> None:
    import xgboost

    flavor = XGBoostFlavor()
    with pytest.raises(FlavorMismatch):
        flavor.check_format(b'{"learner": {}}')
    with pytest.raises(FlavorMismatch):
        flavor.load(b"{L\x00\x00garbage", {"kind": "XGBClassifier"})
    with pytest.raises(InvalidInput, match="not fitted"):
        flavor.dump(xgboost.XGBClassifier())


# ---------------------------------------------------------------- LightGBM


def test_lightgbm_binary_classifier_on_frame(tmp_path: Path) -> None:
    import lightgbm

    X, y = make_classification(n_samples=200, n_features=4, random_state=1)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    frame["kind"] = pd.Categorical(np.random.default_rng(1).choice(["u", "v", "w"], len(frame)))
    labels = np.where(y == 1, "yes", "no")
    clf = lightgbm.LGBMClassifier(n_estimators=8, verbose=-1, n_jobs=1).fit(frame, labels)
    flavor = LightGBMFlavor()
    dumped = flavor.dump(clf)
    assert dumped.data.startswith(b"tree\n")
    assert dumped.meta == {"kind": "LGBMClassifier", "objective": "binary", "classes": ["no", "yes"]}
    loaded = flavor.load(dumped.data, dumped.meta)

    assert loaded.has_predict_proba
    assert loaded.classes == ["no", "yes"]
    np.testing.assert_array_equal(loaded.predict(frame), clf.predict(frame))
    assert np.allclose(loaded.predict_proba(frame), clf.predict_proba(frame))
    # columns are put back in training order
    np.testing.assert_array_equal(loaded.predict(frame[frame.columns[::-1]]), clf.predict(frame))

    for name in ("model.lgb", "model.txt"):
        path = tmp_path / name
        path.write_bytes(dumped.data)
        booster = flavor.read_file(path)
        assert np.allclose(booster.predict(frame), clf.predict_proba(frame)[:, 1])
    path = tmp_path / "notes.txt"
    path.write_text("just some notes\n")
    with pytest.raises(InvalidInput):
        flavor.read_file(path)


def test_lightgbm_multiclass_regressor_and_booster(
    classification: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    regression: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
) -> None:
    import lightgbm

    X, y = classification
    clf = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1, n_jobs=1).fit(X, y)
    loaded = roundtrip(LightGBMFlavor(), clf)
    assert loaded.classes == [0, 1, 2]
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    assert np.allclose(loaded.predict_proba(X), clf.predict_proba(X))

    X, y = regression
    reg = lightgbm.LGBMRegressor(n_estimators=5, verbose=-1, n_jobs=1).fit(X, y)
    dumped = LightGBMFlavor().dump(reg)
    assert dumped.meta == {"kind": "LGBMRegressor", "objective": "regression"}
    loaded = LightGBMFlavor().load(dumped.data, dumped.meta)
    assert not loaded.has_predict_proba
    assert loaded.classes is None
    assert np.allclose(loaded.predict(X), reg.predict(X))

    booster = lightgbm.train({"verbose": -1, "num_threads": 1}, lightgbm.Dataset(X, label=y), num_boost_round=3)
    loaded = roundtrip(LightGBMFlavor(), booster)
    assert np.allclose(loaded.predict(X), booster.predict(X))


# ---------------------------------------------------------------- River


def test_river_classifier_pipeline(river_phishing: tuple[Any, list[tuple[dict[str, Any], bool]]]) -> None:
    model, rows = river_phishing
    features = [x for x, _ in rows[200:]]
    targets = [y for _, y in rows[200:]]
    frame = pd.DataFrame(features)
    flavor = RiverFlavor()
    dumped = flavor.dump(model)
    assert dumped.data.startswith(MAGIC)
    loaded = flavor.load(dumped.data, dumped.meta)

    assert loaded.has_predict_proba
    assert loaded.has_partial_fit
    assert loaded.classes == [False, True]
    expected = np.asarray([model.predict_one(x) for x in features])
    np.testing.assert_array_equal(loaded.predict(frame), expected)
    proba = np.array([[model.predict_proba_one(x)[c] for c in (False, True)] for x in features])
    assert np.allclose(loaded.predict_proba(frame), proba)

    # learning a batch through the loaded model matches learning it on a copy of the original
    twin = copy.deepcopy(model)
    twin.learn_many(frame, pd.Series(targets))
    loaded.partial_fit(frame, np.asarray(targets))
    assert np.allclose(loaded.predict_proba(frame)[:, 1], twin.predict_proba_many(frame)[True].to_numpy())


def test_river_regressor_on_arrays(regression: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]) -> None:
    from river import linear_model

    X, y = regression
    model = linear_model.LinearRegression()
    for row, target in zip(X[:80].tolist(), y[:80].tolist(), strict=True):
        model.learn_one(dict(enumerate(row)), target)
    loaded = roundtrip(RiverFlavor(), model)
    assert not loaded.has_predict_proba
    assert loaded.classes is None
    expected = [model.predict_one(dict(enumerate(row))) for row in X.tolist()]
    assert np.allclose(loaded.predict(X), expected)

    twin = copy.deepcopy(model)
    for row, target in zip(X[80:].tolist(), y[80:].tolist(), strict=True):
        twin.learn_one(dict(enumerate(row)), target)
    loaded.partial_fit(X[80:], y[80:])  # arrays go row by row through learn_one
    assert np.allclose(loaded.predict(X), [twin.predict_one(dict(enumerate(row))) for row in X.tolist()])
    with pytest.raises(InvalidInput):
        loaded.partial_fit(X[:3], y[:2])


def test_river_multiclass_classes_without_batch_methods() -> None:
    from river import datasets, tree

    rows = list(itertools.islice(datasets.ImageSegments(), 200))
    model = tree.HoeffdingTreeClassifier(grace_period=50)
    for x, y in rows:
        model.learn_one(x, y)
    loaded = roundtrip(RiverFlavor(), model)
    frame = pd.DataFrame([x for x, _ in rows[:20]])
    classes = loaded.classes
    assert classes == sorted(model.classes)
    expected = [[model.predict_proba_one(x).get(c, 0.0) for c in classes] for x, _ in rows[:20]]
    assert np.allclose(loaded.predict_proba(frame), expected)
    np.testing.assert_array_equal(loaded.predict(frame), [model.predict_one(x) for x, _ in rows[:20]])


def test_river_never_reads_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        RiverFlavor().read_file(tmp_path / "model.pkl")


# ---------------------------------------------------------------- formats and detection


@pytest.mark.parametrize(
    ("reader", "writer"), [(r, w) for r in FLAVORS for w in FLAVORS if r != w] + [(r, "junk") for r in FLAVORS]
)
def test_check_format_refuses_foreign_bytes(artifacts: dict[str, bytes], reader: str, writer: str) -> None:
    data = artifacts.get(writer, b"\x00\x01 not a model at all")
    if writer != "junk":
        FLAVORS[writer].check_format(data)  # the writer accepts its own bytes
    with pytest.raises(FlavorMismatch):
        FLAVORS[reader].check_format(data)
    if reader != "sklearn":
        with pytest.raises(FlavorMismatch):
            FLAVORS[reader].load(data, {})


def make_detection_model(kind: str) -> Any:
    if kind == "xgboost":
        import xgboost

        return xgboost.XGBClassifier()
    if kind == "lightgbm":
        import lightgbm

        return lightgbm.LGBMClassifier()
    if kind == "onnx":
        from skl2onnx import to_onnx
        from sklearn.linear_model import LogisticRegression

        X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]], dtype=np.float32)
        return to_onnx(LogisticRegression().fit(X, [0, 1, 1, 0]), X)
    if kind == "river":
        from river import linear_model

        return linear_model.LogisticRegression()
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())])


@pytest.mark.parametrize("kind", ["xgboost", "lightgbm", "onnx", "river", "sklearn"])
def test_catalog_picks_the_flavor(kind: str) -> None:
    assert FlavorCatalog().for_model(make_detection_model(kind)).name == kind


@pytest.mark.parametrize(("filename", "kind"), [("m.onnx", "onnx"), ("m.ubj", "xgboost"), ("m.lgb", "lightgbm")])
def test_catalog_picks_the_flavor_for_files(filename: str, kind: str) -> None:
    assert FlavorCatalog().for_file(Path(filename)).name == kind


def test_handles_detects_by_class_path() -> None:
    fake = type("XGBClassifier", (), {"__module__": "xgboost.sklearn"})()
    other = type("Thing", (), {"__module__": "mylib"})()
    assert XGBoostFlavor().handles(fake)
    for flavor in FLAVORS.values():
        assert not flavor.handles(other)


def test_detection_imports_no_model_library() -> None:
    code = (
        "import sys\n"
        "from shipyard.errors import UnsupportedModel\n"
        "from shipyard.flavors import FlavorCatalog\n"
        "try:\n"
        "    FlavorCatalog().for_model(object())\n"
        "except UnsupportedModel:\n"
        "    pass\n"
        "heavy = {'xgboost', 'lightgbm', 'onnx', 'onnxruntime', 'skl2onnx', 'river', 'sklearn', 'skops'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"
