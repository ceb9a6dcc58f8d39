"""Model signatures: what a model takes and gives, inferred at registration and enforced at every edge.

A signature is either *columnar* (a DataFrame's column names and dtypes) or a *tensor* (an array's dtype
and shape). ``Signature.validate`` turns caller data (a DataFrame, a list of records, a dict of columns
or an array) into exactly what the model was trained on, or raises :class:`~shipyard.errors.SchemaError`
naming every column, row and value that does not fit.

>>> import pandas as pd
>>> sig = Signature.infer(pd.DataFrame({"amount": [1.5, 2.0], "merchant_id": [3, 4]}))
>>> [(c.name, c.dtype) for c in sig.inputs]
[('amount', 'float64'), ('merchant_id', 'int64')]
>>> sig.validate([{"amount": "abc", "merchant_id": 1}])
Traceback (most recent call last):
...
shipyard.errors.SchemaError: ... column 'amount': expected float64, got string 'abc' (row 0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shipyard.errors import InvalidInput, SchemaError

_INT_KINDS = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
_FLOAT_KINDS = {"float16", "float32", "float64"}
_MAX_SHOWN = 10


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One named input or output column and its dtype (``float64``, ``int64``, ``bool``, ``string``, ...).

    ``nullable`` says whether an input may be missing (``None``/NaN/NaT): inferred from the training
    data, where any missing value makes the column nullable. Signatures stored before this was recorded
    have no such key and load as nullable, so validation accepts exactly what it accepted then.
    """

    name: str
    dtype: str
    nullable: bool = True

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form: name, dtype and nullable."""
        return {"name": self.name, "dtype": self.dtype, "nullable": self.nullable}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnSpec:
        """Rebuild a column from :meth:`to_dict` output (a missing ``nullable`` reads as true)."""
        return cls(str(data["name"]), str(data["dtype"]), bool(data.get("nullable", True)))


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """An array input: element dtype and shape, ``None`` for the free (batch) dimension."""

    dtype: str
    shape: tuple[int | None, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Signature:
    """The inputs a model accepts and the outputs it gives.

    Exactly one of ``inputs`` (columnar) and ``tensor`` is set.
    """

    inputs: tuple[ColumnSpec, ...] = ()
    tensor: TensorSpec | None = None
    outputs: tuple[ColumnSpec, ...] = ()
    _by_name: dict[str, ColumnSpec] = field(default_factory=dict, init=False, repr=False, compare=False)
    _labels: list[pd.Index] = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_name.update({c.name: c for c in self.inputs})

    # ------------------------------------------------------------------ building
    @classmethod
    def infer(cls, X: Any, y: Any = None) -> Signature:
        """Infer a signature from training inputs ``X`` and, if given, targets ``y``.

        >>> import numpy as np
        >>> Signature.infer(np.zeros((5, 3), dtype="float32")).tensor
        TensorSpec(dtype='float32', shape=(None, 3))
        """
        outputs = _infer_outputs(y)
        if isinstance(X, pd.DataFrame):
            inputs = tuple(ColumnSpec(str(c), _dtype_name(X[c]), bool(X[c].isna().any())) for c in X.columns)
            return cls(inputs=inputs, outputs=outputs)
        if isinstance(X, Mapping):
            return cls.infer(pd.DataFrame(dict(X)), y)
        array = np.asarray(X)
        if array.dtype == object:
            raise InvalidInput("cannot infer a signature from an array of mixed objects; pass a DataFrame instead")
        if array.ndim == 1:
            array = array.reshape(-1, 1)
        return cls(tensor=TensorSpec(array.dtype.name, (None, *array.shape[1:])), outputs=outputs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, stored with the model version (outputs carry no ``nullable``)."""
        data: dict[str, Any] = {"outputs": [{"name": c.name, "dtype": c.dtype} for c in self.outputs]}
        if self.tensor is not None:
            data["tensor"] = self.tensor.to_dict()
        else:
            data["inputs"] = [c.to_dict() for c in self.inputs]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        """Rebuild a signature from :meth:`to_dict` output."""
        tensor = data.get("tensor")
        return cls(
            inputs=tuple(ColumnSpec.from_dict(c) for c in data.get("inputs", [])),
            tensor=TensorSpec(tensor["dtype"], tuple(tensor["shape"])) if tensor else None,
            outputs=tuple(ColumnSpec(c["name"], c["dtype"]) for c in data.get("outputs", [])),
        )

    @property
    def column_names(self) -> list[str]:
        """Input column names in training order (empty for tensor signatures)."""
        return [c.name for c in self.inputs]

    # ------------------------------------------------------------------ checking
    def validate(
        self, data: Any, *, allow_extra: bool = False, first_row: int = 0, as_array: bool = False
    ) -> pd.DataFrame | np.ndarray[Any, Any]:
        """Return ``data`` shaped and typed as the model expects, or raise ``SchemaError``.

        Columnar signatures give a DataFrame with the training columns in training order; extra
        columns are an error unless ``allow_extra`` is true, in which case they are dropped.
        Rows are numbered from ``first_row`` in messages (for data read in chunks). With ``as_array``
        and only float64 inputs, the same values come as one float64 array (rows, inputs) instead of a
        frame (what a server hands to models that score arrays: no frame is built at all).

        >>> sig = Signature.infer(pd.DataFrame({"a": [1.0], "b": [2.0]}))
        >>> sig.validate([{"a": 3, "b": 4.5}], as_array=True).tolist()
        [[3.0, 4.5]]
        """
        if self.tensor is not None:
            return self._validate_tensor(data, first_row)
        columns = self._plain_records(data)
        if columns is not None:  # the common serving case, without building a frame twice
            if as_array and self.all_float:
                return self.block(columns, len(data))
            return self.frame(columns, len(data))
        frame = self._to_frame(data)
        problems: list[str] = []
        names = set(map(str, frame.columns))
        for spec in self.inputs:
            if spec.name not in names:
                problems.append(f"missing column {spec.name!r}")
        if not allow_extra:
            expected = {c.name for c in self.inputs}
            for extra in (str(c) for c in frame.columns if str(c) not in expected):
                problems.append(
                    f"unexpected column {extra!r} (to drop extra columns pass allow_extra=True; CLI: --allow-extra)"
                )
        if problems:
            raise SchemaError(problems)
        out: dict[str, Any] = {}
        for spec in self.inputs:
            converted = _convert_column(frame[spec.name], spec, problems, first_row)
            if converted is not None:
                if not spec.nullable:
                    _missing_problems(converted, spec, problems, first_row)
                out[spec.name] = converted
            if len(problems) >= _MAX_SHOWN:
                break
        if problems:
            raise SchemaError(problems)
        if as_array and self.all_float:
            return self.block(out, len(frame))
        return self.frame(out, len(frame))

    def missing(self, frame: pd.DataFrame, first_row: int = 0) -> dict[int, str]:
        """The positions of the rows of ``frame`` with a missing value in a column that may not have one, each
        with the message validation gives for it (the first such column of the row); found without a row loop.

        >>> sig = Signature.infer(pd.DataFrame({"a": [1.0], "b": [None]}))
        >>> sig.missing(pd.DataFrame({"a": [1.0, None], "b": [None, 2.0]}), first_row=10)
        {1: "column 'a' row 11 is missing; the model was trained without missing values there"}
        """
        found: dict[int, str] = {}
        for spec in self.inputs:
            if spec.nullable or spec.name not in frame.columns:
                continue
            for position in np.flatnonzero(frame[spec.name].isna().to_numpy()):
                found.setdefault(int(position), _missing_message(spec, first_row + int(position)))
        return found

    @property
    def all_float(self) -> bool:
        """Whether there are input columns and every one is a float64 (such rows fit one float array)."""
        return bool(self.inputs) and all(spec.dtype == "float64" for spec in self.inputs)

    def block(self, columns: dict[str, Any], rows: int) -> np.ndarray[Any, Any]:
        """The float64 array (rows, inputs) of already converted float ``columns``, in training order.

        Column-major, as pandas lays out the frame's block: a model then sums in the same order, so the
        array scores to the last bit as the frame does.
        """
        block = np.empty((rows, len(self.inputs)), dtype=np.float64, order="F")
        for index, spec in enumerate(self.inputs):
            block[:, index] = columns[spec.name]
        return block

    def frame(self, columns: dict[str, Any], rows: int) -> pd.DataFrame:
        """The frame :meth:`validate` returns for already converted ``columns`` (one array per input column).

        One 2-d block when every input is a float64, else one array per column.

        The column labels are a plain object index, which pandas builds and compares (when the micro-batcher
        concatenates requests) several times faster than its default string dtype.
        """
        if not self._labels:
            self._labels.append(pd.Index(self.column_names, dtype=object))
        labels = self._labels[0]
        if self.inputs and all(spec.dtype == "float64" for spec in self.inputs):
            block = np.empty((rows, len(self.inputs)), dtype=np.float64, order="F")  # as pandas lays it out
            for index, spec in enumerate(self.inputs):
                block[:, index] = columns[spec.name]
            return pd.DataFrame(block, columns=labels, copy=False)
        return pd.DataFrame(columns, index=pd.RangeIndex(rows), columns=labels)

    def _plain_records(self, data: Any) -> dict[str, Any] | None:
        """Columns of ``data`` when it is a list of dicts with exactly the input columns, each value already of
        its column's plain Python type (float or int for floats, int for ints, bool, str); else ``None``, and
        the general path checks everything and names the problems.

        >>> sig = Signature.infer(pd.DataFrame({"amount": [1.5], "channel": ["web"]}))
        >>> sig._plain_records([{"amount": 2, "channel": "pos"}])["amount"]
        array([2.])
        >>> sig._plain_records([{"amount": "2", "channel": "pos"}]) is None
        True
        """
        if type(data) is not list or not data or len(data) > 100_000:
            return None
        expected = self._by_name.keys()
        for row in data:
            if type(row) is not dict or row.keys() != expected:
                return None
        columns: dict[str, Any] = {}
        for spec in self.inputs:
            values = [row[spec.name] for row in data]
            kinds = set(map(type, values))
            dtype = spec.dtype
            if dtype in _FLOAT_KINDS and kinds <= {float, int}:
                try:  # a value out of the column's range goes to the general path, which names it
                    if not spec.nullable and float in kinds:
                        total = sum(values)  # NaN if a value is NaN (or inf and -inf: the general path sorts it out)
                        if total != total:
                            return None  # the general path names the missing cells
                    if dtype == "float64":  # only an int above 1.8e308 can overflow: OverflowError
                        columns[spec.name] = np.array(values, dtype=dtype)
                    else:
                        with np.errstate(over="raise"):
                            columns[spec.name] = np.array(values, dtype=dtype)
                except (OverflowError, FloatingPointError):
                    return None
            elif dtype in _INT_KINDS and kinds == {int}:
                info = np.iinfo(np.dtype(dtype))
                if not (info.min <= min(values) and max(values) <= info.max):
                    return None
                columns[spec.name] = np.array(values, dtype=dtype)
            elif dtype == "bool" and kinds == {bool}:
                columns[spec.name] = np.array(values, dtype=bool)
            elif dtype in ("string", "category") and kinds == {str}:
                columns[spec.name] = np.array(values, dtype=object)
            else:
                return None
        return columns

    def _to_frame(self, data: Any) -> pd.DataFrame:
        if isinstance(data, pd.DataFrame):
            return data
        if isinstance(data, Mapping):
            try:
                return pd.DataFrame({str(k): _column_values(v) for k, v in data.items()})
            except ValueError as exc:
                raise SchemaError([f"columns have different lengths ({exc})"]) from None
        if isinstance(data, np.ndarray) or (
            isinstance(data, Sequence) and not isinstance(data, str) and data and not isinstance(data[0], Mapping)
        ):
            array = np.asarray(data, dtype=object)
            if array.ndim != 2 or array.shape[1] != len(self.inputs):
                raise SchemaError(
                    [
                        f"expected rows of {len(self.inputs)} values ({', '.join(self.column_names)}), "
                        f"got an array of shape {array.shape}"
                    ]
                )
            return pd.DataFrame(array, columns=self.column_names)
        if isinstance(data, Sequence) and not isinstance(data, str):
            bad = [i for i, row in enumerate(data) if not isinstance(row, Mapping)]
            if bad:
                raise SchemaError([f"row {bad[0]} is not an object of column values"])
            return pd.DataFrame.from_records(list(data))
        raise SchemaError([f"expected a table of rows, got {type(data).__name__}"])

    def _validate_tensor(self, data: Any, first_row: int) -> np.ndarray[Any, Any]:
        assert self.tensor is not None
        spec = self.tensor
        if isinstance(data, pd.DataFrame):
            data = data.to_numpy()
        try:
            array = np.asarray(data)
            if array.dtype.kind in "USO" and np.dtype(spec.dtype).kind != array.dtype.kind:
                array = np.asarray(data, dtype=object)  # keep each value's own type to name the bad one
        except ValueError:
            raise SchemaError(["rows have different lengths"]) from None
        width = spec.shape[1:]
        if array.ndim == len(spec.shape) - 1 and array.shape == tuple(width):
            array = array.reshape(1, *array.shape)
        if array.ndim != len(spec.shape) or any(
            want is not None and got != want for want, got in zip(spec.shape[1:], array.shape[1:], strict=False)
        ):
            shape = ", ".join("N" if d is None else str(d) for d in spec.shape)
            raise SchemaError([f"expected an array of shape ({shape}), got {array.shape}"])
        target = np.dtype(spec.dtype)
        if array.dtype == target:
            return array
        if (
            array.dtype.kind in "biuf"
            and target.kind in "fiu"
            and np.can_cast(array.dtype, target, "same_kind")
            and _fits(array, target)
        ):
            return array.astype(target)
        flat = array.reshape(len(array), -1) if len(array) else array
        for row_index, row in enumerate(flat):
            for value in row:
                problem = _value_problem(value, spec.dtype)
                if problem:
                    raise SchemaError([f"expected {spec.dtype}, got {problem} (row {first_row + row_index})"])
        try:
            return array.astype(target)
        except (TypeError, ValueError) as exc:
            raise SchemaError([f"expected {spec.dtype} values: {exc}"]) from None


# ---------------------------------------------------------------------- helpers
def _column_values(value: Any) -> list[Any]:
    """One column of a dict of columns: the values of a sequence, array or other iterable; anything else
    (a string, a number, ``None``, an object) is one value, a column of one row.

    >>> _column_values((1, 2)), _column_values(range(2)), _column_values("ab"), _column_values(None)
    ([1, 2], [0, 1], ['ab'], [None])
    """
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return [value.item()]
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def _fits(array: np.ndarray[Any, Any], target: np.dtype[Any]) -> bool:
    """Whether every value of a numeric ``array`` is in the range of ``target`` (a narrower cast would wrap
    integers around or turn floats into inf; such values are named one by one instead).

    >>> _fits(np.array([1, 300]), np.dtype("int8")), _fits(np.array([1e300]), np.dtype("float32"))
    (False, False)
    """
    if not array.size:
        return True
    if target.kind in "iu" and array.dtype.kind in "iu":
        info = np.iinfo(target)
        return bool(int(array.min()) >= info.min and int(array.max()) <= info.max)
    if target.kind == "f" and array.dtype.kind == "f" and target.itemsize < array.dtype.itemsize:
        finite = np.abs(array[np.isfinite(array)])
        return bool(not finite.size or finite.max() <= np.finfo(target).max)
    return True


def _dtype_name(series: pd.Series) -> str:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime64[ns]"
    if pd.api.types.is_numeric_dtype(dtype):
        return str(np.dtype(str(dtype)).name)
    return "string"


def _infer_outputs(y: Any) -> tuple[ColumnSpec, ...]:
    if y is None:
        return ()
    if isinstance(y, pd.DataFrame):
        return tuple(ColumnSpec(str(c), _dtype_name(y[c])) for c in y.columns)
    if isinstance(y, pd.Series):
        return (ColumnSpec(str(y.name) if y.name is not None else "prediction", _dtype_name(y)),)
    array = np.asarray(y)
    return (ColumnSpec("prediction", _dtype_name(pd.Series(array.ravel()[:1000]))),)


def _describe(value: Any) -> str:
    if isinstance(value, str):
        shown = str(value) if len(value) <= 30 else str(value)[:27] + "..."
        return f"string {shown!r}"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    if isinstance(value, (bool, np.bool_)):
        return f"bool {bool(value)}"
    if isinstance(value, (int, np.integer)):
        number = int(value)
        if number.bit_length() > 128:  # too long to show (and str() refuses ints of over 4300 digits)
            return f"int of {math.floor(number.bit_length() * math.log10(2)) + 1} digits"
        return f"int {number}"
    if isinstance(value, (float, np.floating)):
        return f"float {float(value)!r}"
    return f"{type(value).__name__} {value!r}"[:60]


def _value_problem(value: Any, dtype: str) -> str | None:
    """Describe ``value`` if it cannot be a ``dtype`` value, else ``None``.

    Numbers outside the column type's range are named with the range (JSON parsers hand integers above
    the 64-bit range over as floats, so an integral float is checked against an int column's range too).

    >>> _value_problem(2**63, "int64")
    'int 9223372036854775808 out of range [-9223372036854775808, 9223372036854775807]'
    >>> _value_problem(1.8446744073709552e19, "int64")
    'float 1.8446744073709552e+19 out of range [-9223372036854775808, 9223372036854775807]'
    >>> _value_problem(1e39, "float32")
    'float 1e+39 out of range [-3.4028234663852886e+38, 3.4028234663852886e+38]'
    """
    if dtype in _FLOAT_KINDS:
        if value is None:
            return None
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            return _describe(value)
        limit = float(np.finfo(np.dtype(dtype)).max)
        magnitude = abs(int(value)) if isinstance(value, (int, np.integer)) else abs(float(value))
        if magnitude > limit and magnitude != math.inf:  # inf is a float value like any other
            return f"{_describe(value)} out of range [{-limit}, {limit}]"
        return None
    if dtype in _INT_KINDS:
        if isinstance(value, (bool, np.bool_)) or value is None:
            return _describe(value)
        whole = isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer()
        if isinstance(value, (int, np.integer)) or whole:
            info = np.iinfo(np.dtype(dtype))
            if info.min <= int(value) <= info.max:
                return None
            return f"{_describe(value)} out of range [{info.min}, {info.max}]"
        return _describe(value)
    if dtype == "bool":
        return None if isinstance(value, (bool, np.bool_)) else _describe(value)
    if dtype in ("string", "category"):
        if value is None or isinstance(value, str) or (isinstance(value, float) and math.isnan(value)):
            return None
        return _describe(value)
    return None


def _missing_message(spec: ColumnSpec, row: int) -> str:
    return f"column {spec.name!r} row {row} is missing; the model was trained without missing values there"


def _missing_problems(values: Any, spec: ColumnSpec, problems: list[str], first_row: int) -> None:
    """Append a message per missing value (bounded) of a converted column that may not have any."""
    missing = pd.isna(values)
    if not missing.any():
        return
    before = len(problems)
    for row in np.flatnonzero(missing):
        problems.append(_missing_message(spec, first_row + int(row)))
        if len(problems) - before >= 3 or len(problems) >= _MAX_SHOWN:
            break


def _convert_column(series: pd.Series, spec: ColumnSpec, problems: list[str], first_row: int = 0) -> Any:
    """Convert one column to ``spec.dtype``; append a message per bad value (bounded) on failure."""
    dtype = spec.dtype
    kind = series.dtype
    # Fast paths: the column already has a compatible dtype.
    numeric = pd.api.types.is_float_dtype(kind) or pd.api.types.is_integer_dtype(kind)
    if dtype in _FLOAT_KINDS and numeric and not pd.api.types.is_bool_dtype(kind):
        if dtype == "float64":
            return series.to_numpy(dtype=dtype, na_value=np.nan)
        try:  # a narrower float: a value out of its range goes to the slow path, which names it
            with np.errstate(over="raise"):
                return series.to_numpy(dtype=dtype, na_value=np.nan)
        except FloatingPointError:
            pass
    if dtype in _INT_KINDS and pd.api.types.is_integer_dtype(kind) and not series.hasnans:
        values = series.to_numpy()
        info = np.iinfo(np.dtype(dtype))
        if len(values) == 0 or (values.min() >= info.min and values.max() <= info.max):
            return values.astype(dtype)
    if dtype == "bool" and pd.api.types.is_bool_dtype(kind) and not series.hasnans:
        return series.to_numpy(dtype=bool)
    if dtype == "datetime64[ns]":
        try:  # numbers are nanoseconds since 1970: inf, NaN or one past the datetime64 range is refused
            with np.errstate(invalid="raise", over="raise"):
                return pd.to_datetime(series).to_numpy()
        except (ValueError, TypeError, OverflowError, FloatingPointError):
            problems.append(f"column {spec.name!r}: expected a date-time, got values that do not parse as one")
            return None
    if dtype in ("string", "category") and (
        pd.api.types.is_string_dtype(kind) or isinstance(kind, pd.CategoricalDtype)
    ):
        values = series.to_numpy(dtype=object)
        bad = [i for i, v in enumerate(values) if _value_problem(v, dtype)]
        if not bad:
            return values
    # Slow path: look at every value and name the bad ones.
    values = series.to_numpy(dtype=object)
    before = len(problems)
    for row, value in enumerate(values):
        problem = _value_problem(value, dtype)
        if problem:
            problems.append(f"column {spec.name!r}: expected {dtype}, got {problem} (row {first_row + row})")
            if len(problems) - before >= 3 or len(problems) >= _MAX_SHOWN:
                break
    if len(problems) > before:
        return None
    if dtype in ("string", "category"):
        return values
    if dtype == "bool":
        return values.astype(bool)
    return np.array([np.nan if v is None else v for v in values], dtype=dtype)
