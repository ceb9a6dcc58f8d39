"""Legitimate scikit-learn models still register and load under the exact-name trust list, giving the same
predictions, and every reviewed name is a real object (a typo would silently trust nothing, or the wrong thing).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor, make_column_selector
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestRegressor,
    VotingClassifier,
)
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    OrdinalEncoder,
    SplineTransformer,
    StandardScaler,
)
from sklearn.tree import DecisionTreeClassifier

import shipyard
from shipyard.flavors.trust import REVIEWED
from shipyard.registry import ArtifactStore, MetadataStore

_RNG = np.random.default_rng(0)
_N = 80
X = pd.DataFrame(
    {
        "amount": _RNG.gamma(2.0, 10.0, _N),
        "hour": _RNG.integers(0, 24, _N).astype(float),
        "channel": _RNG.choice(["web", "pos", "app"], _N),
        "country": _RNG.choice(["fr", "de"], _N),
    }
)
X.loc[3, "amount"] = np.nan
Y = (X["hour"] > 11).astype(int)
NUMERIC = ["amount", "hour"]
CATEGORICAL = ["channel", "country"]


def _onehot() -> ColumnTransformer:
    return ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
        ]
    )


def _ordinal() -> ColumnTransformer:
    return ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="median"), NUMERIC),
            ("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), CATEGORICAL),
        ]
    )


def _hgb_categorical() -> tuple[Any, pd.DataFrame]:
    frame = X.astype({"channel": "category", "country": "category"})
    return HistGradientBoostingClassifier(max_iter=5, categorical_features="from_dtype").fit(frame, Y), frame


LEGIT: dict[str, Callable[[], tuple[Any, pd.DataFrame]]] = {
    "column transformer + one-hot + logistic": lambda: (make_pipeline(_onehot(), LogisticRegression()).fit(X, Y), X),
    "ordinal + gradient boosting": lambda: (
        make_pipeline(_ordinal(), GradientBoostingClassifier(n_estimators=5)).fit(X, Y),
        X,
    ),
    "hist gradient boosting on categorical dtypes": _hgb_categorical,
    "ordinal + random forest regressor": lambda: (
        make_pipeline(_ordinal(), RandomForestRegressor(n_estimators=3, random_state=0)).fit(X, X["hour"]),
        X,
    ),
    "k nearest neighbours": lambda: (make_pipeline(_onehot(), KNeighborsClassifier()).fit(X, Y), X),
    "select k best + calibrated classifier with a cv splitter": lambda: (
        make_pipeline(
            _onehot(), SelectKBest(f_classif, k=3), CalibratedClassifierCV(LogisticRegression(), cv=StratifiedKFold(2))
        ).fit(X, Y),
        X,
    ),
    "column selectors + reviewed numpy functions": lambda: (
        Pipeline(
            [
                (
                    "cols",
                    ColumnTransformer(
                        [
                            (
                                "num",
                                make_pipeline(
                                    SimpleImputer(),
                                    FunctionTransformer(np.log1p, inverse_func=np.expm1),
                                    FunctionTransformer(np.clip, kw_args={"a_min": 0.0, "a_max": 10.0}),
                                ),
                                make_column_selector(dtype_include=np.number),
                            ),
                            ("cat", OneHotEncoder(), make_column_selector(dtype_include=["object", "str"])),
                        ]
                    ),
                ),
                ("clf", LogisticRegression()),
            ]
        ).fit(X, Y),
        X,
    ),
    "soft voting": lambda: (
        make_pipeline(
            _onehot(),
            VotingClassifier(
                [("lr", LogisticRegression()), ("dt", DecisionTreeClassifier(max_depth=2))], voting="soft"
            ),
        ).fit(X, Y),
        X,
    ),
    "splines + log target": lambda: (
        make_pipeline(
            ColumnTransformer([("s", make_pipeline(SimpleImputer(), SplineTransformer(n_knots=3)), NUMERIC)]),
            TransformedTargetRegressor(regressor=Ridge(), func=np.log1p, inverse_func=np.expm1),
        ).fit(X, X["hour"]),
        X,
    ),
}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[shipyard.ModelService]:
    home = tmp_path_factory.mktemp("legit-registry")
    service = shipyard.ModelService(MetadataStore(f"sqlite:///{home}/r.db"), ArtifactStore(str(home / "a")))
    yield service
    service.store.close()


@pytest.mark.parametrize("case", LEGIT, ids=list(LEGIT))
def test_legitimate_sklearn_models_register_and_load_with_default_trust(
    registry: shipyard.ModelService, case: str
) -> None:
    model, frame = LEGIT[case]()
    name = f"legit-{list(LEGIT).index(case)}"
    mv = registry.register(model, name, X=frame)
    loaded = registry.load(mv.ref)
    np.testing.assert_allclose(loaded.predict(frame.head(10)), model.predict(frame.head(10)))


@pytest.mark.parametrize("name", sorted(REVIEWED))
def test_every_reviewed_name_is_a_real_object(name: str) -> None:
    module_name, _, attribute = name.rpartition(".")
    assert callable(getattr(importlib.import_module(module_name), attribute))
