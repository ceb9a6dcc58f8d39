"""The hostile catalogue of the scikit-learn flavor: objects that would run code, read or write files, start
processes or import modules if a stored model could reach them.

Each entry is refused at registration, naming the offending type and how to trust it on purpose, before
anything of the model runs (its witness file is not created, or not deleted). Written straight into an
artifact (the registry's hash rewritten to match), each is refused again when the bytes are loaded.
"""

from __future__ import annotations

import functools
import importlib
import operator
import os
import pickle
import runpy
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.ctypeslib
import numpy.testing._private.utils as numpy_testing_utils
import pandas as pd
import pytest
import scipy.io
import sklearn.datasets
import sklearn.utils._testing as sklearn_testing
import skops.io as sio
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sqlalchemy import update

import shipyard
from shipyard.errors import UntrustedArtifact, UntrustedTypes
from shipyard.registry import ArtifactStore, MetadataStore, sha256_hex
from shipyard.registry.tables import model_versions


@dataclass(frozen=True)
class Witness:
    """A file whose state shows whether the hostile code ran: ``created`` must stay absent, else must stay."""

    path: Path
    created: bool = True

    def untouched(self) -> bool:
        return not self.path.exists() if self.created else self.path.exists()


@dataclass(frozen=True)
class Hostile:
    """One catalogue entry: what kind of harm, the model holding it, the data register gets, and the name."""

    kind: str
    build: Callable[[Path], tuple[Any, pd.DataFrame, Witness | None]]
    type_name: str


class _OpensOnUnpickle:
    """A pickle payload: unpickling it calls ``open(path, "w")``, creating the witness file."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def _payload_pickle(tmp: Path) -> tuple[Path, Witness]:
    source = tmp / "payload.pkl"
    witness = Witness(tmp / "unpickled")
    source.write_bytes(pickle.dumps(_OpensOnUnpickle(witness.path)))
    return source, witness


def _fitted(*steps: tuple[str, Any], regressor: bool = False) -> Pipeline:
    """A pipeline fitted with harmless identity steps, whose named steps are then swapped for ``steps``.

    Fitting the hostile pipeline itself would run it in the test; swapping after fitting gives a fitted model
    that runs each hostile step the first time it is called (a FunctionTransformer keeps no fitted state).
    """
    final = DummyRegressor() if regressor else DummyClassifier()
    pipe = Pipeline([*((name, FunctionTransformer()) for name, _ in steps), ("model", final)])
    pipe.fit(np.array([[0.0], [1.0]]), [0, 1])
    return pipe.set_params(**dict(steps))


def _on_text(func: Any, text: str, witness: Witness | None, **kw_args: Any) -> tuple[Any, pd.DataFrame, Witness | None]:
    """``func`` called with the one string of the rows it gets (squeezed out of a one-cell frame)."""
    pipe = _fitted(("squeeze", FunctionTransformer(np.squeeze)), ("evil", FunctionTransformer(func, kw_args=kw_args)))
    return pipe, pd.DataFrame({"payload": [text]}), witness


def _code_writing(path: Path) -> str:
    return f"open({str(path)!r}, 'w').close()"


def _existing_file(tmp: Path) -> Witness:
    path = tmp / "keep.txt"
    path.write_text("keep")
    return Witness(path, created=False)


def _existing_folder(tmp: Path) -> Witness:
    path = tmp / "keep-folder"
    path.mkdir()
    return Witness(path, created=False)


def _module_writing(tmp: Path) -> tuple[str, Witness]:
    witness = Witness(tmp / "imported")
    name = f"hostile_module_{tmp.name.replace('-', '_')}"
    (tmp / f"{name}.py").write_text(_code_writing(witness.path) + "\n")
    return name, witness


class EvilStep(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """A custom transformer: its code runs when it is serialised (``__getstate__``) and when it transforms."""

    def __init__(self, witness: str = "") -> None:
        self.witness = witness

    def fit(self, X: Any, y: Any = None) -> EvilStep:
        return self

    def transform(self, X: Any) -> Any:
        Path(self.witness).touch()
        return X

    def __getstate__(self) -> dict[str, Any]:
        Path(self.witness).touch()
        return dict(self.__dict__)


def _custom_class(tmp: Path) -> tuple[Any, pd.DataFrame, Witness | None]:
    witness = Witness(tmp / "custom")
    pipe = Pipeline([("evil", EvilStep(str(witness.path))), ("model", DummyClassifier())])
    pipe.fit(np.array([[0.0], [1.0]]), [0, 1])
    witness.path.unlink()  # fitting ran transform: the witness counts from here
    return pipe, pd.DataFrame({"x": [1.0]}), witness


def _inverse_of_target(tmp: Path) -> tuple[Any, pd.DataFrame, Witness | None]:
    """TransformedTargetRegressor calls the inverse function on every prediction; it is put in the fitted
    transformer directly, where no constructor parameter shows it (only the audit of the bytes sees it)."""
    witness = Witness(tmp / "inverse.bin")
    model = TransformedTargetRegressor(regressor=DummyRegressor(), check_inverse=False)
    model.fit(np.array([[0.0], [1.0]]), [0.0, 1.0])
    model.transformer_.inverse_func = operator.methodcaller("tofile", str(witness.path))
    return model, pd.DataFrame({"x": [1.0]}), witness


def _column_selector(tmp: Path) -> tuple[Any, pd.DataFrame, Witness | None]:
    model = ColumnTransformer([("pass", "passthrough", os.system)])
    return model, pd.DataFrame({"x": [1.0]}), None


def _writes_array(func: Any, witness_name: str) -> Callable[[Path], tuple[Any, pd.DataFrame, Witness | None]]:
    def build(tmp: Path) -> tuple[Any, pd.DataFrame, Witness | None]:
        witness = Witness(tmp / witness_name)
        pipe = _fitted(("evil", FunctionTransformer(func(str(witness.path)))))
        return pipe, pd.DataFrame({"x": [1.0]}), witness

    return build


CATALOGUE: dict[str, Hostile] = {
    # executes strings
    "numpy runstring": Hostile(
        "executes strings",
        lambda t: _on_text(numpy_testing_utils.runstring, _code_writing(t / "ran"), Witness(t / "ran"), dict={}),
        "numpy.testing._private.utils.runstring",
    ),
    "exec": Hostile(
        "executes strings", lambda t: _on_text(exec, _code_writing(t / "ran"), Witness(t / "ran")), "builtins.exec"
    ),
    "eval": Hostile("executes strings", lambda t: _on_text(eval, "__import__('os')", None), "builtins.eval"),
    "compile": Hostile(
        "executes strings", lambda t: _on_text(compile, "1", None, filename="x", mode="eval"), "builtins.compile"
    ),
    "sklearn script runner": Hostile(
        "executes strings (in a new process)",
        lambda t: _on_text(
            sklearn_testing.assert_run_python_script_without_output, _code_writing(t / "ran"), Witness(t / "ran")
        ),
        "sklearn.utils._testing.assert_run_python_script_without_output",
    ),
    # loads pickles
    "numpy.load allow_pickle": Hostile(
        "loads pickles",
        lambda t: _on_text(np.load, str(_payload_pickle(t)[0]), Witness(t / "unpickled"), allow_pickle=True),
        "numpy.load",
    ),
    "joblib.load": Hostile(
        "loads pickles",
        lambda t: _on_text(joblib.load, str(_payload_pickle(t)[0]), Witness(t / "unpickled")),
        "joblib.numpy_pickle.load",
    ),
    "pickle.loads": Hostile("loads pickles", lambda t: _on_text(pickle.loads, "x", None), "_pickle.loads"),
    # writes files
    "numpy.save": Hostile(
        "writes files",
        lambda t: _on_text(np.save, str(t / "saved.npy"), Witness(t / "saved.npy"), arr=[1]),
        "numpy.save",
    ),
    "numpy.savetxt": Hostile(
        "writes files",
        lambda t: _on_text(np.savetxt, str(t / "saved.txt"), Witness(t / "saved.txt"), X=[[1]]),
        "numpy.savetxt",
    ),
    "numpy.memmap w+": Hostile(
        "writes files",
        lambda t: _on_text(np.memmap, str(t / "mapped"), Witness(t / "mapped"), mode="w+", shape=(1,)),
        "numpy.memmap",
    ),
    "ndarray.tofile via methodcaller": Hostile(
        "writes files",
        _writes_array(lambda p: operator.methodcaller("tofile", p), "tofile.bin"),
        "operator.methodcaller",
    ),
    "scipy.io.savemat": Hostile(
        "writes files",
        lambda t: _on_text(scipy.io.savemat, str(t / "saved.mat"), Witness(t / "saved.mat"), mdict={"a": 1}),
        "scipy.io.matlab._mio.savemat",
    ),
    "joblib.dump": Hostile(
        "writes files",
        lambda t: _on_text(joblib.dump, "value", Witness(t / "dumped"), filename=str(t / "dumped")),
        "joblib.numpy_pickle.dump",
    ),
    "sklearn dump_svmlight_file": Hostile(
        "writes files",
        lambda t: _on_text(sklearn.datasets.dump_svmlight_file, "x", None, y=[0], f="x"),
        "sklearn.datasets._svmlight_format_io.dump_svmlight_file",
    ),
    # reads files (their content would come back as predictions)
    "numpy.loadtxt": Hostile("reads files", lambda t: _on_text(np.loadtxt, "/etc/hostname", None), "numpy.loadtxt"),
    "numpy.fromfile": Hostile("reads files", lambda t: _on_text(np.fromfile, "/etc/hostname", None), "numpy.fromfile"),
    "open": Hostile("reads files", lambda t: _on_text(open, "/etc/hostname", None), "io.open"),
    # deletes files
    "os.remove": Hostile(
        "deletes files", lambda t: _on_text(os.remove, str(t / "keep.txt"), _existing_file(t)), "posix.remove"
    ),
    "shutil.rmtree": Hostile(
        "deletes files",
        lambda t: _on_text(shutil.rmtree, str(t / "keep-folder"), _existing_folder(t)),
        "shutil.rmtree",
    ),
    "sklearn clear_data_home": Hostile(
        "deletes files",
        lambda t: _on_text(sklearn.datasets.clear_data_home, str(t / "keep-folder"), _existing_folder(t)),
        "sklearn.datasets._base.clear_data_home",
    ),
    # spawns processes
    "os.system": Hostile(
        "spawns processes", lambda t: _on_text(os.system, f"touch {t / 'ran'}", Witness(t / "ran")), "posix.system"
    ),
    "subprocess.getoutput": Hostile(
        "spawns processes",
        lambda t: _on_text(subprocess.getoutput, f"touch {t / 'ran'}", Witness(t / "ran")),
        "subprocess.getoutput",
    ),
    "subprocess.run shell": Hostile(
        "spawns processes",
        lambda t: _on_text(subprocess.run, f"touch {t / 'ran'}", Witness(t / "ran"), shell=True),
        "subprocess.run",
    ),
    "os.popen": Hostile("spawns processes", lambda t: _on_text(os.popen, "true", None), "os.popen"),
    # imports modules and loads libraries
    "importlib.import_module": Hostile(
        "imports modules",
        lambda t: _on_text(importlib.import_module, *_module_writing(t)),
        "importlib.import_module",
    ),
    "__import__": Hostile(
        "imports modules", lambda t: _on_text(__import__, *_module_writing(t)), "builtins.__import__"
    ),
    "runpy.run_path": Hostile(
        "imports modules",
        lambda t: _on_text(runpy.run_path, str(t / f"{_module_writing(t)[0]}.py"), Witness(t / "imported")),
        "runpy.run_path",
    ),
    "numpy.ctypeslib.load_library": Hostile(
        "loads native code",
        lambda t: _on_text(numpy.ctypeslib.load_library, "libc", None, loader_path="/"),
        "numpy.ctypeslib.load_library",
    ),
    # gadgets and other places a function can hide
    "getattr": Hostile("reaches any attribute", lambda t: _on_text(getattr, "x", None, name="y"), "builtins.getattr"),
    "partial wrapping os.system": Hostile(
        "spawns processes (inside a partial)",
        lambda t: _on_text(functools.partial(os.system, "true"), "x", None),
        "posix.system",
    ),
    "reviewed function, hostile kw_args": Hostile(
        "hides a function in kw_args",
        lambda t: _on_text(np.clip, "x", None, a_min=os.system, a_max=None),
        "posix.system",
    ),
    "inverse_func of FunctionTransformer": Hostile(
        "hides a function in inverse_func",
        lambda t: (FunctionTransformer(np.log1p, inverse_func=shutil.rmtree), pd.DataFrame({"x": [1.0]}), None),
        "shutil.rmtree",
    ),
    "inverse_func inside a fitted TransformedTargetRegressor": Hostile(
        "writes files (from a fitted attribute)", _inverse_of_target, "operator.methodcaller"
    ),
    "ColumnTransformer column callable": Hostile("spawns processes", _column_selector, "posix.system"),
    "custom estimator class": Hostile("runs its own code", _custom_class, "EvilStep"),
}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[shipyard.ModelService]:
    """One SQLite registry for the module: each test registers under its own name."""
    home = tmp_path_factory.mktemp("hostile-registry")
    service = shipyard.ModelService(MetadataStore(f"sqlite:///{home}/r.db"), ArtifactStore(str(home / "a")))
    yield service
    service.store.close()


def _name(entry: str) -> str:
    return "h-" + "".join(c if c.isalnum() else "-" for c in entry.lower())[:50].strip("-")


@pytest.mark.parametrize("entry", CATALOGUE, ids=list(CATALOGUE))
def test_register_refuses_hostile_entry_before_it_runs(
    entry: str, registry: shipyard.ModelService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))  # so the import entries would find their module
    hostile = CATALOGUE[entry]
    model, X, witness = hostile.build(tmp_path)
    with pytest.raises(UntrustedTypes) as caught:
        registry.register(model, _name(entry), X=X)
    message = str(caught.value)
    assert hostile.type_name in message
    assert "trusted_types=" in message and "--trust-type" in message
    assert any(hostile.type_name in name for name in caught.value.types)
    if witness is not None:
        assert witness.untouched(), f"{entry} ran during registration"
    assert not _exists(registry, _name(entry))  # refused before anything was written


def _exists(service: shipyard.ModelService, name: str) -> bool:
    return any(m.name == name for m in service.list_models())


@pytest.fixture(scope="module")
def registered(registry: shipyard.ModelService) -> shipyard.ModelVersion:
    """A legitimate version whose artifact each tamper test overwrites."""
    return registry.register(DummyClassifier().fit([[0.0], [1.0]], [0, 1]), "tampered")


def _tamper(service: shipyard.ModelService, mv: shipyard.ModelVersion, data: bytes) -> None:
    """Overwrite the artifact and rewrite the registry's hash to match, as an attacker with both would."""
    Path(mv.artifact_uri.removeprefix("file://")).write_bytes(data)
    digest = sha256_hex(data)
    with service.store._engine.begin() as conn:
        conn.execute(update(model_versions).where(model_versions.c.id == _row_id(service, mv)).values(sha256=digest))
    from shipyard.registry.artifacts import seal

    with service.store._engine.begin() as conn:
        conn.execute(
            update(model_versions).where(model_versions.c.sha256 == digest).values(seal=seal(mv.flavor, digest))
        )


def _row_id(service: shipyard.ModelService, mv: shipyard.ModelVersion) -> int:
    from sqlalchemy import select

    from shipyard.registry.tables import models

    with service.store._engine.connect() as conn:
        model_id = conn.execute(select(models.c.id).where(models.c.name == mv.name)).scalar_one()
        return int(
            conn.execute(
                select(model_versions.c.id).where(
                    (model_versions.c.model_id == model_id) & (model_versions.c.version == mv.version)
                )
            ).scalar_one()
        )


@pytest.mark.parametrize("entry", CATALOGUE, ids=list(CATALOGUE))
def test_crafted_artifact_with_hostile_entry_is_refused_at_load(
    entry: str,
    registry: shipyard.ModelService,
    registered: shipyard.ModelVersion,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    hostile = CATALOGUE[entry]
    model, _, witness = hostile.build(tmp_path)
    data = sio.dumps(model)
    if witness is not None and witness.created:
        witness.path.unlink(missing_ok=True)  # skops' serialiser runs a custom __getstate__: count from here
    _tamper(registry, registered, data)
    with pytest.raises(UntrustedTypes) as caught:
        registry.load(registered.ref)
    assert hostile.type_name in str(caught.value)
    if witness is not None:
        assert witness.untouched(), f"{entry} ran while loading"


def _crafted_tree(field: str, value: int) -> Any:
    from sklearn.tree import DecisionTreeClassifier

    model = DecisionTreeClassifier(random_state=0).fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    state = model.tree_.__getstate__()
    nodes = state["nodes"].copy()
    nodes[field][0] = value
    state["nodes"] = nodes
    tree = type(model.tree_)(model.tree_.n_features, np.asarray(model.tree_.n_classes), model.tree_.n_outputs)
    tree.__setstate__(state)
    model.tree_ = tree
    return model


def _crafted_predictor(field: str, value: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    X = np.arange(40.0).reshape(20, 2)
    model = HistGradientBoostingRegressor(max_iter=2, min_samples_leaf=2).fit(X, X[:, 0] > 20)
    nodes = model._predictors[0][0].nodes
    nodes[field][0] = value
    return model


CRAFTED_TREES: dict[str, tuple[Callable[[], Any], str]] = {
    "Tree child far out": (lambda: _crafted_tree("left_child", 10**9), "child indices point outside"),
    "Tree child pointing back to the root": (lambda: _crafted_tree("right_child", 0), "back up it"),
    "Tree split on a missing column": (lambda: _crafted_tree("feature", 7), "split features"),
    "TreePredictor child far out": (lambda: _crafted_predictor("left", 10**6), "child indices point outside"),
    "TreePredictor split on a missing column": (lambda: _crafted_predictor("feature_idx", 9), "split features"),
}


@pytest.mark.parametrize("case", CRAFTED_TREES, ids=list(CRAFTED_TREES))
def test_crafted_tree_nodes_are_refused_at_load(
    case: str, registry: shipyard.ModelService, registered: shipyard.ModelVersion
) -> None:
    """Tree node storage is trusted (every tree model needs it), so its indices are checked on load instead."""
    build, message = CRAFTED_TREES[case]
    _tamper(registry, registered, sio.dumps(build()))
    with pytest.raises(UntrustedArtifact, match=message):
        registry.load(registered.ref)


def test_cli_refuses_a_hostile_skops_file_in_one_line_and_trusts_the_exact_name_on_purpose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from shipyard.cli.app import run

    model, X, witness = CATALOGUE["numpy runstring"].build(tmp_path)
    path = tmp_path / "evil.skops"
    path.write_bytes(sio.dumps(model))
    example = tmp_path / "example.csv"
    X.to_csv(example, index=False)  # profiling these rows would run the string they hold
    name = "numpy.testing._private.utils.runstring"
    for key in ("SHIPYARD_REGISTRY_URL", "SHIPYARD_ARTIFACTS_URL", "SHIPYARD_TRUSTED_TYPES", "SHIPYARD_DEBUG"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SHIPYARD_USER", "tester")
    command = ["models", "register", str(path), "--name", "evil", "-e", str(example)]

    with pytest.raises(SystemExit) as refused:
        run(command)
    assert refused.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert name in line and f"--trust-type {name}" in line
    assert witness is not None and witness.untouched()

    with pytest.raises(SystemExit) as trusted:
        run([*command, "--trust-type", name])
    assert trusted.value.code == 0, capsys.readouterr().err
    assert "Registered evil:1 (sklearn" in capsys.readouterr().out


def _file_reading_pipeline(mode: str) -> Pipeline:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    pipe = Pipeline([("text", TfidfVectorizer()), ("clf", LogisticRegression())])
    pipe.fit(["good day", "bad day", "good night", "bad night"], [1, 0, 1, 0])
    return pipe.set_params(text__input=mode)  # a trusted class, told to open the paths it is given


@pytest.mark.parametrize("mode", ["filename", "file"])
def test_a_vectorizer_that_reads_files_is_refused_at_register_and_at_load(
    mode: str, registry: shipyard.ModelService, registered: shipyard.ModelVersion
) -> None:
    pipe = _file_reading_pipeline(mode)
    with pytest.raises(UntrustedArtifact, match=rf"TfidfVectorizer\(input='{mode}'\).*input='content'"):
        registry.register(pipe, f"reads-{mode}", X=pd.DataFrame({"text": ["/etc/hostname"]}))
    assert not _exists(registry, f"reads-{mode}")
    _tamper(registry, registered, sio.dumps(pipe))
    with pytest.raises(UntrustedArtifact, match=f"input='{mode}'"):
        registry.load(registered.ref)
