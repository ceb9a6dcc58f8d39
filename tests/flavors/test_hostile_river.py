"""Hostile River models: the catalogue of objects that would run code when loaded, each refused at register
before the model is called, and again at load when the stored bytes are changed behind the registry's back.

Every entry would leave a mark on disk if it ran (a file created, a folder or file deleted, a module imported);
each test checks the mark is absent. Legitimate River pipelines still register, load and predict.
"""

from __future__ import annotations

import functools
import importlib
import math
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest

import shipyard
from shipyard.errors import ModelNotFound, UntrustedArtifact, UntrustedTypes
from shipyard.flavors.river import MAGIC
from shipyard.registry import sha256_hex

X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "b": [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]})
Y = pd.Series([False, True, False, True, False, True])


@pytest.fixture
def service(home: Path) -> Iterator[shipyard.ModelService]:
    """A SQLite registry: what a model may contain does not depend on the registry's database."""
    svc = shipyard.connect()
    yield svc
    svc.store.close()


class Reducer:
    """An object that pickles as ``call(*args)``: what an attacker hides inside a model."""

    def __init__(self, call: Callable[..., Any], *args: Any) -> None:
        self.call = call
        self.args = args

    def __call__(self, x: dict[str, float]) -> dict[str, float]:
        return x

    def __reduce__(self) -> tuple[Any, ...]:
        return self.call, self.args


def featurize(x: Any) -> Any:
    """A user's own feature function (rows and frames): legitimate, but only stored when trusted by its name."""
    return x * 2.0 if isinstance(x, pd.DataFrame) else {key: value * 2.0 for key, value in x.items()}


def marks(tmp: Path) -> Path:
    """The folder an entry would change if its payload ran."""
    folder = tmp / "marks"
    folder.mkdir(exist_ok=True)
    return folder


@dataclass(frozen=True)
class Entry:
    """One hostile payload: the callable its ``__reduce__`` names, its arguments, and the mark it would leave."""

    name: str
    call: Callable[..., Any]
    args: Callable[[Path], tuple[Any, ...]]
    ran: Callable[[Path], bool]

    @property
    def global_name(self) -> str:
        return f"{self.call.__module__}.{self.call.__qualname__}"


def _created(path: str) -> Callable[[Path], bool]:
    return lambda tmp: (marks(tmp) / path).exists()


def _nested_pickle(tmp: Path) -> tuple[Any, ...]:
    return (pickle.dumps(Reducer(os.system, f"touch {marks(tmp) / 'nested'}")),)


def _npy_with_pickle(tmp: Path) -> tuple[Any, ...]:
    path = marks(tmp) / "payload.npy"
    payload = np.empty(1, dtype=object)
    payload[0] = Reducer(os.system, f"touch {marks(tmp) / 'npy'}")
    np.save(path, payload, allow_pickle=True)
    return (str(path), None, True)


def _module_to_import(tmp: Path) -> tuple[Any, ...]:
    (marks(tmp) / "shipyard_hostile_mod.py").write_text(f"open({str(marks(tmp) / 'imported')!r}, 'w').close()\n")
    return ("shipyard_hostile_mod",)


def _doomed_folder(tmp: Path) -> tuple[Any, ...]:
    (marks(tmp) / "doomed").mkdir(exist_ok=True)
    return (str(marks(tmp) / "doomed"),)


def _doomed_file(tmp: Path) -> tuple[Any, ...]:
    (marks(tmp) / "doomed.txt").write_text("keep me")
    return (str(marks(tmp) / "doomed.txt"),)


CATALOGUE = [
    Entry("os.system", os.system, lambda t: (f"touch {marks(t) / 'system'}",), _created("system")),
    Entry("subprocess.Popen", subprocess.Popen, lambda t: (["touch", str(marks(t) / "popen")],), _created("popen")),
    Entry("eval", eval, lambda t: (f"open({str(marks(t) / 'eval')!r}, 'w')",), _created("eval")),
    Entry("exec", exec, lambda t: (f"open({str(marks(t) / 'exec')!r}, 'w').close()",), _created("exec")),
    Entry("open", open, lambda t: (str(marks(t) / "open"), "w"), _created("open")),
    Entry("import_module", importlib.import_module, _module_to_import, _created("imported")),
    Entry("nested pickle.loads", pickle.loads, _nested_pickle, _created("nested")),
    Entry("numpy.load", np.load, _npy_with_pickle, _created("npy")),
    Entry("numpy.save", np.save, lambda t: (str(marks(t) / "saved.npy"), np.zeros(1)), _created("saved.npy")),
    Entry("shutil.rmtree", shutil.rmtree, _doomed_folder, lambda t: not (marks(t) / "doomed").exists()),
    Entry("os.remove", os.remove, _doomed_file, lambda t: not (marks(t) / "doomed.txt").exists()),
]


@pytest.fixture
def importable_marks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The marks folder on ``sys.path`` (for the import entry); the module is never left imported."""
    monkeypatch.syspath_prepend(str(marks(tmp_path)))
    yield tmp_path
    sys.modules.pop("shipyard_hostile_mod", None)


def _pipeline(step: Any) -> Any:
    from river import compose, linear_model, preprocessing

    return compose.FuncTransformer(step) | preprocessing.StandardScaler() | linear_model.LogisticRegression()


def _artifact_path(mv: shipyard.ModelVersion) -> Path:
    return Path(urlparse(mv.artifact_uri).path)


def _swap_artifact(service: shipyard.ModelService, mv: shipyard.ModelVersion, data: bytes) -> None:
    """Replace a stored artifact and fix its recorded hash, as an attacker with write access would."""
    from sqlalchemy import update

    from shipyard.registry.artifacts import seal
    from shipyard.registry.tables import model_versions

    _artifact_path(mv).write_bytes(data)
    digest = sha256_hex(data)
    with service.store._engine.begin() as conn:  # the hash and the seal that binds the flavor to it
        conn.execute(update(model_versions).values(sha256=digest, seal=seal(mv.flavor, digest)))


# ---------------------------------------------------------------------- register: the model object
@pytest.mark.parametrize("entry", CATALOGUE, ids=[e.name for e in CATALOGUE])
def test_a_hostile_object_in_a_pipeline_is_refused_at_register_naming_its_type(
    service: shipyard.ModelService, importable_marks: Path, entry: Entry
) -> None:
    model = _pipeline(Reducer(entry.call, *entry.args(importable_marks)))
    with pytest.raises(UntrustedTypes, match=r"Reducer.*trusted_types") as refused:
        service.register(model, "hostile", X=X, y=Y)
    assert f"{Reducer.__module__}.Reducer" in refused.value.types
    assert ".func)" in str(refused.value)  # where it sits: the FuncTransformer's func
    assert not entry.ran(importable_marks)
    with pytest.raises(ModelNotFound):
        service.get_model("hostile")


@pytest.mark.parametrize("entry", CATALOGUE, ids=[e.name for e in CATALOGUE])
def test_trusting_the_wrapper_class_does_not_let_its_payload_through(
    service: shipyard.ModelService, importable_marks: Path, entry: Entry
) -> None:
    """The bytes are audited too: what the object pickles as is refused by its own exact name."""
    model = _pipeline(Reducer(entry.call, *entry.args(importable_marks)))
    wrapper = f"{Reducer.__module__}.Reducer"
    with pytest.raises(UntrustedTypes, match="trusted_types") as refused:
        service.register(model, "hostile", X=X, y=Y, trusted_types=[wrapper])
    assert refused.value.types == [entry.global_name]
    assert not entry.ran(importable_marks)
    with pytest.raises(ModelNotFound):
        service.get_model("hostile")


SPY_CALLS: list[Any] = []


def spy(x: dict[str, float]) -> dict[str, float]:
    """Records every call: proves the refused model was never called."""
    SPY_CALLS.append(x)
    return x


def _local_function() -> Callable[[Any], Any]:
    def inner(x: Any) -> Any:
        return x

    return inner


@pytest.mark.parametrize(
    ("func", "named"),
    [
        (os.system, "posix.system"),
        (eval, "builtins.eval"),
        (exec, "builtins.exec"),
        (open, "io.open"),
        (importlib.import_module, "importlib.import_module"),
        (pickle.loads, "_pickle.loads"),
        (np.load, "numpy.load"),
        (shutil.rmtree, "shutil.rmtree"),
        (os.remove, "posix.remove"),
        (subprocess.Popen, "subprocess.Popen"),
        (__import__, "builtins.__import__"),
        (pd.read_pickle, "pandas.read_pickle"),
        (np.testing._private.utils.runstring, "numpy.testing._private.utils.runstring"),
        (shutil.copyfile, "shutil.copyfile"),
        (functools.partial(os.system, "true"), "posix.system"),
        (str.format, "builtins.str.format"),
        (spy, f"{__name__}.spy"),
    ],
    ids=lambda value: getattr(value, "__name__", None) or str(value)[:20],
)
def test_a_func_transformer_holding_a_function_outside_the_reviewed_list_is_refused(
    service: shipyard.ModelService, func: Any, named: str
) -> None:
    SPY_CALLS.clear()
    with pytest.raises(UntrustedTypes, match=r"trusted_types=\[\.\.\.\]") as refused:
        service.register(_pipeline(func), "hostile", X=X, y=Y)
    assert named in refused.value.types
    assert ".func)" in str(refused.value)
    assert SPY_CALLS == []  # refused before the model was called at all


@pytest.mark.parametrize("func", [lambda x: x, _local_function()], ids=["lambda", "local function"])
def test_lambdas_and_local_functions_are_refused_with_how_to_fix(service: shipyard.ModelService, func: Any) -> None:
    with pytest.raises(UntrustedArtifact, match="define it at module level") as refused:
        service.register(_pipeline(func), "hostile", X=X, y=Y)
    assert ".func" in str(refused.value)
    with pytest.raises(ModelNotFound):
        service.get_model("hostile")


def test_a_function_trusted_by_its_exact_name_registers_and_needs_the_same_trust_to_load(
    service: shipyard.ModelService,
) -> None:
    name = f"{__name__}.featurize"
    with pytest.raises(UntrustedTypes, match=name.replace(".", r"\.")):
        service.register(_pipeline(featurize), "own", X=X, y=Y)
    model = _pipeline(featurize)
    for row, label in zip(X.to_dict("records"), Y, strict=True):
        model.learn_one(row, label)
    mv = service.register(model, "own", X=X, y=Y, trusted_types=[name])
    with pytest.raises(UntrustedTypes, match=name.replace(".", r"\.")):
        service.load(mv.ref)
    loaded = service.load(mv.ref, trusted_types=[name])
    expected = [model.predict_one(row) for row in X.to_dict("records")]
    assert loaded.predict(X).tolist() == expected


def test_a_prefix_is_not_trust(service: shipyard.ModelService) -> None:
    """``river`` itself holds functions that read files: being from River is not enough."""
    from river import stream

    with pytest.raises(UntrustedTypes) as refused:
        service.register(_pipeline(stream.iter_csv), "hostile", X=X, y=Y)
    assert refused.value.types == ["river.stream.iter_csv.iter_csv"]
    with pytest.raises(UntrustedTypes, match=r"posix\.system"):
        service.register(_pipeline(os.system), "hostile", trusted_types=["posix", "posix.*", "os.system"])


# ---------------------------------------------------------------------- load: bytes changed on disk
def _legit(service: shipyard.ModelService) -> shipyard.ModelVersion:
    from river import linear_model, preprocessing

    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for row, label in zip(X.to_dict("records"), Y, strict=True):
        model.learn_one(row, label)
    return service.register(model, "fraud", X=X, y=Y)


def test_a_tampered_artifact_naming_os_system_is_refused_at_load_without_running(
    service: shipyard.ModelService, tmp_path: Path
) -> None:
    mv = _legit(service)
    mark = tmp_path / "tampered"
    _swap_artifact(service, mv, MAGIC + f"cos\nsystem\n(S'touch {mark}'\ntR.".encode())
    with pytest.raises(UntrustedTypes, match=r"os\.system.*trusted_types") as refused:
        service.load("fraud:1")
    assert refused.value.types == ["os.system"]
    assert not mark.exists()


@pytest.mark.parametrize("entry", CATALOGUE, ids=[e.name for e in CATALOGUE])
def test_every_catalogue_payload_written_into_an_artifact_is_refused_at_load(
    service: shipyard.ModelService, importable_marks: Path, entry: Entry
) -> None:
    mv = _legit(service)
    payload = pickle.dumps(Reducer(entry.call, *entry.args(importable_marks)), protocol=5)
    _swap_artifact(service, mv, MAGIC + payload)
    with pytest.raises(UntrustedTypes, match="trusted_types") as refused:
        service.load("fraud:1")
    assert refused.value.types == [entry.global_name]
    assert not entry.ran(importable_marks)


def _short(text: str) -> bytes:
    return b"\x8c" + bytes([len(text)]) + text.encode()


HAND_MADE = {
    # pickles rebuild bound methods with getattr: any other attribute lookup is refused by its exact name
    "getattr": (
        b"cbuiltins\ngetattr\n(criver.linear_model.lin_reg\nLinearRegression\n(tRS'__init__'\ntR.",
        "river.linear_model.lin_reg.LinearRegression.__init__",
    ),
    "stack global": (b"\x80\x04" + _short("os") + _short("system") + b"\x93" + _short("true") + b"\x85R.", "os.system"),
    "inst": (b"(S'true'\nios\nsystem\n.", "os.system"),
    "python 2 name": (b"c__builtin__\neval\n(S'1'\ntR.", "__builtin__.eval"),
    # a reviewed name split differently is not the reviewed name
    "other split": (
        b"\x80\x04" + _short("numpy") + _short("random._pickle.__randomstate_ctor") + b"\x93)R.",
        "numpy.random._pickle.__randomstate_ctor",
    ),
}


@pytest.mark.parametrize("kind", list(HAND_MADE))
def test_hand_made_bytes_are_refused_by_the_name_they_reach(service: shipyard.ModelService, kind: str) -> None:
    payload, named = HAND_MADE[kind]
    mv = _legit(service)
    _swap_artifact(service, mv, MAGIC + payload)
    with pytest.raises(UntrustedTypes, match="trusted_types") as refused:
        service.load("fraud:1")
    assert named in refused.value.types


def test_bytes_that_change_a_shared_class_are_refused_and_the_class_put_back(service: shipyard.ModelService) -> None:
    """A pickle can set attributes on a class it names (BUILD with slot state): that would change every model of
    the class in the serving process. It is refused and the class left exactly as it was."""
    from river.linear_model import LogisticRegression

    original = LogisticRegression.predict_proba_one
    mv = _legit(service)
    before = service.load("fraud:1").predict(X).tolist()
    patch = b"criver.linear_model.log_reg\nLogisticRegression\n(N}S'predict_proba_one'\ncbuiltins\nabs\nstb."
    _swap_artifact(service, mv, MAGIC + patch)
    with pytest.raises(UntrustedArtifact, match=r"shared classes.*LogisticRegression"):
        service.load("fraud:1")
    assert LogisticRegression.predict_proba_one is original
    again = _legit(service)
    assert service.load(again.ref).predict(X).tolist() == before


def test_damaged_bytes_are_refused_not_crashed(service: shipyard.ModelService) -> None:
    mv = _legit(service)
    _swap_artifact(service, mv, MAGIC + b"\x80\x05not a pickle")
    with pytest.raises(UntrustedArtifact, match="damaged"):
        service.load("fraud:1")


# ---------------------------------------------------------------------- legitimate models still work
def _legit_models() -> dict[str, Any]:
    from river import (
        compose,
        ensemble,
        feature_extraction,
        forest,
        linear_model,
        naive_bayes,
        optim,
        preprocessing,
        stats,
        tree,
    )

    return {
        "scaled logistic regression": preprocessing.StandardScaler() | linear_model.LogisticRegression(),
        "select, adam": compose.Select("a", "b")
        | preprocessing.MinMaxScaler()
        | linear_model.LogisticRegression(optimizer=optim.Adam()),
        "union and aggregates": (
            feature_extraction.PolynomialExtender() + feature_extraction.Agg(on="a", by="b", how=stats.Mean())
        )
        | linear_model.LogisticRegression(),
        "hoeffding tree": tree.HoeffdingTreeClassifier(grace_period=2),
        "gaussian naive bayes": naive_bayes.GaussianNB(),
        "adaptive random forest": forest.ARFClassifier(n_models=2, seed=1),
        "leveraging bagging": ensemble.LeveragingBaggingClassifier(linear_model.LogisticRegression(), n_models=2),
        "target transform": compose.TargetTransformRegressor(
            linear_model.LinearRegression(), func=math.log1p, inverse_func=math.expm1
        ),
    }


@pytest.mark.parametrize("kind", list(_legit_models()))
def test_legitimate_river_models_register_load_and_predict(service: shipyard.ModelService, kind: str) -> None:
    model = _legit_models()[kind]
    target = Y.astype(float) if kind == "target transform" else Y
    for row, label in zip(X.to_dict("records"), target, strict=True):
        model.learn_one(row, label)
    mv = service.register(model, "legit", X=X, y=target)
    loaded = service.load(mv.ref)
    expected = [model.predict_one(row) for row in X.to_dict("records")]
    assert loaded.predict(X).tolist() == expected


def test_the_trusted_types_setting_admits_an_exact_name_at_register_and_load(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``SHIPYARD_TRUSTED_TYPES`` (what servers and the CLI use) is the same exact-name trust as the argument."""
    monkeypatch.setenv("SHIPYARD_TRUSTED_TYPES", f"{__name__}.featurize")
    service = shipyard.connect()
    try:
        model = _pipeline(featurize)
        for row, label in zip(X.to_dict("records"), Y, strict=True):
            model.learn_one(row, label)
        mv = service.register(model, "own", X=X, y=Y)
        assert service.load(mv.ref).predict(X).tolist() == [model.predict_one(r) for r in X.to_dict("records")]
    finally:
        service.store.close()
