"""check_schema: a source against a model signature, before any scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shipyard.data import check_schema, open_source
from shipyard.errors import InvalidInput, SchemaError
from shipyard.signature import ColumnSpec, Signature

from .conftest import make_frame

SIG = Signature(
    inputs=(
        ColumnSpec("amount", "float64"),
        ColumnSpec("hour", "int64"),
        ColumnSpec("merchant", "string"),
        ColumnSpec("is_online", "bool"),
    )
)


def test_matching_source_returns_signature_columns_in_order(tmp_path: Path) -> None:
    frame = make_frame()
    frame[["is_online", "merchant", "hour", "amount"]].assign(extra=1).to_parquet(tmp_path / "tx.parquet")
    assert check_schema(open_source(tmp_path / "tx.parquet"), SIG) == ["amount", "hour", "merchant", "is_online"]


def test_int_to_float_nullable_ints_and_categories_are_fine(tmp_path: Path) -> None:
    table = pa.table({
        "amount": pa.array([1, 2], pa.int32()),
        "hour": pa.array([1, None], pa.int64()),
        "merchant": pa.array(["a", "b"]).dictionary_encode(),
        "is_online": [True, False],
    })
    pq.write_table(table, tmp_path / "tx.parquet")
    assert check_schema(open_source(tmp_path / "tx.parquet"), SIG) == SIG.column_names


def test_every_missing_and_unconvertible_column_is_named_at_once(tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    path.write_text("amount,merchant,is_online\nhigh,3,yes\n")
    with pytest.raises(SchemaError) as info:
        check_schema(open_source(path), SIG)
    message = str(info.value)
    assert "missing column 'hour'" in message
    assert f"({path} has: amount, merchant, is_online)" in message
    assert f"column 'amount' is string in {path}, the model expects float64" in message
    assert "column 'merchant' is int64" in message
    assert "the model expects string" in message
    assert "column 'is_online' is string" in message
    assert len(info.value.problems) == 4


def test_several_missing_columns_in_one_problem() -> None:
    pattern = r"missing columns 'amount', 'hour', 'merchant', 'is_online' \(<DataFrame> has: x\)"
    with pytest.raises(SchemaError, match=pattern):
        check_schema(open_source(pd.DataFrame({"x": [1]})), SIG)


def test_extra_columns_refused_when_asked() -> None:
    frame = make_frame().assign(id=1, note="x")
    with pytest.raises(SchemaError, match=r"unexpected columns 'id', 'note' \(to drop extra columns pass allow_extra"):
        check_schema(open_source(frame), SIG, allow_extra=False)
    assert check_schema(open_source(frame), SIG) == SIG.column_names


def test_float_column_where_int_expected_is_left_to_value_checks() -> None:
    frame = make_frame().assign(hour=lambda f: f["hour"].astype(float))
    assert check_schema(open_source(frame), SIG) == SIG.column_names


def test_all_null_column_fits_floats_but_not_ints() -> None:
    sig = Signature(inputs=(ColumnSpec("a", "float64"), ColumnSpec("b", "int64")))
    frame = pd.DataFrame({"a": [None, None], "b": [None, None]})
    with pytest.raises(SchemaError) as info:
        check_schema(open_source(frame), sig)
    assert info.value.problems == ["column 'b' is null in <DataFrame>, the model expects int64"]


def test_datetime_expects_timestamps_dates_or_strings() -> None:
    sig = Signature(inputs=(ColumnSpec("at", "datetime64[ns]"),))
    assert check_schema(open_source(pd.DataFrame({"at": ["2024-01-01"]})), sig) == ["at"]
    assert check_schema(open_source(pd.DataFrame({"at": pd.to_datetime(["2024-01-01"])})), sig) == ["at"]
    with pytest.raises(SchemaError, match="column 'at' is float64"):
        check_schema(open_source(pd.DataFrame({"at": [1.5]})), sig)


def test_signature_inferred_from_training_frame_accepts_its_own_file(tmp_path: Path) -> None:
    frame = make_frame(50)
    frame.to_csv(tmp_path / "train.csv", index=False)
    sig = Signature.infer(frame)
    assert check_schema(open_source(tmp_path / "train.csv"), sig) == list(frame.columns)


# ---------------------------------------------------------------- tensor signatures
TENSOR = Signature.infer(np.zeros((2, 3), dtype="float32"))


def test_tensor_takes_the_numeric_columns_when_their_count_matches() -> None:
    frame = pd.DataFrame({"a": [1.0], "id": ["x"], "b": [2], "c": [3.5]})
    assert check_schema(open_source(frame), TENSOR) == ["a", "b", "c"]


def test_tensor_with_wrong_number_of_numeric_columns_asks_for_columns() -> None:
    frame = pd.DataFrame({"a": [1.0], "b": [2], "c": [3.5], "d": [1]})
    with pytest.raises(SchemaError, match=r"takes rows of 3 float32 values but <DataFrame> has 4 numeric columns "
                                          r"\(a, b, c, d\); pass the 3 feature columns"):
        check_schema(open_source(frame), TENSOR)
    assert check_schema(open_source(frame), TENSOR, columns=["d", "a", "b"]) == ["d", "a", "b"]


def test_tensor_named_columns_are_checked() -> None:
    frame = pd.DataFrame({"a": [1.0], "s": ["x"], "b": [2]})
    with pytest.raises(SchemaError) as info:
        check_schema(open_source(frame), TENSOR, columns=["a", "s", "zz"])
    assert info.value.problems == [
        "missing column 'zz' (<DataFrame> has: a, s, b)",
        "column 's' is string in <DataFrame>, the model expects float32",
    ]
    with pytest.raises(SchemaError, match="takes rows of 3 values but 2 columns were named"):
        check_schema(open_source(frame), TENSOR, columns=["a", "b"])


def test_tensor_of_images_cannot_be_fed_from_a_table() -> None:
    sig = Signature.infer(np.zeros((2, 4, 4), dtype="float32"))
    with pytest.raises(SchemaError, match=r"arrays of shape \(N, 4, 4\)"):
        check_schema(open_source(pd.DataFrame({"a": [1.0]})), sig)


def test_columns_argument_is_only_for_tensor_models() -> None:
    with pytest.raises(InvalidInput, match="columns= is only for models that take arrays"):
        check_schema(open_source(make_frame()), SIG, columns=["amount"])
