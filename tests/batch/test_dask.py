"""The Dask engine gives the local engine's output row for row.

One ``LocalCluster`` serves the module: the one the Dask engine starts when it is given no scheduler
(two single-threaded worker processes); the jobs reach it through its scheduler address, as they
would reach a remote cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from shipyard import batch
from shipyard.batch.engines import DaskEngine
from shipyard.errors import ShipyardError

from .conftest import STAMP, Registry, make_rows
from .test_score import _rows_with_bad_values, check_scores

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[DaskEngine]:
    """A Dask engine with the LocalCluster it starts itself, shared by the module's tests."""
    with DaskEngine(workers=2) as engine:
        yield engine


@pytest.fixture
def scheduler(own_cluster: DaskEngine) -> str:
    """The address of the module's cluster."""
    return str(own_cluster.cluster.scheduler_address)


def test_without_a_scheduler_the_engine_starts_single_threaded_local_workers(own_cluster: DaskEngine) -> None:
    threads = own_cluster.client.nthreads()
    assert list(threads.values()) == [1, 1]
    assert all(address.startswith("tcp://127.0.0.1:") for address in threads)
    assert own_cluster.workers == 2 and own_cluster.window == 4


def _both(registry: Registry, folder: Path, source: Path, name: str, **options: object) -> tuple[Path, Path]:
    common = dict(service=registry.service, id_column="tx_id", keep=["note"], scored_at=STAMP, **options)
    scheduler = common.pop("scheduler", None)
    local = batch.score(name, source, folder / "local.parquet", **common)  # type: ignore[arg-type]
    dask = batch.score(name, source, folder / "dask.parquet", engine="dask", scheduler=scheduler, **common)  # type: ignore[arg-type]
    assert (local.engine, dask.engine) == ("local", "dask")
    assert (local.rows, local.rejected, local.chunks) == (dask.rows, dask.rejected, dask.chunks)
    return folder / "local", folder / "dask"


@pytest.mark.parametrize("model", ["fraud", "forest"])
def test_dask_output_is_the_local_output_row_for_row(
    registry: Registry, tmp_path: Path, scheduler: str, model: str
) -> None:
    rows, source = _rows_with_bad_values(tmp_path)
    local, dask = _both(registry, tmp_path, source, model, chunk_rows=250, scheduler=scheduler)
    local_scores = pd.read_parquet(local.with_suffix(".parquet"))
    pd.testing.assert_frame_equal(local_scores, pd.read_parquet(dask.with_suffix(".parquet")), check_exact=True)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "local.rejects.parquet"),
        pd.read_parquet(tmp_path / "dask.rejects.parquet"),
        check_exact=True,
    )
    check_scores(registry, local_scores, rows.drop(index=[3, 700, 701, 1500, 1999]), model=model)


def test_unreachable_scheduler_names_the_address(registry: Registry, tmp_path: Path) -> None:
    import dask

    with (
        dask.config.set({"distributed.comm.timeouts.connect": "1s"}),
        pytest.raises(ShipyardError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9: "),
    ):
        batch.score("fraud", make_rows(10), tmp_path / "s.parquet", engine="dask", scheduler="tcp://127.0.0.1:9",
                    service=registry.service)  # fmt: skip
    assert list(tmp_path.iterdir()) == []
