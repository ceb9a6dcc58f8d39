"""Signature validation of JSON-like records: the quick path for plain rows gives exactly the general path's frame."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shipyard.errors import SchemaError
from shipyard.signature import Signature

TRAINING = pd.DataFrame(
    {
        "amount": np.array([1.5, 2.0]),
        "ratio": np.array([0.5, 0.25], dtype="float32"),
        "hour": np.array([3, 4], dtype="int64"),
        "small": np.array([1, 2], dtype="int8"),
        "foreign": [True, False],
        "channel": pd.Series(["web", "pos"], dtype=object),
    }
)


def general_path(signature: Signature, records: list[dict[str, Any]]) -> pd.DataFrame:
    """What validation gives for the same rows handed over as a DataFrame (never the records quick path)."""
    frame = signature.validate(pd.DataFrame.from_records(records))
    assert isinstance(frame, pd.DataFrame)
    return frame


@pytest.mark.parametrize(
    "records",
    [
        [{"amount": 12.5, "ratio": 0.1, "hour": 3, "small": -4, "foreign": True, "channel": "web"}],
        [
            {"amount": 3, "ratio": 1, "hour": 23, "small": 127, "foreign": False, "channel": "pos"},  # ints for floats
            {"amount": -1e300, "ratio": 2.5, "hour": 0, "small": -128, "foreign": True, "channel": ""},
        ],
    ],
)
def test_plain_records_give_the_general_paths_frame(records: list[dict[str, Any]]) -> None:
    signature = Signature.infer(TRAINING)
    quick = signature.validate(records)
    assert isinstance(quick, pd.DataFrame)
    pd.testing.assert_frame_equal(quick, general_path(signature, records), check_column_type=False)
    assert list(quick.columns) == list(TRAINING.columns)
    assert quick.dtypes.astype(str).tolist()[:5] == ["float64", "float32", "int64", "int8", "bool"]


def test_a_float_only_signature_gives_the_same_values_and_layout() -> None:
    X = pd.DataFrame(np.random.default_rng(0).normal(size=(5, 4)), columns=["a", "b", "c", "d"])
    signature = Signature.infer(X)
    records = X.to_dict("records")
    quick = signature.validate(records)
    assert isinstance(quick, pd.DataFrame)
    pd.testing.assert_frame_equal(quick, general_path(signature, records), check_column_type=False)
    # the same memory layout as pandas' own: a model's floating-point results do not change
    assert quick.to_numpy().flags.f_contiguous


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"hour": 3.5}, "column 'hour': expected int64, got float 3.5"),
        ({"small": 300}, "column 'small': expected int8, got int 300 out of range"),
        ({"amount": "12"}, "column 'amount': expected float64, got string '12'"),
        ({"foreign": 1}, "column 'foreign': expected bool, got int 1"),
        ({"channel": 7}, "column 'channel': expected string, got int 7"),
    ],
)
def test_rows_that_are_not_plain_still_get_the_general_paths_messages(row: dict[str, Any], message: str) -> None:
    base = {"amount": 1.0, "ratio": 0.5, "hour": 3, "small": 1, "foreign": True, "channel": "web"}
    with pytest.raises(SchemaError) as raised:
        Signature.infer(TRAINING).validate([{**base, **row}])
    assert any(message in problem for problem in raised.value.problems), raised.value.problems


def test_missing_values_and_extra_columns_take_the_general_path() -> None:
    trained = Signature.infer(TRAINING)  # no missing values in training: none are accepted
    base = {"amount": None, "ratio": 0.5, "hour": 3, "small": 1, "foreign": True, "channel": None}
    with pytest.raises(SchemaError, match=r"column 'amount' row 0 is missing; .*column 'channel' row 0 is missing"):
        trained.validate([base])
    signature = Signature(inputs=tuple(replace(c, nullable=c.name in ("amount", "channel")) for c in trained.inputs))
    frame = signature.validate([base])
    assert isinstance(frame, pd.DataFrame)
    assert np.isnan(frame.loc[0, "amount"]) and frame.loc[0, "channel"] is None
    with pytest.raises(SchemaError, match="unexpected column 'extra'"):
        signature.validate([{**base, "extra": 1}])
    kept = signature.validate([{**base, "extra": 1}], allow_extra=True)
    assert isinstance(kept, pd.DataFrame) and list(kept.columns) == list(TRAINING.columns)
