"""Batch scoring: a registered model over a table of any size, with bounded memory, on one machine or Dask.

::

    from shipyard.batch import score

    result = score("fraud@production", "tx.parquet", "scores.parquet", id_column="tx_id", keep=["amount"])
    print(result.rows, result.rows_per_second, result.rejected)

* :mod:`shipyard.batch.run` -- :func:`score`, the job from input to published output;
* :mod:`shipyard.batch.chunks` -- validating and scoring one chunk, rejected rows;
* :mod:`shipyard.batch.engines` -- the local (threads) and Dask engines;
* :mod:`shipyard.batch.sinks` -- Parquet/CSV files and SQL tables, staging, atomic publishing, resume;
* :mod:`shipyard.batch.job` -- the job id and manifest.

The command line is ``shipyard batch score`` (:mod:`shipyard.cli.batch`).
"""

from __future__ import annotations

from shipyard.batch.run import DEFAULT_CHUNK_ROWS, BatchResult, score

__all__ = ["DEFAULT_CHUNK_ROWS", "BatchResult", "score"]
