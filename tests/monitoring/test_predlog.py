"""The prediction log's writer and reader on real files and a real PostgreSQL database.

Expected rows are rebuilt here from what was recorded (plain Python), never read back from the code under test.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shipyard.errors import InvalidInput, NotFound, StorageError
from shipyard.monitoring.logs import PredictionLog, parse_since
from shipyard.monitoring.predlog import PredictionLogger
from shipyard.serving.settings import LogSettings

NAMES = ["amount", "channel", "email"]
TYPES = ["float64", "string", "string"]


@pytest.fixture(params=["parquet", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Logger settings and the matching reader arguments, for each backend."""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        return {"settings": {"backend": "postgres", "postgres_url": url}, "reader": {"postgres_url": url}}
    return {"settings": {}, "reader": {"root": tmp_path / "logs"}}


@pytest.fixture(params=["process", "thread"])
def make_logger(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., PredictionLogger]]:
    """A started logger under ``tmp_path/logs`` with the given settings; closed after the test. Every test
    runs with both writers: the writer process (the default) and the server's own thread."""
    loggers: list[PredictionLogger] = []

    def make(**settings: Any) -> PredictionLogger:
        logger = PredictionLogger(LogSettings(**{"writer": request.param, **settings}), home=tmp_path)
        logger.start()
        loggers.append(logger)
        return logger

    yield make
    for logger in loggers:
        logger.close()


def sha(value: Any) -> str:
    return hashlib.sha256(str(value).encode()).hexdigest()


def parquet_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.parquet"))


def is_segment(path: Path) -> bool:
    """A merged file: ``<writer>.<stream>.<first>-<last>.parquet``."""
    return "-" in path.name.split(".")[-2]


# ---------------------------------------------------------------------- round trip
REQUESTS: list[dict[str, Any]] = [
    # one row as a record
    {"rid": "a", "data": [{"amount": 1.5, "channel": "web", "email": "x@y"}], "pred": [1], "proba": [[0.2, 0.8]]},
    # several rows as columns (ints for a float column are converted)
    {
        "rid": "b",
        "data": {"amount": [2, 3.25], "channel": ["pos", "app"], "email": ["p@q", None]},
        "pred": [0, 1],
        "proba": [[0.9, 0.1], [0.4, 0.6]],
    },
    # rows of values, named by the signature
    {
        "rid": "c",
        "data": [[4.0, "web", "m@n"], [5.0, "kiosk", "o@p"]],
        "pred": [1, 0],
        "proba": [[0.3, 0.7], [0.5, 0.5]],
    },
    # a frame, as the MLflow and V2 routes hand it over
    {
        "rid": "d",
        "data": pd.DataFrame({"amount": [6.0], "channel": ["app"], "email": ["r@s"]}),
        "pred": [0],
        "proba": [[0.6, 0.4]],
    },
]


def expected_rows() -> list[dict[str, Any]]:
    rows = []
    for request in REQUESTS:
        data = request["data"]
        if isinstance(data, pd.DataFrame):
            records = data.to_dict("records")
        elif isinstance(data, dict):
            records = [dict(zip(data, values, strict=True)) for values in zip(*data.values(), strict=True)]
        elif isinstance(data[0], dict):
            records = data
        else:
            records = [dict(zip(NAMES, row, strict=True)) for row in data]
        for i, record in enumerate(records):
            rid = request["rid"] if len(records) == 1 else f"{request['rid']}/{i}"
            rows.append(
                {
                    "request_id": rid,
                    "prediction": request["pred"][i],
                    "probabilities": request["proba"][i],
                    "amount": float(record["amount"]),
                    "channel": record["channel"],
                    "email": record["email"],
                }
            )
    return rows


def record_all(logger: PredictionLogger, *, route: str = "native", version: int = 3) -> None:
    for request in REQUESTS:
        logger.record(
            "fraud",
            version,
            route,
            request["rid"],
            request["data"],
            NAMES,
            np.array(request["pred"]),
            np.array(request["proba"]),
            0.004,
            input_types=TYPES,
        )


def test_every_row_of_every_request_round_trips(
    backend: dict[str, Any], make_logger: Callable[..., PredictionLogger]
) -> None:
    logger = make_logger(flush_interval_s=60.0, **backend["settings"])  # only close() writes
    before = datetime.now(UTC)
    record_all(logger)
    logger.close()
    assert logger.dropped == 0 and logger.written == 6

    frame = PredictionLog(**backend["reader"]).predictions("fraud")
    expected = expected_rows()
    assert frame["request_id"].tolist() == [row["request_id"] for row in expected]
    assert frame["prediction"].tolist() == [row["prediction"] for row in expected]
    assert [list(p) for p in frame["probabilities"]] == [row["probabilities"] for row in expected]
    assert frame["amount"].tolist() == [row["amount"] for row in expected]
    assert frame["channel"].tolist() == [row["channel"] for row in expected]
    assert [None if pd.isna(v) else v for v in frame["email"]] == [  # a personal column: hashed by default
        None if row["email"] is None else sha(row["email"]) for row in expected
    ]
    assert set(frame["model"]) == {"fraud"} and set(frame["version"]) == {3} and set(frame["route"]) == {"native"}
    assert np.allclose(frame["latency_ms"], 4.0)
    assert str(frame["ts"].dtype) == "datetime64[us, UTC]"
    assert frame["ts"].between(before, datetime.now(UTC)).all()
    assert PredictionLog(**backend["reader"]).models() == ["fraud"]


def test_filters_since_until_last_version(
    backend: dict[str, Any], make_logger: Callable[..., PredictionLogger]
) -> None:
    logger = make_logger(flush_interval_s=0.05, **backend["settings"])
    logger.record("m", 1, "native", "early", [{"x": 1.0}], ["x"], np.array([0.5]), None, 0.001)
    time.sleep(0.2)
    middle = datetime.now(UTC)
    time.sleep(0.05)
    for i in range(5):
        logger.record("m", 2, "v2", f"late{i}", [{"x": float(i)}], ["x"], np.array([float(i)]), None, 0.001)
    logger.close()
    log = PredictionLog(**backend["reader"])
    assert log.predictions("m", since=middle)["request_id"].tolist() == [f"late{i}" for i in range(5)]
    assert log.predictions("m", until=middle)["request_id"].tolist() == ["early"]
    assert log.predictions("m", last=2)["request_id"].tolist() == ["late3", "late4"]
    assert log.predictions("m", version=1)["request_id"].tolist() == ["early"]
    assert log.predictions("m", since=datetime.now(UTC) + timedelta(hours=1)).empty
    assert log.predictions("m")["probabilities"].isna().all()  # a regressor: no probabilities
    with pytest.raises(InvalidInput, match="at least 1"):
        log.predictions("m", last=0)


# ---------------------------------------------------------------------- sensitive columns
def test_sensitive_columns_are_hashed_or_dropped_before_writing(
    backend: dict[str, Any], make_logger: Callable[..., PredictionLogger], tmp_path: Path
) -> None:
    logger = make_logger(sensitive={"fraud": {"email": "hash", "channel": "drop"}}, **backend["settings"])
    record_all(logger)
    logger.close()
    frame = PredictionLog(**backend["reader"]).predictions("fraud")
    expected = expected_rows()
    assert "channel" not in frame.columns
    assert [None if pd.isna(v) else v for v in frame["email"]] == [
        None if row["email"] is None else sha(row["email"]) for row in expected
    ]
    assert frame["amount"].tolist() == [row["amount"] for row in expected]  # other columns as they were
    if backend["settings"].get("backend") != "postgres":
        for path in parquet_files(tmp_path / "logs"):  # nothing in clear anywhere on disk
            raw = path.read_bytes()
            assert b"x@y" not in raw and b"kiosk" not in raw
            assert "channel" not in pq.read_schema(path).field("input").type.names


# ---------------------------------------------------------------------- labels
def test_labels_are_durable_and_the_newest_label_of_a_request_wins(
    backend: dict[str, Any], make_logger: Callable[..., PredictionLogger]
) -> None:
    logger = make_logger(flush_interval_s=0.05, **backend["settings"])
    record_all(logger)
    logger.record_labels("fraud", [("a", 1), ("b/0", 0), ("c/1", 1)])
    logger.record_labels("fraud", [("b/0", 1), ("unknown", 0)])  # a correction, and a label without prediction
    log = PredictionLog(**backend["reader"])
    # durable when record_labels returns: readable at once, before any flush or close
    assert sorted(log.labels("fraud")["request_id"]) == ["a", "b/0", "b/0", "c/1", "unknown"]
    logger.close()
    joined = log.joined("fraud")
    assert joined["request_id"].tolist() == ["a", "b/0", "c/1"]
    assert joined["label"].tolist() == [1, 1, 1]
    assert joined["prediction"].tolist() == [1, 0, 0]


# ---------------------------------------------------------------------- SQL
def test_query_runs_duckdb_sql_over_predictions_and_labels(
    backend: dict[str, Any], make_logger: Callable[..., PredictionLogger]
) -> None:
    logger = make_logger(**backend["settings"])
    record_all(logger)
    logger.record_labels("fraud", [("a", 1), ("c/0", 0)])
    logger.close()
    log = PredictionLog(**backend["reader"])
    table = log.query(
        "fraud",
        "select p.request_id, p.input.channel as channel, l.label from predictions p "
        "join labels l using (request_id) order by 1",
    )
    assert table.to_pylist() == [
        {"request_id": "a", "channel": "web", "label": 1},
        {"request_id": "c/0", "channel": "web", "label": 0},
    ]
    counts = log.query("fraud", "select prediction, count(*) as n from predictions group by 1 order by 1")
    assert counts.to_pylist() == [{"prediction": 0, "n": 3}, {"prediction": 1, "n": 3}]
    future = log.query("fraud", "select count(*) as n from predictions", since=datetime.now(UTC) + timedelta(hours=1))
    assert future.to_pylist() == [{"n": 0}]
    with pytest.raises(InvalidInput, match="the SQL query failed"):
        log.query("fraud", "select nope from predictions")
    with pytest.raises(NotFound, match=r"'other'.*fraud"):
        log.query("other", "select 1")


def test_parse_since() -> None:
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert parse_since("1h", now) == now - timedelta(hours=1)
    assert parse_since("2d", now) == now - timedelta(days=2)
    assert parse_since("2026-04-30T10:00", now) == datetime(2026, 4, 30, 10, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="30m, 1h"):
        parse_since("yesterday", now)


# ---------------------------------------------------------------------- writer behaviour
def test_flushes_every_interval_and_listeners_get_every_table(make_logger: Callable[..., PredictionLogger]) -> None:
    logger = make_logger(flush_interval_s=0.1)
    seen: list[tuple[str, int, int]] = []
    logger.add_listener(lambda model, version, table: seen.append((model, version, table.num_rows)))
    logger.add_listener(lambda model, version, table: 1 / 0)  # a failing listener changes nothing
    logger.record("m", 1, "native", "r1", [{"x": 1.0}, {"x": 2.0}], ["x"], np.array([0, 1]), None, 0.001)
    logger.record("m", 2, "native", "r2", [{"x": 3.0}], ["x"], np.array([1]), None, 0.001)
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(seen) == [("m", 1, 2), ("m", 2, 1)]  # written without close()
    assert len(PredictionLog(logger.root).predictions("m")) == 3


def test_flush_rows_writes_before_the_interval(make_logger: Callable[..., PredictionLogger]) -> None:
    logger = make_logger(flush_interval_s=3600.0, flush_rows=10)
    for i in range(10):
        logger.record("m", 1, "native", f"r{i}", [{"x": 1.0}], ["x"], np.array([0]), None, 0.001)
    deadline = time.monotonic() + 10
    while logger.written < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(PredictionLog(logger.root).predictions("m")) == 10


def test_a_full_buffer_drops_and_counts_rows(
    make_logger: Callable[..., PredictionLogger], caplog: pytest.LogCaptureFixture
) -> None:
    logger = make_logger(flush_interval_s=3600.0, buffer_rows=10)
    with caplog.at_level(logging.WARNING, logger="shipyard.monitoring"):
        for i in range(8):
            logger.record("m", 1, "native", f"r{i}", [{"x": 1.0}], ["x"], np.array([0]), None, 0.001)
        logger.record("m", 1, "native", "big", [{"x": 1.0}] * 5, ["x"], np.zeros(5), None, 0.001)  # 13 > 10
        logger.record("m", 1, "native", "r8", [{"x": 1.0}], ["x"], np.array([0]), None, 0.001)
    assert logger.dropped == 5
    assert any("dropped 5 rows" in record.getMessage() for record in caplog.records)
    logger.close()
    assert len(PredictionLog(logger.root).predictions("m")) == 9
    logger.record("m", 1, "native", "after", [{"x": 1.0}], ["x"], np.array([0]), None, 0.001)
    assert logger.dropped == 6  # after close nothing is held any more


def test_tensor_inputs_and_string_predictions(make_logger: Callable[..., PredictionLogger]) -> None:
    logger = make_logger()
    rows = np.array([[0.5, 1.5], [2.5, 3.5]], dtype=np.float32)
    logger.record("t", 1, "v2", "r", rows, ["f0", "f1"], np.array(["cat", "dog"]), None, 0.001)
    logger.close()
    frame = PredictionLog(logger.root).predictions("t")
    assert frame[["f0", "f1"]].to_numpy().tolist() == rows.astype(float).tolist()
    assert frame["prediction"].tolist() == ["cat", "dog"]


# ---------------------------------------------------------------------- rotation and expiry
def test_closed_periods_are_merged_into_one_segment(make_logger: Callable[..., PredictionLogger]) -> None:
    logger = make_logger(flush_interval_s=0.05, rotate_seconds=0.5)
    for i in range(6):  # several flush files in one period, two versions with different prediction types
        logger.record("m", 1, "native", f"a{i}", [{"x": float(i)}], ["x"], np.array([i]), None, 0.001)
        logger.record("m", 2, "native", f"b{i}", [{"x": float(i)}], ["x"], np.array([f"s{i}"]), None, 0.001)
        time.sleep(0.07)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any("-" in p.name.split(".")[-2] for p in parquet_files(logger.root)):
        time.sleep(0.05)
    time.sleep(1.2)  # every period of those rows is closed and merged
    files = [p.name for p in parquet_files(logger.root)]
    segments = [name for name in files if "-" in name.split(".")[-2]]
    assert segments and len(files) < 12, files
    frame = PredictionLog(logger.root).predictions("m")
    assert sorted(frame["request_id"]) == sorted([f"a{i}" for i in range(6)] + [f"b{i}" for i in range(6)])


def test_a_merge_interrupted_before_deleting_its_parts_reads_every_row_once(
    make_logger: Callable[..., PredictionLogger], tmp_path: Path
) -> None:
    logger = make_logger(flush_interval_s=3600.0, rotate_seconds=3600.0)
    for i in range(4):
        logger.record("m", 1, "native", f"r{i}", [{"x": float(i)}], ["x"], np.array([i]), None, 0.001)
        logger.flush()
    parts = parquet_files(logger.root)
    assert len(parts) == 4
    saved = tmp_path / "saved"
    saved.mkdir()
    for part in parts:
        shutil.copy2(part, saved / part.name)
    logger.close()  # merges this writer's parts into one segment and deletes them
    (segment,) = parquet_files(logger.root)
    for part in parts:  # as if the process had died between the segment's rename and the deletes
        shutil.copy2(saved / part.name, part)
    log = PredictionLog(logger.root)
    assert log.predictions("m")["request_id"].tolist() == ["r0", "r1", "r2", "r3"]
    assert log.query("m", "select count(*) as n from predictions").to_pylist() == [{"n": 4}]
    # the next writer's expiry pass deletes the covered parts
    cleaner = make_logger(flush_interval_s=0.05, rotate_seconds=0.1)
    deadline = time.monotonic() + 10
    while len(parquet_files(logger.root)) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert parquet_files(logger.root) == [segment]
    cleaner.close()


def test_busy_streams_merge_early_and_nested_merges_read_every_row_once(
    make_logger: Callable[..., PredictionLogger], tmp_path: Path
) -> None:
    from shipyard.monitoring._parquet import MERGE_PARTS

    logger = make_logger(flush_interval_s=0.05, rotate_seconds=3600.0)
    total = 2 * MERGE_PARTS + 50
    for i in range(total):  # one file per flush: more than MERGE_PARTS twice over in one period
        logger.record("m", 1, "native", f"r{i}", [{"x": float(i)}], ["x"], np.array([i]), None, 0.001)
        logger.flush()
    deadline = time.monotonic() + 30
    while not any(map(is_segment, parquet_files(logger.root))) and time.monotonic() < deadline:
        time.sleep(0.05)
    saved = tmp_path / "saved"
    saved.mkdir()
    before = []
    for path in parquet_files(logger.root):  # early merges may still be running: take what is there
        with contextlib.suppress(FileNotFoundError):
            shutil.copy2(path, saved / path.name)
            before.append(path)
    assert any(map(is_segment, before)) and len(before) < total  # merged early, before the period closed
    logger.close()  # the whole stream (early segments and the last parts) becomes one segment
    (final,) = parquet_files(logger.root)
    for path in before:  # as if the process had died before deleting what the final merge read
        shutil.copy2(saved / path.name, path)
    log = PredictionLog(logger.root)
    assert log.predictions("m")["request_id"].tolist() == [f"r{i}" for i in range(total)]
    cleaner = make_logger(flush_interval_s=0.05, rotate_seconds=0.1)
    deadline = time.monotonic() + 10
    while len(parquet_files(logger.root)) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert parquet_files(logger.root) == [final]
    cleaner.close()


def test_concurrent_labels_are_each_written_once(make_logger: Callable[..., PredictionLogger]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    logger = make_logger()
    calls = [[(f"t{t}-{i}", i % 2) for i in range(3)] for t in range(64)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda pairs: logger.record_labels("m", pairs), calls))
    labels = PredictionLog(logger.root).labels("m")  # durable: readable before close
    expected = sorted((rid, label) for pairs in calls for rid, label in pairs)
    assert sorted(zip(labels["request_id"], labels["label"], strict=True)) == expected
    print(f"{len(calls)} label calls written as {len(parquet_files(logger.root))} files")


def test_files_expire_by_age_then_by_size_oldest_first(make_logger: Callable[..., PredictionLogger]) -> None:
    first = make_logger(flush_interval_s=3600.0, rotate_seconds=3600.0)
    for i in range(6):
        first.record("m", 1, "native", f"r{i}", [{"x": float(i)}], ["x"], np.array([i]), None, 0.001)
        first.flush()
    files = parquet_files(first.root)
    assert len(files) == 6
    now = time.time()
    os.utime(files[0], (now - 3 * 3600, now - 3 * 3600))  # older than max_age_hours
    for age, path in zip([50, 40, 30, 20, 10], files[1:], strict=True):
        os.utime(path, (now - age, now - age))
    size = files[1].stat().st_size
    keep_bytes = sum(p.stat().st_size for p in files[3:]) + size // 2  # the three newest fit, not four
    second = make_logger(flush_interval_s=0.05, rotate_seconds=0.1, max_age_hours=2.0, max_bytes=keep_bytes)
    deadline = time.monotonic() + 10
    while len(parquet_files(first.root)) > 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert parquet_files(first.root) == files[3:]
    assert PredictionLog(first.root).predictions("m")["request_id"].tolist() == ["r3", "r4", "r5"]
    second.close()


def test_a_log_folder_that_cannot_be_made_fails_at_start(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    logger = PredictionLogger(LogSettings(path=blocker / "logs"), home=tmp_path)
    with pytest.raises(StorageError, match=r"logging\.path"):
        logger.start()


# ---------------------------------------------------------------------- PostgreSQL specifics
@pytest.mark.postgres
def test_postgres_backend_creates_its_tables_and_needs_a_url(postgres_url: str, tmp_path: Path) -> None:
    from sqlalchemy import create_engine, inspect

    with pytest.raises(ValueError, match="postgres_url"):
        LogSettings(backend="postgres")
    logger = PredictionLogger(LogSettings(backend="postgres", postgres_url=postgres_url), home=tmp_path)
    logger.start()
    logger.record("m", 1, "native", "r", [{"x": float("nan")}], ["x"], np.array([0.5]), None, 0.001)
    logger.close()
    engine = create_engine(postgres_url)
    try:
        assert {"shipyard_predictions", "shipyard_labels"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    frame = PredictionLog(postgres_url=postgres_url).predictions("m")
    assert frame["request_id"].tolist() == ["r"] and frame["x"].isna().all()  # NaN is stored as null
    assert not (tmp_path / "logs").exists()


def test_arrow_types_of_a_parquet_file(make_logger: Callable[..., PredictionLogger]) -> None:
    logger = make_logger()
    record_all(logger)
    logger.close()
    (path,) = parquet_files(logger.root)
    schema = pq.read_schema(path)
    assert schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert schema.field("version").type == pa.int32()
    assert schema.field("probabilities").type == pa.list_(pa.float64())
    assert schema.field("input").type == pa.struct(
        [("amount", pa.float64()), ("channel", pa.string()), ("email", pa.string())]
    )
    assert path.parent.name == datetime.now(UTC).strftime("%Y-%m-%d")
    assert path.parent.parent == logger.root / "predictions" / "fraud"
    assert f"-{logger.writer_pid}." in path.name


def test_readers_leave_out_shadow_rows_and_inputs_when_asked(
    make_logger: Callable[..., PredictionLogger], backend: dict[str, Any]
) -> None:
    logger = make_logger(**backend["settings"])
    row = [{"amount": 1.5, "channel": "web", "email": "x@y"}]
    logger.record("fraud", 1, "native", "r1", row, NAMES, np.array([1]), np.array([[0.2, 0.8]]), 0.001)
    logger.record("fraud", 2, "shadow", "r1", row, NAMES, np.array([0]), np.array([[0.6, 0.4]]), 0.002)
    logger.record("fraud", 1, "v2", "r2", row, NAMES, np.array([0]), np.array([[0.9, 0.1]]), 0.001)
    logger.close()
    log = PredictionLog(**backend["reader"])
    everything = log.predictions("fraud")
    assert sorted(zip(everything["request_id"], everything["route"], strict=True)) == [
        ("r1", "native"), ("r1", "shadow"), ("r2", "v2"),
    ]  # fmt: skip
    served = log.predictions("fraud", shadow=False)
    assert served["route"].tolist() == ["native", "v2"] and served["amount"].tolist() == [1.5, 1.5]
    bare = log.predictions("fraud", inputs=False, shadow=False)
    assert "amount" not in bare.columns and bare["request_id"].tolist() == ["r1", "r2"]


# ---------------------------------------------------------------------- validated float inputs
def test_validated_float_frames_log_the_same_rows_as_the_records_they_came_from(
    backend: dict[str, Any], make_logger: Callable[..., PredictionLogger]
) -> None:
    """A server hands the logger its validated frame when every input is a float: the log must hold the same
    values as from the JSON records (ints as floats, a missing value as null), hash and drop the same
    columns, and mix with requests logged from their records in the same flush."""
    from shipyard.signature import Signature

    names, types = ["a", "b", "c"], ["float64", "float64", "float64"]
    signature = Signature.from_dict({"inputs": [{"name": n, "dtype": t} for n, t in zip(names, types, strict=True)]})
    requests = [
        [{"a": 1.5, "b": 2, "c": -0.25}],
        [{"a": 0.1, "b": None, "c": 3.0}, {"a": 7, "b": 8.5, "c": 1e-9}],
        [{"a": -4.0, "b": 0.0, "c": 2.0}] * 3,
    ]
    hidden = {"b": "hash", "c": "drop"}
    logger = make_logger(sensitive={"m": hidden, "n": hidden}, **backend["settings"])
    for index, rows in enumerate(requests):
        features = signature.validate(rows)
        predictions, probabilities = np.arange(len(rows)), np.full((len(rows), 2), 0.5)
        # m: always from the validated frame; n: the middle request from its records (mixed in one flush)
        logger.record("m", 1, "native", f"r{index}", rows, names, predictions, probabilities, 0.001,
                      input_types=types, features=features)  # fmt: skip
        logger.record("n", 1, "native", f"r{index}", rows, names, predictions, probabilities, 0.001,
                      input_types=types, features=None if index == 1 else features)  # fmt: skip
    logger.close()
    log = PredictionLog(**backend["reader"])
    expected_ids = ["r0", "r1/0", "r1/1", "r2/0", "r2/1", "r2/2"]
    flat = [row for rows in requests for row in rows]
    for model in ("m", "n"):
        frame = log.predictions(model).sort_values("request_id", kind="stable")
        assert frame["request_id"].tolist() == expected_ids
        assert frame["a"].tolist() == [float(row["a"]) for row in flat]
        assert [None if pd.isna(v) else v for v in frame["b"]] == [
            None if row["b"] is None else sha(float(row["b"])) for row in flat
        ]
        assert "c" not in frame.columns


def test_large_validated_requests_of_different_sizes_log_every_value_in_place(
    make_logger: Callable[..., PredictionLogger],
) -> None:
    """Requests big enough that the writer joins their arrays without NumPy's per-piece copies (over 500
    values each), of different row counts: every logged value must sit in its own row and column."""
    from shipyard.signature import Signature

    names = [f"x{i}" for i in range(7)]
    signature = Signature.from_dict({"inputs": [{"name": n, "dtype": "float64"} for n in names]})
    rng = np.random.default_rng(3)
    sizes = [100, 1, 250, 73, 100]
    sent = [rng.standard_normal((rows, len(names))) for rows in sizes]
    logger = make_logger()
    for index, values in enumerate(sent):
        records = [dict(zip(names, row, strict=True)) for row in values.tolist()]
        features = signature.validate(records, as_array=True)
        predictions = np.arange(len(values)) + 1000 * index
        probabilities = rng.random((len(values), 3))
        logger.record("big", 1, "native", f"q{index:02d}", records, names, predictions, probabilities, 0.001,
                      input_types=["float64"] * len(names), features=features)  # fmt: skip
        sent[index] = np.column_stack([values, predictions, probabilities])
    logger.close()
    frame = PredictionLog(logger.root).predictions("big")
    assert len(frame) == sum(sizes)
    order = sorted(range(len(frame)), key=lambda i: (frame["request_id"][i].split("/")[0],
                                                     int(frame["request_id"][i].split("/")[1])
                                                     if "/" in frame["request_id"][i] else 0))  # fmt: skip
    frame = frame.iloc[order]
    logged = np.column_stack([frame[names].to_numpy(), frame["prediction"].to_numpy(),
                              np.stack(frame["probabilities"].to_numpy())])  # fmt: skip
    np.testing.assert_array_equal(logged, np.concatenate(sent))


# ---------------------------------------------------------------------- the writer process
def record_floats(logger: PredictionLogger, prefix: str, requests: int, rows: int = 3) -> set[str]:
    """``requests`` requests of ``rows`` validated float rows (the column arenas), every fifth one logged from
    its records instead (the pickled arena); the row ids the log must hold."""
    from shipyard.signature import Signature

    names = ["a", "b"]
    signature = Signature.from_dict({"inputs": [{"name": n, "dtype": "float64"} for n in names]})
    expected = set()
    for index in range(requests):
        records = [{"a": float(index), "b": float(row)} for row in range(rows)]
        features = signature.validate(records, as_array=True)
        rid = f"{prefix}{index}"
        logger.record("m", 1, "native", rid, records, names, np.zeros(rows, dtype=np.int64), np.full((rows, 2), 0.5),
                      0.001, input_types=["float64", "float64"],
                      features=None if index % 5 == 0 else features)  # fmt: skip
        expected |= {rid} if rows == 1 else {f"{rid}/{row}" for row in range(rows)}
    return expected


WRITER_SCRIPT = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_predlog import record_floats
from shipyard.monitoring.predlog import PredictionLogger
from shipyard.serving.settings import LogSettings

logger = PredictionLogger(LogSettings(flush_interval_s=3600.0), home=Path({home!r}))
logger.start()
record_floats(logger, "first", 300)
logger.flush()  # written by the writer process before the kill
record_floats(logger, "second", 200)  # still in the arenas at the kill
print(logger.writer_pid, logger._process._folder, flush=True)
time.sleep(600)
"""


def test_a_server_killed_with_kill_9_loses_only_its_last_staged_requests(tmp_path: Path) -> None:
    """The writer process outlives its server: it writes every request the arenas hold, then cleans up. Only
    the last few small requests, staged to be copied into an arena together, can be lost."""
    import signal
    import subprocess
    import sys

    from shipyard.monitoring._shipper import STAGED_REQUESTS

    script = WRITER_SCRIPT.format(tests=str(Path(__file__).parent), home=str(tmp_path))
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        writer_pid, folder = server.stdout.readline().split()
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
        server.stdout.close()  # type: ignore[union-attr]
    deadline = time.monotonic() + 60
    while Path(f"/proc/{writer_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{writer_pid}").exists(), "the writer process did not stop after its server died"
    logged = PredictionLog(tmp_path / "logs").predictions("m")
    ids = set(logged["request_id"])
    assert len(ids) == len(logged), "a row was written twice"
    assert {f"first{i}/{r}" for i in range(300) for r in range(3)} <= ids  # flushed before the kill
    second = {int(rid[len("second") :].split("/")[0]) for rid in ids if rid.startswith("second")}
    assert {i for i in range(200) if i % 5 == 0} <= second  # pickled requests go to their arena at once
    staged = sorted(i for i in second if i % 5)
    assert staged == [i for i in range(200) if i % 5][: len(staged)], "a gap: a request was lost before a later one"
    assert len(staged) >= 160 - STAGED_REQUESTS
    assert all({f"second{i}/{r}" for r in range(3)} <= ids for i in second)
    assert not Path(folder).exists(), "the arenas of a dead server were left in memory"


@pytest.fixture
def process_logger(tmp_path: Path) -> Iterator[PredictionLogger]:
    """A started logger with a writer process (flushed only when asked); closed after the test."""
    logger = PredictionLogger(LogSettings(writer="process", flush_interval_s=3600.0), home=tmp_path)
    logger.start()
    yield logger
    logger.close()


def test_a_dead_writer_process_is_replaced_and_no_row_is_lost(process_logger: PredictionLogger) -> None:
    """Rows held when the writer process dies are written by the next one (possibly twice, never lost)."""
    import signal

    logger = process_logger
    expected = record_floats(logger, "before", 50)
    logger.flush()
    first = logger.writer_pid
    expected |= record_floats(logger, "held", 50)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while logger.writer_pid == first and time.monotonic() < deadline:
        time.sleep(0.02)
    assert logger.writer_pid != first, "no new writer process was started"
    expected |= record_floats(logger, "after", 50)
    logger.close()
    logged = PredictionLog(logger.root).predictions("m")
    assert set(logged["request_id"]) == expected
    assert logger.dropped == 0


def test_when_no_arena_can_be_made_rows_are_dropped_and_counted(
    process_logger: PredictionLogger, caplog: pytest.LogCaptureFixture
) -> None:
    """The arenas' folder gone (as on a full /dev/shm): requests are still answered, the rows that need a new
    arena are counted as dropped and reported once, and the rest is written."""
    from shipyard.signature import Signature

    logger = process_logger
    kept = record_floats(logger, "kept", 10)
    logger.flush()
    assert logger._process is not None and logger._process._folder is not None
    shutil.rmtree(logger._process._folder)
    names = ["x", "y", "z"]  # a version of another width needs an arena of its own
    signature = Signature.from_dict({"inputs": [{"name": n, "dtype": "float64"} for n in names]})
    with caplog.at_level(logging.ERROR, logger="shipyard.monitoring"):
        for index in range(100):
            features = signature.validate([{"x": 1.0, "y": 2.0, "z": 3.0}] * 2, as_array=True)
            logger.record("wide", 1, "native", f"w{index}", None, names, np.zeros(2, dtype=np.int64), None, 0.001,
                          input_types=["float64"] * 3, features=features)  # fmt: skip
        logger.flush()
    assert logger.dropped == 100 * 2
    assert sum("cannot make a new arena" in r.getMessage() for r in caplog.records) == 1
    logger.close()
    assert set(PredictionLog(logger.root).predictions("m")["request_id"]) == kept


def test_every_route_is_logged_with_its_requests(make_logger: Callable[..., PredictionLogger]) -> None:
    """More routes than an arena's route table holds, and a route name too long for it: each row keeps its own."""
    from shipyard.signature import Signature

    signature = Signature.from_dict({"inputs": [{"name": "a", "dtype": "float64"}]})
    routes = [f"route{i}" for i in range(11)] + ["a-route-name-longer-than-24-bytes"]
    logger = make_logger(flush_interval_s=3600.0)
    expected = {}
    for index in range(120):
        route = routes[index % len(routes)] if index % 7 else routes[0]
        features = signature.validate([{"a": float(index)}], as_array=True)
        logger.record("m", 1, route, f"q{index}", None, ["a"], np.array([index]), None, 0.001,
                      input_types=["float64"], features=features)  # fmt: skip
        expected[f"q{index}"] = (route, float(index))
    logger.close()
    frame = PredictionLog(logger.root).predictions("m")
    logged = {rid: (route, a) for rid, route, a in zip(frame["request_id"], frame["route"], frame["a"], strict=True)}
    assert logged == expected
