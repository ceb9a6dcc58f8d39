"""ONNX models (for example converted with skl2onnx), stored as the serialised protobuf and run with onnxruntime."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipyard.errors import InvalidInput, SchemaError, UntrustedArtifact
from shipyard.flavors.base import Dumped, Features, Flavor, LoadedModel, class_paths

# onnxruntime's element type names -> the numpy dtype fed to an input of that type
_ORT_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint64)": np.uint64,
    "tensor(uint32)": np.uint32,
    "tensor(uint16)": np.uint16,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(string)": object,
}

_LABEL_ATTRIBUTES = ("classlabels_strings", "classlabels_int64s", "classlabels_ints")


def _sorted(values: Sequence[Any]) -> list[Any]:
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=repr)


def _labels(node: Any) -> list[Any] | None:
    """Class labels stored as an attribute of a ZipMap or ``*Classifier`` node, if any."""
    for attribute in node.attribute:
        if attribute.name not in _LABEL_ATTRIBUTES:
            continue
        if attribute.strings:
            return [s.decode("utf-8") for s in attribute.strings]
        if attribute.ints:
            return [int(i) for i in attribute.ints]
    return None


def _zipmap_classes(proto: Any) -> list[Any] | None:
    for node in proto.graph.node:
        if node.op_type == "ZipMap":
            labels = _labels(node)
            if labels is not None:
                return _sorted(labels)
    return None


def _graph_classes(proto: Any) -> list[Any] | None:
    """Class labels in probability-column order, from metadata, a ZipMap node or a classifier node."""
    for prop in proto.metadata_props:
        if prop.key == "classes":
            try:
                classes = json.loads(prop.value)
            except ValueError:
                continue
            if isinstance(classes, list):
                return classes
    zipmap = _zipmap_classes(proto)
    if zipmap is not None:
        return zipmap
    for node in reversed(proto.graph.node):
        if node.op_type.endswith("Classifier"):
            labels = _labels(node)
            if labels is not None:
                return labels
    return None


def _describe(value_info: Any) -> dict[str, Any]:
    """Name, element type and shape of one graph input, as JSON-safe values."""
    tensor = value_info.type.tensor_type if value_info.type.HasField("tensor_type") else None
    if tensor is None:
        return {"name": value_info.name, "type": value_info.type.WhichOneof("value"), "shape": None}
    from onnx import TensorProto  # the flavor already imported onnx to read the graph

    shape: list[int | str | None] = []
    for dim in tensor.shape.dim:
        if dim.HasField("dim_value"):
            shape.append(int(dim.dim_value))
        elif dim.HasField("dim_param"):
            shape.append(dim.dim_param)
        else:
            shape.append(None)
    return {
        "name": value_info.name,
        "type": TensorProto.DataType.Name(tensor.elem_type).lower(),
        "shape": shape if tensor.HasField("shape") else None,
    }


def _graph_inputs(proto: Any) -> list[Any]:
    """Real inputs of the graph: older IR versions also list the initializers as inputs."""
    initializers = {init.name for init in proto.graph.initializer}
    return [i for i in proto.graph.input if i.name not in initializers]


def _graph_tensors(graph: Any) -> Iterator[Any]:
    """Every tensor a graph holds: initializers and the tensors in node attributes, subgraphs included."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: Any) -> Iterator[Any]:
    for attribute in node.attribute:
        if attribute.HasField("t"):
            yield attribute.t
        yield from attribute.tensors
        sparse_tensors = [attribute.sparse_tensor] if attribute.HasField("sparse_tensor") else []
        for sparse in [*sparse_tensors, *attribute.sparse_tensors]:
            yield from (sparse.values, sparse.indices)
        if attribute.HasField("g"):
            yield from _graph_tensors(attribute.g)
        for graph in attribute.graphs:
            yield from _graph_tensors(graph)


def _external_data(proto: Any) -> list[tuple[str, str]]:
    """(tensor name, location) of every tensor whose data the model keeps in another file."""
    from onnx import TensorProto

    tensors = list(_graph_tensors(proto.graph))
    for function in proto.functions:
        for node in function.node:
            tensors.extend(_node_tensors(node))
    found = []
    for tensor in tensors:
        if tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data) > 0:
            location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
            found.append((tensor.name, location))
    return found


def check_self_contained(proto: Any, where: str) -> None:
    """Refuse an ONNX model that keeps tensor data in other files.

    shipyard stores one file per version and onnxruntime would resolve an external location against
    whatever folder it runs in, so such a model either fails at load or reads a file of the server
    (``../../etc/passwd``, an absolute path). It is refused at registration and on every load.
    """
    external = _external_data(proto)
    if external:
        shown = ", ".join(f"{name!r} at {location!r}" for name, location in external[:5])
        more = f" (and {len(external) - 5} more)" if len(external) > 5 else ""
        raise UntrustedArtifact(
            f"{where} keeps tensor data outside the model file: {shown}{more}; shipyard stores one "
            "self-contained file and never reads other paths. Load the model with its data "
            "(onnx.load(path)) and save it with every tensor inside "
            "(onnx.save_model(model, path, save_as_external_data=False))"
        )


def _cast(values: np.ndarray[Any, Any], ort_type: str, name: str) -> np.ndarray[Any, Any]:
    if ort_type not in _ORT_DTYPES:
        raise InvalidInput(f"the ONNX input {name!r} has type {ort_type}, which shipyard cannot feed")
    dtype = _ORT_DTYPES[ort_type]
    try:
        if dtype is object:
            return np.asarray(values).astype(str).astype(object)
        return np.asarray(values).astype(dtype)
    except (TypeError, ValueError) as exc:
        raise SchemaError([f"input {name!r} cannot be converted to {ort_type}: {exc}"]) from None


class OnnxModel(LoadedModel):
    """An onnxruntime session with the knowledge of how to feed it and read its outputs."""

    flavor = "onnx"

    def __init__(self, session: Any, classes: list[Any] | None = None) -> None:
        super().__init__(session)
        self._inputs = list(session.get_inputs())
        self._outputs = list(session.get_outputs())
        self._classes = classes

    def _feed(self, features: Features) -> dict[str, np.ndarray[Any, Any]]:
        frame = features if isinstance(features, pd.DataFrame) else None
        array = None if frame is not None else np.asarray(features)
        if array is not None and array.ndim != 2:
            raise InvalidInput(f"ONNX models take a 2-D array of rows, got an array with {array.ndim} dimension(s)")
        if len(self._inputs) == 1:
            node = self._inputs[0]
            values = frame.to_numpy() if frame is not None else np.asarray(array)
            if len(node.shape) == 1:
                values = values.reshape(-1)
            return {node.name: _cast(values, node.type, node.name)}
        feed: dict[str, np.ndarray[Any, Any]] = {}
        if frame is not None:
            missing = [node.name for node in self._inputs if node.name not in frame.columns]
            if missing:
                raise SchemaError([f"missing column {name!r}" for name in missing])
            for node in self._inputs:
                feed[node.name] = _cast(frame[[node.name]].to_numpy(), node.type, node.name)
            return feed
        assert array is not None
        widths = [
            node.shape[1] if len(node.shape) > 1 and isinstance(node.shape[1], int) else 1 for node in self._inputs
        ]
        if sum(widths) != array.shape[1]:
            raise SchemaError([f"expected {sum(widths)} columns (one per ONNX input), got {array.shape[1]}"])
        start = 0
        for node, width in zip(self._inputs, widths, strict=True):
            feed[node.name] = _cast(array[:, start : start + width], node.type, node.name)
            start += width
        return feed

    def _run(self, output: str, features: Features) -> Any:
        feed = self._feed(features)
        try:
            return self.model.run([output], feed)[0]
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise InvalidInput(f"onnxruntime could not score the input: {exc}") from None

    def predict(self, features: Features) -> np.ndarray[Any, Any]:
        result = np.asarray(self._run(self._outputs[0].name, features))
        if result.ndim == 2 and result.shape[1] == 1:
            result = result.ravel()
        return result

    @property
    def has_predict_proba(self) -> bool:
        if len(self._outputs) < 2:
            return False
        second = self._outputs[1]
        if second.type.startswith("seq(map("):
            return True
        return second.type in ("tensor(float)", "tensor(double)") and "prob" in second.name.lower()

    @property
    def classes(self) -> list[Any] | None:
        return None if self._classes is None else list(self._classes)

    def predict_proba(self, features: Features) -> np.ndarray[Any, Any]:
        if not self.has_predict_proba:
            return super().predict_proba(features)
        result = self._run(self._outputs[1].name, features)
        if isinstance(result, list):  # ZipMap: one {class: probability} dict per row
            keys = self._classes
            if keys is None:
                keys = _sorted(list({key for row in result for key in row}))
                self._classes = keys if result else None
            return np.array([[row.get(key, 0.0) for key in keys] for row in result], dtype=np.float64).reshape(
                len(result), len(keys)
            )
        return np.asarray(result, dtype=np.float64)


class OnnxFlavor(Flavor):
    """Stores ONNX ``ModelProto`` objects as protobuf bytes and scores them with onnxruntime on the CPU.

    >>> from skl2onnx import to_onnx
    >>> from sklearn.linear_model import LinearRegression
    >>> X = np.array([[0.0], [1.0]], dtype=np.float32)
    >>> proto = to_onnx(LinearRegression().fit(X, [0.0, 2.0]), X)
    >>> flavor = OnnxFlavor()
    >>> dumped = flavor.dump(proto)
    >>> dumped.meta["inputs"]
    [{'name': 'X', 'type': 'float', 'shape': [None, 1]}]
    >>> flavor.load(dumped.data, dumped.meta).predict(np.array([[2.0]])).round(3).tolist()
    [4.0]
    """

    name = "onnx"
    suffixes = (".onnx",)
    modules = ("onnx", "onnxruntime")
    extra = "onnx"

    def handles(self, model: object) -> bool:
        # onnx.onnx_ml_pb2.ModelProto, or a subclass from another onnx protobuf module
        return any(path.startswith("onnx.") and path.endswith("ModelProto") for path in class_paths(model))

    def dump(self, model: Any, *, trusted_types: Sequence[str] = ()) -> Dumped:
        """Serialise the graph after checking that it is self-contained and that onnxruntime loads it,
        so a model that could not be served is refused now rather than at load."""
        self._import("onnx")
        check_self_contained(model, "the ONNX model")
        data: bytes = model.SerializeToString()
        self._session(data)
        meta: dict[str, Any] = {
            "inputs": [_describe(i) for i in _graph_inputs(model)],
            "outputs": [o.name for o in model.graph.output],
        }
        classes = _graph_classes(model)
        if classes is not None:
            meta["classes"] = classes
        return Dumped(data=data, meta=meta)

    def _parse(self, data: bytes) -> Any:
        onnx = self._import("onnx")
        try:
            proto = onnx.load_model_from_string(data)
        except Exception:  # protobuf raises DecodeError and friends on foreign bytes
            raise self._mismatch("not an ONNX protobuf") from None
        if not proto.HasField("graph") or len(proto.graph.node) == 0:
            raise self._mismatch("no ONNX graph with nodes")
        return proto

    def check_format(self, data: bytes) -> None:
        self._parse(data)

    def _session(self, data: bytes) -> Any:
        ort = self._import("onnxruntime")
        try:
            return ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise InvalidInput(f"onnxruntime cannot load this ONNX model: {exc}") from None

    def load(self, data: bytes, meta: dict[str, Any], *, trusted_types: Sequence[str] = ()) -> OnnxModel:
        proto = self._parse(data)
        check_self_contained(proto, "the stored ONNX model")
        session = self._session(data)
        classes = _graph_classes(proto)
        if classes is None and isinstance(meta.get("classes"), list):
            classes = list(meta["classes"])
        return OnnxModel(session, classes)

    def read_file(self, path: Path, *, trusted_types: Sequence[str] = ()) -> Any:
        return self._parse(path.read_bytes())
