"""Which serialised Python types shipyard agrees to rebuild when it stores or loads a skops artifact.

Trust is a list of exact names, never a module prefix: NumPy, SciPy and scikit-learn also hold functions
that execute strings, read pickles, write files or start processes, and a stored model must not reach them.
A name is trusted when

* skops trusts it by default (scikit-learn estimators, NumPy and SciPy ufuncs, NumPy dtypes, bit
  generators): :func:`skops.io.get_untrusted_types` never reports those;
* it is in :data:`REVIEWED_TYPES` or :data:`REVIEWED_FUNCTIONS`, names read and judged here because
  legitimate models need them (tree storage, neighbour indexes, score functions, pure NumPy functions for
  ``FunctionTransformer``);
* or the user trusts that exact name on purpose (``trusted_types=[...]``, ``--trust-type NAME``,
  ``SHIPYARD_TRUSTED_TYPES``).

Everything else is refused, at registration before the model is called and on every load of the bytes.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

REVIEWED_TYPES: frozenset[str] = frozenset(
    {
        # dtype objects of fitted arrays (categories_, classes_): plain data.
        "numpy.dtype",
        # Node storage of every tree model (DecisionTree*, RandomForest*, ExtraTrees*, GradientBoosting*,
        # AdaBoost, IsolationForest, Bagging). skops leaves it out because a crafted node array can make
        # predict read out of bounds; shipyard checks every node index on load (see sklearn.py).
        "sklearn.tree._tree.Tree",
        # The same for HistGradientBoosting*; its nodes are checked on load too.
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        # Neighbour indexes and the distance metrics KNeighbors*/RadiusNeighbors* build by default.
        # PyFuncDistance64 (a metric that calls a Python function) is deliberately absent.
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.metrics._dist_metrics.ManhattanDistance64",
        "sklearn.metrics._dist_metrics.MinkowskiDistance64",
        "sklearn.metrics._dist_metrics.ChebyshevDistance64",
        # CalibratedClassifierCV's fitted calibrators.
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        # The dict of named sub-estimators of Voting*/Stacking*.
        "sklearn.utils._bunch.Bunch",
        # make_column_selector(dtype_include=object): a selector by dtype or regex, and the type it names.
        "sklearn.compose._column_transformer.make_column_selector",
        "builtins.object",
        "numpy.number",
        "numpy.integer",
        "numpy.floating",
        # Cross-validation splitters given as cv= (CalibratedClassifierCV, *CV estimators): index generators.
        "sklearn.model_selection._split.KFold",
        "sklearn.model_selection._split.StratifiedKFold",
        "sklearn.model_selection._split.TimeSeriesSplit",
        # SplineTransformer's fitted splines and the array constructor they keep.
        "scipy.interpolate._bsplines.BSpline",
        "scipy._lib.array_api_compat.numpy._aliases.asarray",
    }
)
"""Types beyond skops' defaults that legitimate models need, each reviewed for what loading it can do."""

REVIEWED_FUNCTIONS: frozenset[str] = frozenset(
    {
        # Pure NumPy array functions for FunctionTransformer (ufuncs such as log1p, sqrt, exp, log, expm1,
        # absolute and square are trusted by skops already). Each only computes on the arrays it is given.
        "numpy.clip",
        "numpy.nan_to_num",
        "numpy.round",
        "numpy.squeeze",
        "numpy.ravel",
        "numpy.atleast_2d",
        # HistGradientBoosting* with categorical features validates its numeric columns through
        # FunctionTransformer(partial(check_array, ...)). A partial is harmless in itself: skops records the
        # function and the arguments it wraps as their own entries, each audited by name like any other.
        "functools.partial",
        "sklearn.utils.validation.check_array",
        # Score functions of SelectKBest/SelectPercentile: statistics over X and y.
        "sklearn.feature_selection._univariate_selection.f_classif",
        "sklearn.feature_selection._univariate_selection.f_regression",
        "sklearn.feature_selection._univariate_selection.chi2",
        "sklearn.feature_selection._univariate_selection.r_regression",
        "sklearn.feature_selection._mutual_info.mutual_info_classif",
        "sklearn.feature_selection._mutual_info.mutual_info_regression",
    }
)
"""Functions beyond skops' defaults (the NumPy and SciPy ufuncs) that a stored model may call."""

REVIEWED: frozenset[str] = REVIEWED_TYPES | REVIEWED_FUNCTIONS


def untrusted(types: Iterable[str], extra: Sequence[str] = ()) -> list[str]:
    """Of the names skops reports as not trusted by default, those neither reviewed nor trusted on purpose.

    >>> untrusted(["sklearn.tree._tree.Tree", "mylib.Custom", "posix.system"], extra=["mylib.Custom"])
    ['posix.system']
    >>> untrusted(["numpy.testing._private.utils.runstring", "numpy.clip"])
    ['numpy.testing._private.utils.runstring']
    """
    allowed = REVIEWED | set(extra)
    return sorted({name for name in types if name not in allowed})


def qualified_name(obj: Any) -> str:
    """The name skops records for a class or function: its module and ``__name__`` (a method of a built-in
    class is named through its class).

    >>> import os
    >>> qualified_name(os.system), qualified_name(np.ndarray.tofile)
    ('posix.system', 'numpy.ndarray.tofile')
    """
    name = str(getattr(obj, "__name__", None) or type(obj).__name__)
    owner = getattr(obj, "__objclass__", None)
    if isinstance(owner, type):
        return f"{qualified_name(owner)}.{name}"
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str):  # as pickle does: the module that holds the object under its name
        found = (key for key, mod in list(sys.modules.items()) if getattr(mod, name, None) is obj)
        module = next(found, "__main__")
    return f"{module}.{name}"


_PLAIN = (str, bytes, int, float, complex, bool, type(None), slice, range)


@functools.cache
def _default_estimators() -> frozenset[type]:
    """The scikit-learn estimator classes skops trusts by default (its list is built the same way)."""
    from sklearn.utils.discovery import all_estimators

    return frozenset(cls for _, cls in all_estimators())


def _is_data(value: Any) -> bool:
    """Values that skops stores as plain data, never as code: NumPy arrays, scalars, dtypes, random states."""
    if isinstance(value, (np.ndarray, np.generic, np.dtype, np.random.RandomState, np.random.Generator)):
        return True
    return isinstance(value, type) and (issubclass(value, np.generic) or value.__module__ == "builtins")


def declared_untrusted(model: Any, extra: Sequence[str] = ()) -> list[str]:
    """Classes and callables a scikit-learn model is built from that are not trusted, read from its parameters.

    A look before anything of the model runs (skops' serialiser calls ``__getstate__``/``__reduce__`` of
    custom objects): it catches custom estimators and functions such as ``FunctionTransformer(func=os.system)``
    or ``kw_args={"f": eval}``. The audit of the serialised bytes (:func:`untrusted`) follows it at
    registration and on every load.

    >>> import os
    >>> from sklearn.preprocessing import FunctionTransformer
    >>> declared_untrusted(FunctionTransformer(func=os.system))
    ['posix.system']
    >>> declared_untrusted(FunctionTransformer(func=np.log1p, inverse_func=np.clip))
    []
    """
    found: set[str] = set()
    _collect(model, found, set())
    allowed = REVIEWED | set(extra)
    return sorted(name for name in found if name not in allowed)


def _collect(value: Any, found: set[str], seen: set[int]) -> None:
    if isinstance(value, _PLAIN) or id(value) in seen or _is_data(value):
        return
    seen.add(id(value))
    if isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _collect(item, found, seen)
    elif isinstance(value, dict):
        for key, item in value.items():
            _collect(key, found, seen)
            _collect(item, found, seen)
    elif isinstance(value, functools.partial):  # the partial is reviewed; what it wraps is checked here
        found.add("functools.partial")
        for item in (value.func, value.args, value.keywords):
            _collect(item, found, seen)
    elif isinstance(value, np.ufunc):  # NumPy and SciPy ufuncs: pure element-wise math, trusted by skops
        return
    elif isinstance(value, type) or inspect.isroutine(value):
        if value not in _default_estimators():
            found.add(qualified_name(value))
    else:
        cls = type(value)
        if cls not in _default_estimators():
            found.add(qualified_name(cls))
            return  # an untrusted object's parameters are never asked for: that would run its code
        try:
            params = value.get_params(deep=False)
        except Exception:  # a broken estimator: the audit of the stored bytes still follows
            return
        for item in params.values():
            _collect(item, found, seen)
