"""The registry contract: every backend (SQLite file, PostgreSQL) and every flavor passes the same checks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest

import shipyard
from shipyard.errors import (
    AliasNotFound,
    IntegrityError,
    InvalidInput,
    InvalidName,
    InvalidReference,
    ModelNotFound,
    NothingToRollBack,
    UntrustedArtifact,
    UntrustedTypes,
    VersionNotFound,
)


def _artifact_path(mv: shipyard.ModelVersion) -> Path:
    return Path(urlparse(mv.artifact_uri).path)


# ---------------------------------------------------------------------- round trip, every flavor
def test_round_trip_gives_identical_predictions(service: shipyard.ModelService, flavor_case: Any) -> None:
    case = flavor_case
    mv = service.register(case.model, "fraud", X=case.X, y=case.y, metrics={"auc": 0.9}, tags={"team": "risk"})
    assert (mv.name, mv.version, mv.flavor) == ("fraud", 1, case.flavor)
    assert mv.sha256 == __import__("hashlib").sha256(_artifact_path(mv).read_bytes()).hexdigest()
    assert mv.size_bytes == _artifact_path(mv).stat().st_size
    assert mv.metrics == {"auc": 0.9}
    assert mv.tags == {"team": "risk"}
    assert mv.creator == "tester"
    assert mv.signature is not None
    assert mv.input_example is not None
    assert len(mv.input_example) == 5
    assert "python" in mv.environment

    model = service.load("fraud:1")
    sample = case.X[:50]
    np.testing.assert_array_equal(model.predict(sample), case.predict(sample))
    if case.predict_proba is not None:
        assert model.has_predict_proba
        np.testing.assert_allclose(model.predict_proba(sample), case.predict_proba(sample), rtol=1e-5, atol=1e-6)


def test_flavor_refuses_an_artifact_written_by_another_flavor(service: shipyard.ModelService) -> None:
    from shipyard.errors import FlavorMismatch
    from shipyard.flavors import FlavorCatalog

    from_sklearn = service.register(__import__("sklearn.linear_model").linear_model.LinearRegression().fit(
        [[0.0], [1.0]], [0.0, 1.0]), "line")
    data = _artifact_path(from_sklearn).read_bytes()
    for name in ("onnx", "xgboost", "lightgbm", "river"):
        with pytest.raises(FlavorMismatch):
            FlavorCatalog().get(name).load(data, {})


# ---------------------------------------------------------------------- versions under concurrency
CONCURRENT_SCRIPT = textwrap.dedent(
    """
    import sys
    import shipyard
    from sklearn.linear_model import LinearRegression
    model = LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])
    service = shipyard.connect()
    print("ready", flush=True)
    sys.stdin.readline()  # start line: every process registers at the same moment
    for _ in range(int(sys.argv[1])):
        print(service.register(model, "fraud", X=[[0.0], [1.0]]).version, flush=True)
    """
)


@pytest.mark.slow
def test_eight_processes_registering_at_once_get_distinct_gap_free_versions(backend: str, home: Path) -> None:
    processes, per_process = 8, 3
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_SCRIPT, str(per_process)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        for _ in range(processes)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", proc.stderr
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        numbers: list[int] = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            numbers += [int(line) for line in out.split()]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert sorted(numbers) == list(range(1, processes * per_process + 1))
    versions = shipyard.list_versions("fraud")
    assert [v.version for v in versions] == list(range(processes * per_process, 0, -1))
    assert len({v.artifact_uri for v in versions}) == processes * per_process
    assert shipyard.get_model("fraud").latest_version == processes * per_process


# ---------------------------------------------------------------------- aliases and rollback
def _line(slope: float) -> Any:
    from sklearn.linear_model import LinearRegression

    return LinearRegression().fit([[0.0], [1.0]], [0.0, slope])


def test_alias_history_and_rollback(service: shipyard.ModelService) -> None:
    for slope in (1.0, 2.0, 3.0):
        service.register(_line(slope), "fraud", X=[[0.0], [1.0]])
    for version in (1, 2, 3):
        service.set_alias("fraud", "production", version)
    assert service.set_alias("fraud", "production", 3) is None  # no move, no history entry
    assert service.get_model("fraud").aliases == {"production": 3}
    assert service.load("fraud").version == 3  # a plain name follows production
    assert service.load("fraud@production").predict([[1.0]]).round(6).tolist() == [3.0]

    back = service.rollback("fraud")
    assert (back.from_version, back.to_version, back.action) == (3, 2, "rollback")
    assert service.resolve("fraud@production").version == 2
    assert service.rollback("fraud").to_version == 1  # a second rollback keeps going back
    with pytest.raises(NothingToRollBack):
        service.rollback("fraud")

    history = service.alias_history("fraud", "production")
    assert [(m.action, m.from_version, m.to_version) for m in history] == [
        ("set", None, 1),
        ("set", 1, 2),
        ("set", 2, 3),
        ("rollback", 3, 2),
        ("rollback", 2, 1),
    ]
    assert {m.actor for m in history} == {"tester"}
    assert all(m.at.tzinfo is not None for m in history)
    assert [v.aliases for v in service.list_versions("fraud")] == [(), (), ("production",)]


def test_deleted_alias_is_kept_in_history_and_can_be_rolled_back(service: shipyard.ModelService) -> None:
    service.register(_line(1.0), "fraud")
    service.register(_line(2.0), "fraud")
    service.set_alias("fraud", "staging", 2)
    service.delete_alias("fraud", "staging")
    with pytest.raises(AliasNotFound):
        service.load("fraud@staging")
    assert service.load("fraud").version == 2  # no production alias: the latest version
    assert service.rollback("fraud", "staging").to_version == 2
    assert service.resolve("fraud@staging").version == 2


# ---------------------------------------------------------------------- integrity and trust
def test_tampered_artifact_is_refused_naming_version_and_both_hashes(service: shipyard.ModelService) -> None:
    mv = service.register(_line(1.0), "fraud")
    path = _artifact_path(mv)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(IntegrityError) as caught:
        service.load("fraud:1")
    message = str(caught.value)
    actual = __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    assert "fraud:1" in message
    assert mv.sha256 in message
    assert actual in message
    assert caught.value.status == 403


def test_untrusted_skops_type_is_refused(service: shipyard.ModelService) -> None:
    from sklearn.preprocessing import FunctionTransformer

    dangerous = FunctionTransformer(func=os.system)  # the textbook malicious pipeline step
    with pytest.raises(UntrustedTypes, match=r"posix\.system"):
        service.register(dangerous, "evil")
    with pytest.raises(ModelNotFound):
        service.get_model("evil")  # nothing half-written

    # Someone who trusts the type explicitly can store it, but loading still needs the same trust.
    service.register(dangerous, "evil", trusted_types=["posix.system"])
    with pytest.raises(UntrustedTypes, match=r"posix\.system"):
        service.load("evil:1")
    assert service.load("evil:1", trusted_types=["posix.system"]).flavor == "sklearn"


def test_swapped_artifact_with_matching_hash_still_refuses_untrusted_types(service: shipyard.ModelService) -> None:
    """Defence in depth: even with the recorded hash rewritten, skops refuses types it was not told to trust."""
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer
    from sqlalchemy import update

    from shipyard.registry.artifacts import seal
    from shipyard.registry.tables import model_versions

    mv = service.register(_line(1.0), "fraud")
    evil = sio.dumps(FunctionTransformer(func=os.system))
    _artifact_path(mv).write_bytes(evil)
    digest = shipyard.registry.sha256_hex(evil)
    with service.store._engine.begin() as conn:  # the attacker rewrites the hash and the seal
        conn.execute(update(model_versions).values(sha256=digest, seal=seal("sklearn", digest)))
    with pytest.raises(UntrustedTypes, match=r"posix\.system"):
        service.load("fraud:1")


def test_pickle_files_are_refused_without_trust(service: shipyard.ModelService, tmp_path: Path) -> None:
    import joblib

    path = tmp_path / "model.joblib"
    joblib.dump(_line(2.0), path)
    with pytest.raises(UntrustedArtifact, match="trust"):
        service.register_file(path, "fraud")
    with pytest.raises(ModelNotFound):
        service.get_model("fraud")
    mv = service.register_file(path, "fraud", trust=True, example=[[0.0], [1.0]])
    assert mv.flavor == "sklearn"
    assert _artifact_path(mv).suffix == ".skops"
    assert service.load("fraud").predict([[1.0]]).round(6).tolist() == [2.0]


# ---------------------------------------------------------------------- names and lookups
@pytest.mark.parametrize("bad", ["../x", "", "x" * 300, "Fraud", "a/b", "-lead", "sp ace"])
def test_bad_names_are_refused_everywhere(service: shipyard.ModelService, bad: str) -> None:
    with pytest.raises(InvalidName):
        service.register(_line(1.0), bad)
    service.register(_line(1.0), "ok")
    with pytest.raises((InvalidName, InvalidReference)):
        service.set_alias("ok", bad, 1)
    with pytest.raises((InvalidName, InvalidReference)):
        service.load(bad)
    assert [m.name for m in service.list_models()] == ["ok"]


def test_unknown_model_version_and_alias_give_clear_errors(service: shipyard.ModelService) -> None:
    service.register(_line(1.0), "fraud")
    with pytest.raises(ModelNotFound, match="'nope' is not registered"):
        service.load("nope")
    with pytest.raises(VersionNotFound, match="no version 9; the latest version is 1"):
        service.load("fraud:9")
    with pytest.raises(AliasNotFound, match="no alias 'staging'"):
        service.load("fraud@staging")
    with pytest.raises(VersionNotFound):
        service.set_alias("fraud", "production", 7)
    with pytest.raises(ModelNotFound):
        service.set_alias("nope", "production", 1)
    with pytest.raises(InvalidReference, match="version number"):
        service.load("fraud:latest")
    for error in (ModelNotFound("x"), VersionNotFound("x", 1), AliasNotFound("x", "y")):
        assert error.status == 404


# ---------------------------------------------------------------------- atomic registration
def _install_failing_trigger(service: shipyard.ModelService) -> None:
    with service.store._engine.begin() as conn:
        if service.store.dialect == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON model_versions "
                "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$ "
                "LANGUAGE plpgsql"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON model_versions FOR EACH ROW EXECUTE FUNCTION refuse()"
            )


def test_failed_registration_leaves_no_half_entry_and_no_gap(service: shipyard.ModelService, home: Path) -> None:
    service.register(_line(1.0), "fraud")
    _install_failing_trigger(service)
    with pytest.raises(Exception, match="disk full"):
        service.register(_line(2.0), "fraud")
    assert [v.version for v in service.list_versions("fraud")] == [1]
    assert service.get_model("fraud").latest_version == 1
    stored = sorted((home / "artifacts" / "fraud").glob("*/model.skops"))
    assert len(stored) == 1  # the failed version's artifact was removed
    with service.store._engine.begin() as conn:
        on_table = "" if service.store.dialect == "sqlite" else " ON model_versions"
        conn.exec_driver_sql("DROP TRIGGER refuse" + on_table)
    assert service.register(_line(3.0), "fraud").version == 2


def test_artifacts_can_live_in_any_fsspec_location(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_ARTIFACTS_URL", f"memory://shipyard-{backend}-{time.time_ns()}")
    mv = shipyard.register(_line(4.0), "fraud")
    assert mv.artifact_uri.startswith("memory://")
    assert shipyard.load("fraud").predict([[1.0]]).round(6).tolist() == [4.0]
    import fsspec

    fs, path = fsspec.core.url_to_fs(mv.artifact_uri)
    fs.pipe_file(path, b"swapped")
    with pytest.raises(IntegrityError):
        shipyard.load("fraud")


KILLED_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import shipyard
    from sklearn.ensemble import RandomForestRegressor
    X = np.random.default_rng(0).normal(size=(2000, 5))
    model = RandomForestRegressor(n_estimators=30, random_state=0, n_jobs=1).fit(X, X[:, 0])
    service = shipyard.connect()
    while True:
        print(service.register(model, "fraud", X=X[:10]).version, flush=True)
    """
)


@pytest.mark.slow
def test_process_killed_while_registering_leaves_a_consistent_registry(backend: str, home: Path) -> None:
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_SCRIPT], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    assert proc.stdout is not None
    seen = [int(proc.stdout.readline()) for _ in range(3)]  # it is now in the middle of another registration
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    assert seen == [1, 2, 3]

    versions = shipyard.list_versions("fraud")
    numbers = sorted(v.version for v in versions)
    assert numbers == list(range(1, len(numbers) + 1))
    assert shipyard.get_model("fraud").latest_version == len(numbers)
    for version in versions:  # every visible version is complete and loads
        assert shipyard.load(version.ref).predict([[0.0] * 5]).shape == (1,)
    assert shipyard.register(_line(1.0), "fraud").version == len(numbers) + 1


class HomeMadeScaler:
    """A custom transformer, as a data scientist would write one in a notebook."""

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {}

    def fit(self, X: Any, y: Any = None) -> HomeMadeScaler:
        return self

    def transform(self, X: Any) -> Any:
        return X


def test_custom_classes_are_refused_at_registration_naming_the_class(service: shipyard.ModelService) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    pipe = Pipeline([("scale", HomeMadeScaler()), ("clf", LogisticRegression())]).fit([[0.0], [1.0]], [0, 1])
    with pytest.raises(UntrustedTypes, match=r"HomeMadeScaler.*trusted_types") as caught:
        service.register(pipe, "custom")
    assert any(t.endswith(".HomeMadeScaler") for t in caught.value.types)
    with pytest.raises(ModelNotFound):
        service.get_model("custom")


# ---------------------------------------------------------------------- lineage
def test_versions_record_their_parent_and_lineage(service: shipyard.ModelService, home: Path) -> None:
    first = service.register(_line(1.0), "fraud")
    assert (first.parent_version, first.parent_ref, first.lineage) == (None, None, {})
    lineage = {
        "source": "data/*.parquet",
        "fingerprint": "ab" * 32,
        "files": ["data/a.parquet", "data/b.parquet"],
        "watermark": {"column": "ts", "max": "2026-12-01T00:00:00"},
        "rows": np.int64(1200),  # numpy values are stored as plain JSON
    }
    child = service.register(_line(2.0), "fraud", parent=1, lineage=lineage)
    assert (child.version, child.parent_version, child.parent_ref) == (2, 1, "fraud:1")
    expected = {**lineage, "rows": 1200}
    assert child.lineage == expected
    for found in (service.resolve("fraud:2"), service.list_versions("fraud")[0], service.load("fraud:2").info):
        assert (found.parent_version, found.lineage) == (1, expected)
    assert service.resolve("fraud:1").parent_version is None


def test_a_missing_parent_is_refused_and_nothing_is_written(service: shipyard.ModelService, home: Path) -> None:
    service.register(_line(1.0), "fraud")
    service.register(_line(1.0), "other")
    service.register(_line(1.0), "other")
    with pytest.raises(VersionNotFound, match="'fraud' has no version 2"):
        service.register(_line(2.0), "fraud", parent=2)  # version 2 exists, but of another model
    with pytest.raises(ModelNotFound):
        service.register(_line(2.0), "new", parent=1)  # a first version cannot have a parent
    with pytest.raises(InvalidInput, match="whole number"):
        service.register(_line(2.0), "fraud", parent=0)
    assert [v.version for v in service.list_versions("fraud")] == [1]
    with pytest.raises(ModelNotFound):
        service.get_model("new")
    assert len(list((home / "artifacts").rglob("*.skops"))) == 3  # no orphaned artifact


def test_the_store_checks_the_parent_inside_the_registering_transaction(service: shipyard.ModelService) -> None:
    """Even a caller that skips the service's early check cannot record a parent that does not exist."""
    from shipyard.registry import NewVersion

    service.register(_line(1.0), "fraud")
    new = NewVersion(flavor="sklearn", artifact_uri="memory://x", sha256="0" * 64, size_bytes=1, creator="t",
                     parent_version=5)
    with pytest.raises(VersionNotFound):
        service.store.add_version("fraud", new)
    with pytest.raises(VersionNotFound):
        service.store.add_version("brand-new", new)
    assert service.get_model("fraud").latest_version == 1
    with pytest.raises(ModelNotFound):
        service.get_model("brand-new")
