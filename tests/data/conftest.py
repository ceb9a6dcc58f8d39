"""Data for the data-layer tests: a small frame with the column kinds models use."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def make_frame(n: int = 10, seed: int = 0) -> pd.DataFrame:
    """``n`` rows of floats, ints, strings (with a missing one) and booleans."""
    rng = np.random.default_rng(seed)
    merchant = [f"m{i % 4}" for i in range(n)]
    if n > 3:
        merchant[3] = None  # type: ignore[call-overload]
    return pd.DataFrame(
        {
            "amount": rng.normal(50, 10, n).round(3),
            "hour": np.arange(n, dtype="int64") % 24,
            "merchant": pd.Series(merchant, dtype="str"),
            "is_online": np.arange(n) % 2 == 0,
        }
    )


@pytest.fixture
def frame() -> pd.DataFrame:
    """Ten rows of mixed columns."""
    return make_frame()
