"""How a model's signature maps onto Open Inference Protocol (KServe V2) tensors; pure data, no HTTP.

* a tensor signature is one input, ``input-0``, with the signature's dtype and shape (``-1`` for the batch);
* an all-numeric columnar signature is one 2-D input, ``input-0`` of shape ``[-1, n_columns]`` in the widest
  column type; one 1-D input per column, named after it, is accepted as well;
* any other columnar signature is one input per column, shape ``[-1]``, in the column's type (strings are BYTES).

Outputs are ``predict`` (one label or value per row) and, for classifiers, ``predict_proba`` (``[-1, n_classes]``
FP64). :func:`metadata_inputs` and :func:`metadata_outputs` declare these in the model metadata;
:func:`features` turns a request's tensors into what ``Signature.validate`` takes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from shipyard.errors import InvalidInput
from shipyard.serving.v2_codec import PREDICT, PREDICT_PROBA, Tensor
from shipyard.serving.v2_tensors import DTYPES, typed_output, v2_datatype
from shipyard.signature import Signature, TensorSpec

TENSOR_INPUT = "input-0"
_NUMERIC_COLUMNS = {dtype.name for name, dtype in DTYPES.items() if name != "BYTES"}  # bool, int*, uint*, float*


def _numeric_columns(signature: Signature) -> bool:
    """Whether every column of a columnar signature has a numeric (or bool) dtype."""
    return bool(signature.inputs) and all(c.dtype in _NUMERIC_COLUMNS for c in signature.inputs)


# ---------------------------------------------------------------------- metadata
def metadata_inputs(signature: Signature | None) -> list[dict[str, Any]]:
    """The input tensors a signature is declared as (see the module docstring).

    >>> metadata_inputs(Signature.infer(pd.DataFrame({"a": [1.5], "n": [2]})))
    [{'name': 'input-0', 'datatype': 'FP64', 'shape': [-1, 2]}]
    >>> metadata_inputs(Signature.infer(pd.DataFrame({"city": ["Oslo"], "n": [2]})))
    [{'name': 'city', 'datatype': 'BYTES', 'shape': [-1]}, {'name': 'n', 'datatype': 'INT64', 'shape': [-1]}]
    """
    if signature is None:
        return []
    if signature.tensor is not None:
        shape = [-1 if d is None else d for d in signature.tensor.shape]
        return [{"name": TENSOR_INPUT, "datatype": v2_datatype(signature.tensor.dtype), "shape": shape}]
    if _numeric_columns(signature):
        widest = np.result_type(*(np.dtype(c.dtype) for c in signature.inputs))
        datatype = v2_datatype(widest) if widest.kind in "biuf" else "FP64"
        return [{"name": TENSOR_INPUT, "datatype": datatype, "shape": [-1, len(signature.inputs)]}]
    return [{"name": c.name, "datatype": v2_datatype(c.dtype), "shape": [-1]} for c in signature.inputs]


def output_names(has_predict_proba: bool) -> list[str]:
    """The outputs a model gives: ``predict``, and ``predict_proba`` when it has one.

    >>> output_names(True), output_names(False)
    (['predict', 'predict_proba'], ['predict'])
    """
    return [PREDICT, PREDICT_PROBA] if has_predict_proba else [PREDICT]


def metadata_outputs(
    signature: Signature | None, classes: list[Any] | None, *, has_predict_proba: bool
) -> list[dict[str, Any]]:
    """``predict`` (typed from the classes, else the signature's outputs) and ``predict_proba`` for classifiers.

    >>> metadata_outputs(None, ["no", "yes"], has_predict_proba=True)
    [{'name': 'predict', 'datatype': 'BYTES', 'shape': [-1]},
     {'name': 'predict_proba', 'datatype': 'FP64', 'shape': [-1, 2]}]
    >>> metadata_outputs(Signature.infer(pd.DataFrame({"a": [1.0]}), pd.Series([2.5])), None, has_predict_proba=False)
    [{'name': 'predict', 'datatype': 'FP64', 'shape': [-1]}]
    """
    shape = [-1]
    if classes:
        datatype = typed_output(np.asarray(classes))[0]
    elif signature is not None and signature.outputs:
        dtypes = {c.dtype for c in signature.outputs}
        datatype = v2_datatype(dtypes.pop()) if len(dtypes) == 1 else "FP64"
        if len(signature.outputs) > 1:
            shape = [-1, len(signature.outputs)]
    else:
        datatype = "FP64"
    outputs: list[dict[str, Any]] = [{"name": PREDICT, "datatype": datatype, "shape": shape}]
    if has_predict_proba:
        outputs.append({"name": PREDICT_PROBA, "datatype": "FP64", "shape": [-1, len(classes) if classes else -1]})
    return outputs


def _expected(signature: Signature) -> str:
    """The inputs a signature takes, as an error message lists them."""
    names = [str(i["name"]) for i in metadata_inputs(signature)]
    if signature.tensor is None and _numeric_columns(signature):
        names.append(f"or one per column: {', '.join(signature.column_names)}")
    return ", ".join(names)


# ---------------------------------------------------------------------- request rows
def features(signature: Signature | None, inputs: list[Tensor]) -> pd.DataFrame | np.ndarray[Any, Any]:
    """The request's tensors as what ``Signature.validate`` takes: an array or a frame of columns.

    Without a signature, one tensor of two or more dimensions is an array, and anything else one column per input.

    >>> signature = Signature.infer(pd.DataFrame({"a": [1.5], "n": [2]}))
    >>> features(signature, [Tensor("input-0", "FP64", (2, 2), np.array([1.5, 2, 0.5, 3]))])
         a    n
    0  1.5  2.0
    1  0.5  3.0
    >>> features(signature, [Tensor("input-0", "FP64", (1, 3), np.array([1.5, 2, 0.5]))])
    Traceback (most recent call last):
    ...
    shipyard.errors.InvalidInput: input 'input-0' must have shape [-1, 2] (columns a, n), got [1, 3]
    """
    if signature is not None and signature.tensor is not None:
        return _tensor(signature.tensor, inputs)
    if signature is None:  # no signature stored: one 2-D tensor, else one column per input
        if len(inputs) == 1 and len(inputs[0].shape) >= 2:
            tensor = inputs[0]
            if tensor.shape[0] == 0:
                raise InvalidInput(f"input {tensor.name!r} has no rows; send at least one")
            return tensor.values.reshape(tensor.shape)
        return _columns(inputs)

    columns = signature.column_names
    by_name = {t.name: t for t in inputs}
    if _numeric_columns(signature) and TENSOR_INPUT in by_name and TENSOR_INPUT not in columns:
        return _matrix(signature, inputs)
    unknown = [t.name for t in inputs if t.name not in columns]
    if unknown:
        raise InvalidInput(f"unknown input {unknown[0]!r}; this model takes: {_expected(signature)}")
    missing = [c for c in columns if c not in by_name]
    if missing:
        raise InvalidInput(f"missing input {', '.join(map(repr, missing))}; this model takes: {_expected(signature)}")
    return _columns(inputs)


def _tensor(spec: TensorSpec, inputs: list[Tensor]) -> np.ndarray[Any, Any]:
    """The one input of a tensor signature, checked against its shape."""
    unknown = [t.name for t in inputs if t.name != TENSOR_INPUT]
    if unknown or len(inputs) != 1:
        raise InvalidInput(
            f"unknown input {unknown[0]!r}; this model takes one input: {TENSOR_INPUT}"
            if unknown
            else f"this model takes one input: {TENSOR_INPUT}"
        )
    tensor = inputs[0]
    if len(tensor.shape) != len(spec.shape) or any(
        want is not None and got != want for want, got in zip(spec.shape, tensor.shape, strict=True)
    ):
        wanted = [-1 if d is None else d for d in spec.shape]
        raise InvalidInput(f"input {tensor.name!r} must have shape {wanted}, got {tensor.shown_shape}")
    if not tensor.shape or tensor.shape[0] == 0:
        raise InvalidInput(f"input {tensor.name!r} has no rows; send at least one")
    return tensor.values.reshape(tensor.shape)


def _matrix(signature: Signature, inputs: list[Tensor]) -> pd.DataFrame:
    """The one 2-D ``input-0`` of an all-numeric columnar signature, cut into typed columns."""
    columns = signature.column_names
    if len(inputs) != 1:
        raise InvalidInput(f"send either {TENSOR_INPUT} or one input per column ({', '.join(columns)}), not both")
    tensor = inputs[0]
    if len(tensor.shape) != 2 or tensor.shape[1] != len(columns):
        raise InvalidInput(
            f"input {tensor.name!r} must have shape [-1, {len(columns)}] (columns {', '.join(columns)}), "
            f"got {tensor.shown_shape}"
        )
    if tensor.shape[0] == 0:
        raise InvalidInput(f"input {tensor.name!r} has no rows; send at least one")
    matrix = tensor.values.reshape(tensor.shape)
    return pd.DataFrame({c.name: _column(matrix[:, j], c.dtype) for j, c in enumerate(signature.inputs)})


def _column(values: np.ndarray[Any, Any], dtype: str) -> np.ndarray[Any, Any]:
    """A column cut from a numeric 2-D tensor; 0/1 become booleans for bool columns."""
    if dtype == "bool" and values.dtype.kind in "iuf" and np.isin(values, (0, 1)).all():
        return values.astype(bool)
    return values


def _columns(inputs: list[Tensor]) -> pd.DataFrame:
    """One column per input, each of shape ``[rows]`` or ``[rows, 1]``, all with the same number of rows."""
    rows = None
    for tensor in inputs:
        if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            raise InvalidInput(
                f"input {tensor.name!r} is one column: its shape must be [-1] or [-1, 1], got {tensor.shown_shape}"
            )
        if rows is None:
            rows = tensor.shape[0]
        elif tensor.shape[0] != rows:
            raise InvalidInput(
                f"inputs have different numbers of rows: {inputs[0].name!r} has {rows}, "
                f"{tensor.name!r} has {tensor.shape[0]}"
            )
    if not rows:
        raise InvalidInput("the inputs have no rows; send at least one")
    return pd.DataFrame({t.name: t.values for t in inputs})
