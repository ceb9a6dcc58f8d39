"""One call for predictions and probabilities gives exactly what two calls give."""

from __future__ import annotations

import numpy as np
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
