"""Build the model a spec describes, instantiating only reviewed estimator classes named exactly.

A spec is a file that arrives from outside: it names classes by import path, and importing and instantiating
run code. Trust is a list of exact classes, never a package prefix: scikit-learn's public estimators
(``sklearn.utils.all_estimators``), its kernels and cross-validation splitters, the scikit-learn API classes of
XGBoost and LightGBM, the River classes a stored River model may hold (``shipyard.flavors.river_names``), and
any exact name the user trusts (``SHIPYARD_TRUSTED_TYPES``). Paths through private modules are refused.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shipyard.flavors.river_pickle import REVIEWED_GLOBALS
from shipyard.training.errors import InvalidSpec
from shipyard.training.spec import Component, TrainSpec

LIBRARIES = ("sklearn", "xgboost", "lightgbm", "river")
"""Libraries whose reviewed classes a spec may name."""

BOOSTING_CLASSES = frozenset(
    {
        "xgboost.XGBClassifier",
        "xgboost.XGBRegressor",
        "xgboost.XGBRanker",
        "xgboost.XGBRFClassifier",
        "xgboost.XGBRFRegressor",
        "lightgbm.LGBMClassifier",
        "lightgbm.LGBMRegressor",
        "lightgbm.LGBMRanker",
    }
)
"""The scikit-learn API classes of XGBoost and LightGBM, by the import path a spec writes."""


@functools.cache
def _reviewed_sklearn_classes() -> frozenset[type]:
    import sklearn.model_selection
    from sklearn.gaussian_process import kernels
    from sklearn.model_selection import BaseCrossValidator, BaseShuffleSplit
    from sklearn.utils import all_estimators

    found: set[type] = {cls for _, cls in all_estimators()}
    for module, base in (
        (kernels, (kernels.Kernel,)),
        (sklearn.model_selection, (BaseCrossValidator, BaseShuffleSplit)),
    ):
        found |= {
            cls
            for name, cls in vars(module).items()
            if inspect.isclass(cls) and issubclass(cls, base) and not name.startswith("_")
        }
    return frozenset(found)


def is_reviewed(path: str, cls: type) -> bool:
    """Whether a spec may name ``cls`` (found at ``path``) without the user trusting it.

    >>> from sklearn.linear_model import Ridge
    >>> from sklearn.utils import Bunch
    >>> is_reviewed("sklearn.linear_model.Ridge", Ridge), is_reviewed("sklearn.utils.Bunch", Bunch)
    (True, False)
    """
    top = path.split(".", 1)[0]
    if top == "sklearn":
        return cls in _reviewed_sklearn_classes()
    if top == "river":
        return f"{cls.__module__}.{cls.__qualname__}" in REVIEWED_GLOBALS
    return path in BOOSTING_CLASSES


def import_class(path: str, field: str, trusted: Iterable[str] = ()) -> type:
    """The class at ``path``, if it belongs to an allowed library (or is in ``trusted``).

    ``field`` names where the path was written, for the error message.

    >>> import_class("sklearn.linear_model.SGDClassifier", "estimator.class").__name__
    'SGDClassifier'
    >>> import_class("os.system", "estimator.class")
    Traceback (most recent call last):
    ...
    shipyard.training.errors.InvalidSpec: estimator.class: 'os.system' is not allowed; ...
    """
    trusted_here = path in set(trusted)
    parts = path.split(".")
    if not trusted_here and (parts[0] not in LIBRARIES or any(part.startswith("_") for part in parts)):
        raise InvalidSpec(_not_allowed(field, path))
    module_name, _, name = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        top = module_name.split(".")[0]
        if exc.name and exc.name.split(".")[0] == top and top != "sklearn":
            raise InvalidSpec(
                f"{field}: {path!r} needs the {top!r} package; install it with pip install 'shipyard[{top}]'"
            ) from None
        raise InvalidSpec(f"{field}: there is no module {module_name!r} (from {path!r})") from None
    found = getattr(module, name, None)
    if not isinstance(found, type):
        what = "no such class" if found is None else f"{type(found).__name__}, not a class"
        raise InvalidSpec(f"{field}: {path!r}: {what} in {module_name}")
    if not (trusted_here or is_reviewed(path, found)):
        raise InvalidSpec(_not_allowed(field, path))
    return found


def _not_allowed(field: str, path: str) -> str:
    return (
        f"{field}: {path!r} is not allowed; a spec may name the public estimators, kernels and splitters of "
        f"scikit-learn, the scikit-learn API classes of XGBoost and LightGBM and reviewed River classes; "
        f"to use another class on purpose, add its exact name to SHIPYARD_TRUSTED_TYPES"
    )


def build(component: Component, field: str, trusted: Iterable[str] = ()) -> Any:
    """An instance of ``component``'s class with its params (nested ``{class: ...}`` params built too).

    >>> build(Component.model_validate({"class": "sklearn.linear_model.Ridge", "params": {"alpha": 2.0}}),
    ...       "estimator")
    Ridge(alpha=2.0)
    """
    trusted = tuple(trusted)
    cls = import_class(component.class_, f"{field}.class", trusted)
    params = {key: _param(value, f"{field}.params.{key}", trusted) for key, value in component.params.items()}
    try:
        return cls(**params)
    except TypeError as exc:
        raise InvalidSpec(f"{field}.params: {cls.__name__}: {exc}") from None


def _param(value: Any, field: str, trusted: tuple[str, ...]) -> Any:
    if isinstance(value, Mapping) and "class" in value:
        unknown = sorted(set(value) - {"class", "params"})
        if unknown:
            raise InvalidSpec(f"{field}: unknown field {unknown[0]!r} next to 'class'; use class and params")
        try:
            nested = Component.model_validate(dict(value))
        except ValueError as exc:
            raise InvalidSpec(f"{field}: {exc}") from None
        return build(nested, field, trusted)
    if isinstance(value, Mapping):
        return {k: _param(v, f"{field}.{k}", trusted) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_param(v, f"{field}[{i}]", trusted) for i, v in enumerate(value)]
    return value


def build_model(spec: TrainSpec, trusted: Iterable[str] = ()) -> Any:
    """The estimator, or a scikit-learn ``Pipeline`` of the preprocess steps and the estimator.

    >>> spec = TrainSpec.model_validate({
    ...     "name": "m", "data": {"source": "x.csv"}, "target": "y",
    ...     "preprocess": [{"class": "sklearn.preprocessing.StandardScaler"}],
    ...     "estimator": {"class": "sklearn.linear_model.SGDClassifier", "params": {"random_state": 0}}})
    >>> build_model(spec)
    Pipeline(steps=[('standardscaler', StandardScaler()),
                    ('sgdclassifier', SGDClassifier(random_state=0))])
    """
    trusted = tuple(trusted)
    estimator = build(spec.estimator, "estimator", trusted)
    if not callable(getattr(estimator, "fit", None)) or not callable(getattr(estimator, "predict", None)):
        raise InvalidSpec(
            f"estimator.class: {spec.estimator.class_} is not a scikit-learn style estimator (it needs fit and "
            "predict); for a River model use river.compat.convert_river_to_sklearn's classes, e.g. "
            "river.compat.River2SKLClassifier"
        )
    if not spec.preprocess:
        return estimator
    steps = []
    for index, component in enumerate(spec.preprocess):
        step = build(component, f"preprocess[{index}]", trusted)
        if not callable(getattr(step, "transform", None)):
            raise InvalidSpec(f"preprocess[{index}].class: {component.class_} is not a transformer (no transform)")
        steps.append(step)
    from sklearn.pipeline import make_pipeline

    return make_pipeline(*steps, estimator)


TEXT_AWARE = ("ColumnTransformer", "Encoder", "Vectorizer", "FeatureHasher")
"""Preprocess classes (by name ending) that route or encode text columns themselves: no inference then."""


def encode_text_columns(model: Any, X: Any) -> tuple[Any, list[str]]:
    """``model`` with the text (string, object or category) columns of ``X`` one-hot encoded, and their names.

    A spec without ``features`` takes every column, text ones too, which a scaler or a linear model cannot
    take as they are: the spec's preprocess steps then apply to the numeric columns and each text column is
    one-hot encoded (unknown categories ignored), before the estimator. A model whose preprocess routes or
    encodes columns itself (a ``ColumnTransformer``, an encoder or vectorizer), or data without text
    columns, is left as it is (``[]``).

    >>> import pandas as pd
    >>> from sklearn.linear_model import LogisticRegression
    >>> model, text = encode_text_columns(LogisticRegression(), pd.DataFrame({"a": [1.0], "channel": ["web"]}))
    >>> text, [name for name, _ in model.steps]
    (['channel'], ['columntransformer', 'logisticregression'])
    """
    from pandas.api.types import is_numeric_dtype
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    text = [str(c) for c in X.columns if not is_numeric_dtype(X[c].dtype)]
    if not text:
        return model, []
    steps = [step for _, step in model.steps[:-1]] if isinstance(model, Pipeline) else []
    if any(type(step).__name__.endswith(TEXT_AWARE) for step in steps):
        return model, []
    estimator = model.steps[-1][1] if isinstance(model, Pipeline) else model
    numeric = [str(c) for c in X.columns if str(c) not in text]
    routes: list[tuple[str, Any, list[str]]] = []
    if numeric:
        routes.append(("numeric", make_pipeline(*steps) if steps else "passthrough", numeric))
    routes.append(("text", OneHotEncoder(handle_unknown="ignore"), text))
    return make_pipeline(ColumnTransformer(routes), estimator), text
