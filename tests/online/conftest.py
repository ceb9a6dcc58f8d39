"""A synthetic stream with a known concept drift, and the in-process replay the learner must equal."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd

from shipyard.training.incremental import partial_fit


def stream(n: int, *, drift_at: int | None = None, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Two features; the label is ``x0 + 0.5 x1 > 0``, flipped from ``drift_at`` on."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    if drift_at is not None:
        y[drift_at:] = 1 - y[drift_at:]
    return X, y


def replay(model: Any, X: np.ndarray | pd.DataFrame, y: np.ndarray, batch: int) -> Any:
    """The same events learnt in-process, in the same blocks, by a copy of ``model`` (a frame per block if
    ``X`` is a frame, as a user with named columns would write it)."""
    model = copy.deepcopy(model)
    whole = len(y) - len(y) % batch
    for start in range(0, whole, batch):
        block = X.iloc[start:start + batch] if isinstance(X, pd.DataFrame) else X[start:start + batch]
        partial_fit(model, block, y[start:start + batch])
    return model


def coefficients(pipe: Any) -> np.ndarray:
    """Scaler statistics and linear coefficients, flattened, to compare two models."""
    scaler, clf = pipe.steps[0][1], pipe.steps[-1][1]
    return np.concatenate([scaler.mean_, scaler.var_, clf.coef_.ravel(), clf.intercept_])
