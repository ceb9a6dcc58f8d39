"""One small fitted model per flavor, with the data to check it, for the contract suite."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification


@dataclass
class FlavorCase:
    """A fitted model, its training frame, and how the original predicts."""

    flavor: str
    model: Any
    X: pd.DataFrame | np.ndarray
    y: Any
    predict: Callable[[Any], np.ndarray]
    predict_proba: Callable[[Any], np.ndarray] | None


def _frame(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    X, y = make_classification(n_samples=n, n_features=5, n_informative=3, random_state=seed)
    frame = pd.DataFrame(X, columns=["amount", "hour", "merchant_risk", "distance_km", "card_age"])
    return frame, pd.Series(y, name="is_fraud")


def sklearn_case() -> FlavorCase:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X, y = _frame()
    X["channel"] = np.where(X["hour"] > 0, "web", "pos")
    numeric = ["amount", "hour", "merchant_risk", "distance_km", "card_age"]
    pipe = make_pipeline(
        ColumnTransformer([("num", StandardScaler(), numeric), ("cat", OneHotEncoder(), ["channel"])]),
        LogisticRegression(),
    ).fit(X, y)
    return FlavorCase("sklearn", pipe, X, y, pipe.predict, pipe.predict_proba)


def onnx_case() -> FlavorCase:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    X, y = _frame()
    array = X.to_numpy(dtype=np.float32)
    clf = LogisticRegression().fit(array, y)
    proto = to_onnx(clf, array[:1], options={id(clf): {"zipmap": False}}, target_opset=17)
    return FlavorCase(
        "onnx", proto, array, y, lambda d: clf.predict(np.asarray(d, dtype=np.float32)),
        lambda d: clf.predict_proba(np.asarray(d, dtype=np.float32)),
    )


def xgboost_case() -> FlavorCase:
    from xgboost import XGBClassifier

    X, y = _frame()
    clf = XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1).fit(X, y)
    return FlavorCase("xgboost", clf, X, y, clf.predict, clf.predict_proba)


def lightgbm_case() -> FlavorCase:
    from lightgbm import LGBMClassifier

    X, y = _frame()
    clf = LGBMClassifier(n_estimators=20, num_leaves=7, verbose=-1, n_jobs=1).fit(X, y)
    return FlavorCase("lightgbm", clf, X, y, clf.predict, clf.predict_proba)


def river_case() -> FlavorCase:
    from river import linear_model, preprocessing

    X, y = _frame()
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for row, target in zip(X.to_dict("records"), y, strict=True):
        model.learn_one(row, bool(target))

    def predict(data: Any) -> np.ndarray:
        return np.array([model.predict_one(r) for r in pd.DataFrame(data).to_dict("records")])

    def predict_proba(data: Any) -> np.ndarray:
        return np.array([[model.predict_proba_one(r)[c] for c in (False, True)]
                         for r in pd.DataFrame(data).to_dict("records")])

    return FlavorCase("river", model, X, y.astype(bool), predict, predict_proba)


CASES: dict[str, Callable[[], FlavorCase]] = {
    "sklearn": sklearn_case,
    "onnx": onnx_case,
    "xgboost": xgboost_case,
    "lightgbm": lightgbm_case,
    "river": river_case,
}


@pytest.fixture(params=list(CASES))
def flavor_case(request: pytest.FixtureRequest) -> FlavorCase:
    """Each flavor's case in turn."""
    return CASES[request.param]()
