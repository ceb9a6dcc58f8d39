"""Production monitoring: the prediction log (writer and reader), drift and accuracy over it, reports.

* :mod:`shipyard.monitoring.predlog`: :class:`~shipyard.monitoring.predlog.PredictionLogger`, the server's
  asynchronous writer of every answered prediction and of feedback labels (Parquet files or PostgreSQL).
* :mod:`shipyard.monitoring.logs`: :class:`~shipyard.monitoring.logs.PredictionLog`, the reader (pandas frames,
  DuckDB SQL) used by ``shipyard logs``, the monitor and the reports.

Submodules are imported on demand: importing this package loads nothing heavy.
"""
