"""One call for predictions and probabilities gives exactly what two calls give."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from shipyard.flavors.sklearn import SklearnModel


@pytest.mark.parametrize(
    "estimator",
    [
        LogisticRegression(),
        make_pipeline(StandardScaler(), LogisticRegression()),
        RandomForestClassifier(n_estimators=10, random_state=0),
        HistGradientBoostingClassifier(max_iter=10),
        GaussianNB(),
        DecisionTreeClassifier(random_state=0),
        KNeighborsClassifier(n_neighbors=4),  # ties possible: must fall back to two calls
        CalibratedClassifierCV(SVC(), ensemble=False),  # predict is not argmax(proba) in general: two calls
    ],
    ids=lambda e: type(e).__name__,
)
@pytest.mark.parametrize("n_classes", [2, 3])
def test_predict_with_proba_matches_separate_calls(estimator: object, n_classes: int) -> None:
    X, y = make_classification(n_samples=300, n_features=6, n_informative=4, n_classes=n_classes, random_state=1)
    labels = np.array(["low", "mid", "high"])[y]
    model = SklearnModel(estimator.fit(X, labels))  # type: ignore[attr-defined]
    predictions, probabilities = model.predict_with_proba(X)
    np.testing.assert_array_equal(predictions, model.model.predict(X))
    np.testing.assert_allclose(probabilities, model.model.predict_proba(X))


def _named(X: np.ndarray, prefix: str = "f") -> pd.DataFrame:
    return pd.DataFrame(X, columns=[f"{prefix}{i}" for i in range(X.shape[1])])


@pytest.mark.parametrize(
    "build",
    [
        lambda: LogisticRegression(),
        lambda: make_pipeline(StandardScaler(), LogisticRegression()),
        lambda: make_pipeline(StandardScaler().set_output(transform="pandas"), LogisticRegression()),
        lambda: RandomForestClassifier(n_estimators=10, random_state=0),
        lambda: HistGradientBoostingClassifier(max_iter=10),
        lambda: CalibratedClassifierCV(LogisticRegression(), ensemble=True),  # sub-estimators know the names
        lambda: _column_transformer(),  # selects columns by name: must keep getting frames
    ],
    ids=["logreg", "pipeline", "pandas-output", "forest", "hgb", "calibrated", "column-transformer"],
)
def test_a_model_scored_through_shipyard_gives_what_the_estimator_gives_on_the_frame(home: object, build: Any) -> None:
    """Loaded models may score validated numeric frames as plain arrays; the numbers must not change, for
    estimators that take arrays and for those that must keep frames, and nothing may warn."""
    import shipyard

    X, y = make_classification(n_samples=400, n_features=5, n_informative=3, random_state=2)
    frame = _named(X)
    estimator = build().fit(frame, y)
    shipyard.register(estimator, "m", X=frame, y=y)
    loaded = shipyard.load("m:1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an estimator given an array where it learned names would warn
        _same_answers(loaded, estimator, frame)


def _same_answers(loaded: Any, estimator: Any, frame: pd.DataFrame) -> None:
    assert np.array_equal(loaded.predict_proba(frame), estimator.predict_proba(frame))
    assert np.array_equal(loaded.predict(frame.to_dict("records")), estimator.predict(frame))
    assert np.array_equal(loaded.predict(frame[::-1].reset_index(drop=True)), estimator.predict(frame[::-1]))
    served = loaded.features(frame.to_dict("records"))  # what a server scores: an array where the model takes one
    assert isinstance(served, np.ndarray) == loaded.takes_arrays
    predictions, probabilities = loaded.loaded.predict_with_proba(served)
    assert np.array_equal(predictions, estimator.predict(frame))
    assert np.array_equal(probabilities, estimator.predict_proba(frame))


def _column_transformer() -> object:
    from sklearn.compose import ColumnTransformer

    scale = ColumnTransformer([("scaled", StandardScaler(), ["f0", "f3"])], remainder="drop")
    return make_pipeline(scale, LogisticRegression())


def test_a_missing_value_still_reaches_the_estimators_own_check(home: object) -> None:
    """Finite arrays skip scikit-learn's finiteness check (shipyard checked them); a NaN must still be refused by
    an estimator that cannot take it, and scored by one that can, exactly as on the frame."""
    import shipyard

    X, y = make_classification(n_samples=200, n_features=4, n_informative=2, random_state=0)
    frame = _named(X)
    declared = frame.copy()
    declared.iloc[5, 1] = np.nan  # the signature lets f1 be missing: the estimator itself decides
    for name, estimator in (("lr", LogisticRegression()), ("hgb", HistGradientBoostingClassifier(max_iter=5))):
        shipyard.register(estimator.fit(frame, y), name, X=declared, y=y)
    gap = frame.head(2).copy()
    gap.iloc[0, 1] = np.nan
    lr, hgb = shipyard.load("lr:1"), shipyard.load("hgb:1")
    with pytest.raises(ValueError, match="NaN"):
        lr.loaded.predict(lr.features(gap))
    assert np.array_equal(hgb.loaded.predict_proba(hgb.features(gap)), hgb.raw.predict_proba(gap))
