"""The prediction log at rest: private files and folders, personal columns hashed, a full disk logged once.

Modes are read from the files a real ``shipyard serve`` wrote for real requests, started with umask 0 (so nothing
is private by accident); hashes are recomputed here with :mod:`hashlib`, never read from the code under test.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from shipyard.monitoring.logs import PredictionLog
from shipyard.monitoring.predlog import PredictionLogger
from shipyard.serving.settings import LogSettings

MODEL = "signup"


def sha(value: Any) -> str:
    return hashlib.sha256(str(value).encode()).hexdigest()


def signup_rows(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": np.round(rng.normal(100.0, 20.0, n), 2),
            "channel": rng.choice(["web", "app"], n).astype(object),
            "email": [f"person{i}@example.org" for i in range(n)],
        }
    )


def signup_model(X: pd.DataFrame) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    y = (X["amount"] > 100).astype(int)
    features = ColumnTransformer(
        [("num", StandardScaler(), ["amount"]), ("cat", OneHotEncoder(handle_unknown="ignore"), ["channel"])]
    )  # email is in the signature (the caller sends it) but not used by the model
    return make_pipeline(features, LogisticRegression()).fit(X, y)


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, int]:
    """``{relative path: permission bits}`` of ``root`` and everything under it."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def test_a_served_model_logs_private_files_and_hashes_its_email_column(
    start_server: Callable[..., Any], home: Path, tmp_path: Path
) -> None:
    import shipyard

    X = signup_rows(200)
    shipyard.register(signup_model(X), MODEL, X=X)
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({"logging": {"flush_interval_s": 0.1, "rotate_seconds": 1}}))
    with umask(0):  # the server inherits it: every file would be 0666 and every folder 0777 if left to it
        server = start_server(MODEL, "--config", str(config))
    sent = X.iloc[:30]
    for start in range(0, len(sent), 10):
        body = {"instances": sent.iloc[start : start + 10].to_dict("records")}
        answer = server.client.post(f"/v1/models/{MODEL}/predict", json=body)
        assert answer.status_code == 200, answer.text
    assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)  # graceful: writes and merges everything

    root = home / "logs"
    logged = PredictionLog(root).predictions(MODEL)
    assert len(logged) == len(sent)
    assert sorted(logged["email"]) == sorted(sha(e) for e in sent["email"])  # a hash, not the address
    assert sorted(logged["amount"]) == sorted(sent["amount"])  # other columns as they were
    files = sorted(root.rglob("*.parquet"))
    assert files, "nothing was written"
    for path in files:
        assert b"@example.org" not in path.read_bytes(), path

    found = modes(root)
    assert {name: oct(mode) for name, mode in found.items() if (root / name).is_dir() and mode != 0o700} == {}
    assert {name: oct(mode) for name, mode in found.items() if not (root / name).is_dir() and mode != 0o600} == {}


def test_personal_columns_are_hashed_by_default_and_kept_raw_when_asked(tmp_path: Path) -> None:
    rows = [{"amount": 1.5, "email": "a@b.org", "phone_number": "+44 20 7946 0000", "channel": "web"}]
    names = ["amount", "email", "phone_number", "channel"]
    types = ["float64", "string", "string", "string"]

    def logged(folder: str, **settings: Any) -> dict[str, Any]:
        logger = PredictionLogger(LogSettings(writer="thread", **settings), home=tmp_path / folder)
        logger.start()
        logger.record("m", 1, "native", "r1", rows, names, np.array([1]), None, 0.001, input_types=types)
        logger.close()
        frame = PredictionLog(tmp_path / folder / "logs").predictions("m")
        return {name: frame[name].iloc[0] for name in names if name in frame.columns}

    assert logged("default") == {
        "amount": 1.5,
        "email": sha("a@b.org"),
        "phone_number": sha("+44 20 7946 0000"),
        "channel": "web",
    }
    assert logged("raw", sensitive={"m": {"email": "raw"}}) == {
        "amount": 1.5,
        "email": "a@b.org",
        "phone_number": sha("+44 20 7946 0000"),
        "channel": "web",
    }
    assert logged("off", hash_personal_columns=False) == {
        "amount": 1.5,
        "email": "a@b.org",
        "phone_number": "+44 20 7946 0000",
        "channel": "web",
    }
    assert PredictionLog(tmp_path, sensitive={"m": {"channel": "drop"}}).unmonitored("m", names) == {
        "channel",
        "email",
        "phone_number",
    }
    assert PredictionLog(tmp_path, hash_personal=False).unmonitored("m", names) == set()


def test_files_of_an_older_log_are_made_private(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    day = root / "predictions" / "m" / "2026-01-01"
    day.mkdir(parents=True, mode=0o755)
    old = day / "1-2.v1.00000001.parquet"
    pd.DataFrame({"x": [1.0]}).to_parquet(old)
    old.chmod(0o644)
    logger = PredictionLogger(LogSettings(writer="thread", path=root), home=tmp_path)
    logger.start()
    logger.sink.expire()
    logger.close()
    assert oct(stat.S_IMODE(old.stat().st_mode)) == oct(0o600)
    for folder in (root / "predictions", root / "predictions" / "m", day):
        assert oct(stat.S_IMODE(folder.stat().st_mode)) == oct(0o700), folder


# ---------------------------------------------------------------------- a log that cannot be written
def blocked_writes(root: Path, model: str) -> Path:
    """Make every write of ``model``'s predictions fail for real: a file where its folder must be."""
    (root / "predictions").mkdir(parents=True, exist_ok=True)
    blocker = root / "predictions" / model
    blocker.write_text("not a folder")
    return blocker


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_a_log_that_cannot_be_written_is_reported_once_then_counted_until_it_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, writer: str
) -> None:
    root = tmp_path / "logs"
    logger = PredictionLogger(LogSettings(writer=writer, flush_interval_s=3600.0), home=tmp_path)  # type: ignore[arg-type]
    logger.start()
    blocker = blocked_writes(root, "m")
    caplog.set_level(logging.WARNING, logger="shipyard.monitoring")

    def flush_one(rid: str) -> int:
        logger.record("m", 1, "native", rid, [{"x": 1.0}, {"x": 2.0}], ["x"], np.array([0, 1]), None, 0.001)
        return logger.flush()

    try:
        assert [flush_one(f"r{i}") for i in range(5)] == [0] * 5
        assert logger.failed_writes == 5 and logger.dropped == 10  # counted, every one
        blocker.unlink()  # room again
        assert flush_one("after") == 2
        assert flush_one("after2") == 2
    finally:
        logger.close()
    assert logger.failed_writes == 5 and logger.dropped == 10
    assert PredictionLog(root).predictions("m")["request_id"].tolist() == ["after/0", "after/1", "after2/0", "after2/1"]
    if writer == "thread":  # the writer process logs to its own stderr
        ours = [r for r in caplog.records if r.name == "shipyard.monitoring"]
        tracebacks = [r for r in ours if r.exc_info]
        assert len(tracebacks) == 1, [r.getMessage() for r in ours]
        assert "could not write 2 rows of m version 1" in tracebacks[0].getMessage()
        assert "File exists" in tracebacks[0].getMessage() or "Not a directory" in tracebacks[0].getMessage()
        recovered = [r.getMessage() for r in ours if "recovered" in r.getMessage()]
        assert recovered == ["prediction log: recovered after 5 failed writes of m (10 rows not logged)"]
