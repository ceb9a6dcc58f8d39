"""The hostile catalogue of the ONNX, XGBoost and LightGBM flavors.

ONNX: tensor data kept in another file (a path out of the artifact, an absolute path, a file beside it,
hidden in a subgraph) is refused at registration and again when crafted bytes are loaded; a graph that
onnxruntime cannot load (an operator from an unknown domain) is refused at registration. XGBoost, LightGBM
and ONNX: a pickle disguised with their file ending is refused without being unpickled, and a Python
callable given to the model (a custom objective) is never stored, so loading and predicting never call it.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from onnx import TensorProto, helper
from sqlalchemy import update

import shipyard
from shipyard.errors import FlavorMismatch, InvalidInput, UntrustedArtifact
from shipyard.registry import ArtifactStore, MetadataStore, sha256_hex
from shipyard.registry.artifacts import seal
from shipyard.registry.tables import model_versions


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[shipyard.ModelService]:
    """One SQLite registry for the module: each test registers under its own name."""
    home = tmp_path_factory.mktemp("hostile-onnx")
    service = shipyard.ModelService(MetadataStore(f"sqlite:///{home}/r.db"), ArtifactStore(str(home / "a")))
    yield service
    service.store.close()


def _graph_model(nodes: list[Any], initializers: list[Any], domains: tuple[str, ...] = ()) -> Any:
    """``y = x + w`` style graphs over one float input ``x`` of width 1."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
        initializer=initializers,
    )
    opsets = [helper.make_opsetid("", 17), *(helper.make_opsetid(d, 1) for d in domains)]
    return helper.make_model(graph, opset_imports=opsets)


def _external(tensor: Any, location: str) -> Any:
    tensor.ClearField("float_data")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "4")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def _add_model(location: str | None = None) -> Any:
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    if location is not None:
        _external(weight, location)
    return _graph_model([helper.make_node("Add", ["x", "w"], ["y"])], [weight])


def _subgraph_model(location: str) -> Any:
    """The external tensor sits in a Constant node of the ``then`` branch of an If."""
    branch_out = [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])]
    constant = helper.make_node(
        "Constant", [], ["b"], value=_external(helper.make_tensor("c", TensorProto.FLOAT, [1], [1.0]), location)
    )
    other = helper.make_node("Constant", [], ["b"], value=helper.make_tensor("d", TensorProto.FLOAT, [1], [2.0]))
    cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    nodes = [
        helper.make_node(
            "If",
            ["cond"],
            ["w"],
            then_branch=helper.make_graph([constant], "then", [], branch_out),
            else_branch=helper.make_graph([other], "else", [], branch_out),
        ),
        helper.make_node("Add", ["x", "w"], ["y"]),
    ]
    return _graph_model(nodes, [cond])


EXTERNAL: dict[str, Callable[[], Any]] = {
    "relative path out of the artifact": lambda: _add_model("../../etc/passwd"),
    "absolute path": lambda: _add_model("/etc/passwd"),
    "file beside the model": lambda: _add_model("weights.bin"),
    "inside a subgraph": lambda: _subgraph_model("../../../etc/hostname"),
}


def test_a_self_contained_onnx_graph_registers_and_predicts(registry: shipyard.ModelService) -> None:
    mv = registry.register(_add_model(), "onnx-ok")
    assert registry.load(mv.ref).predict(np.array([[1.0]], dtype=np.float32)).tolist() == [2.0]


@pytest.mark.parametrize("case", EXTERNAL, ids=list(EXTERNAL))
def test_onnx_with_external_data_is_refused_at_register(registry: shipyard.ModelService, case: str) -> None:
    model = EXTERNAL[case]()
    location = next(e.value for t in _all_external(model) for e in t.external_data if e.key == "location")
    with pytest.raises(UntrustedArtifact, match="outside the model file") as caught:
        registry.register(model, "onnx-external")
    assert repr(location) in str(caught.value)
    assert "save_as_external_data=False" in str(caught.value)
    assert all(m.name != "onnx-external" for m in registry.list_models())


def _all_external(model: Any) -> list[Any]:
    found = []
    for tensor in model.graph.initializer:
        found.append(tensor)
    for node in model.graph.node:
        for attribute in node.attribute:
            for graph in (attribute.g,) if attribute.HasField("g") else ():
                for inner in graph.node:
                    found.extend(a.t for a in inner.attribute if a.HasField("t"))
    return [t for t in found if t.data_location == TensorProto.EXTERNAL]


def test_onnx_file_with_external_data_is_refused_by_register_file(
    registry: shipyard.ModelService, tmp_path: Path
) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(_add_model("../../etc/passwd").SerializeToString())
    with pytest.raises(UntrustedArtifact, match=r"'\.\./\.\./etc/passwd'"):
        registry.register_file(path, "onnx-external-file")


def test_onnx_that_onnxruntime_cannot_load_is_refused_at_register(registry: shipyard.ModelService) -> None:
    model = _graph_model([helper.make_node("Evil", ["x"], ["y"], domain="com.attacker")], [], ("com.attacker",))
    with pytest.raises(InvalidInput, match="onnxruntime cannot load"):
        registry.register(model, "onnx-custom-op")
    assert all(m.name != "onnx-custom-op" for m in registry.list_models())


@pytest.mark.parametrize("case", EXTERNAL, ids=list(EXTERNAL))
def test_crafted_onnx_bytes_with_external_data_are_refused_at_load(registry: shipyard.ModelService, case: str) -> None:
    """Bytes written straight into the artifact, with the registry's hash and seal rewritten to match."""
    name = f"onnx-crafted-{list(EXTERNAL).index(case)}"
    mv = registry.register(_add_model(), name)
    data = EXTERNAL[case]().SerializeToString()
    Path(mv.artifact_uri.removeprefix("file://")).write_bytes(data)
    digest = sha256_hex(data)
    with registry.store._engine.begin() as conn:
        conn.execute(
            update(model_versions)
            .where(model_versions.c.sha256 == mv.sha256)
            .values(sha256=digest, seal=seal("onnx", digest))
        )
    with pytest.raises(UntrustedArtifact, match="outside the model file"):
        registry.load(mv.ref)


# ---------------------------------------------------------------------- every native-format flavor
class _OpensOnUnpickle:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


@pytest.mark.parametrize("suffix", [".ubj", ".lgb", ".onnx"])
def test_a_pickle_disguised_as_a_native_model_file_is_refused_unread(
    registry: shipyard.ModelService, tmp_path: Path, suffix: str
) -> None:
    witness = tmp_path / "unpickled"
    path = tmp_path / f"model{suffix}"
    path.write_bytes(pickle.dumps(_OpensOnUnpickle(witness)))
    with pytest.raises((FlavorMismatch, InvalidInput)):
        registry.register_file(path, "disguised")
    assert not witness.exists()


def _custom_objective(witness: Path) -> Callable[..., Any]:
    def objective(labels: Any, predt: Any) -> tuple[Any, Any]:
        witness.touch()
        return predt - labels, np.ones_like(predt)

    return objective


def _xgboost(objective: Callable[..., Any]) -> Any:
    from xgboost import XGBRegressor

    return XGBRegressor(n_estimators=2, max_depth=1, objective=objective)


def _lightgbm(objective: Callable[..., Any]) -> Any:
    from lightgbm import LGBMRegressor

    return LGBMRegressor(n_estimators=2, min_child_samples=1, verbose=-1, objective=objective)


@pytest.mark.parametrize("make", [_xgboost, _lightgbm], ids=["xgboost", "lightgbm"])
def test_a_python_objective_is_never_stored_nor_called_after_training(
    registry: shipyard.ModelService, tmp_path: Path, make: Callable[[Callable[..., Any]], Any]
) -> None:
    witness = tmp_path / "objective-called"
    X = pd.DataFrame({"a": np.arange(20.0)})
    model = make(_custom_objective(witness)).fit(X, np.arange(20.0) % 2)
    witness.unlink()  # training called it: the witness counts from here
    mv = registry.register(model, f"objective-{make.__name__.strip('_')}", X=X)
    registry.load(mv.ref).predict(X)
    assert not witness.exists()
