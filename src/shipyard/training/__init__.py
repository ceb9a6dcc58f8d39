"""Training from a spec: one-off (``fit``) and incremental (``partial_fit`` on new data only).

:func:`train` is the entry point (CLI: ``shipyard train spec.yaml``), :func:`load_spec` validates a
spec (:mod:`~shipyard.training.spec` describes its fields), and :func:`partial_fit` updates a fitted
model or pipeline with one batch of rows (:mod:`~shipyard.training.incremental`).

>>> from shipyard.training import load_spec
>>> load_spec({"name": "fraud", "data": {"source": "tx.parquet"}, "target": "is_fraud",
...            "estimator": {"class": "sklearn.linear_model.SGDClassifier"}}).estimator.short_name
'SGDClassifier'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shipyard._lazy import lazy_exports

if TYPE_CHECKING:
    from shipyard.training.errors import InvalidSpec, NoNewData, NotIncremental
    from shipyard.training.incremental import PartialFitReport, partial_fit
    from shipyard.training.promote import Comparison, Promotion, Scored
    from shipyard.training.spec import TrainSpec, load_spec
    from shipyard.training.trainer import TrainResult, train

__all__ = [
    "Comparison",
    "InvalidSpec",
    "NoNewData",
    "NotIncremental",
    "PartialFitReport",
    "Promotion",
    "Scored",
    "TrainResult",
    "TrainSpec",
    "load_spec",
    "partial_fit",
    "train",
]

_LAZY = {
    "Comparison": "shipyard.training.promote",
    "InvalidSpec": "shipyard.training.errors",
    "NoNewData": "shipyard.training.errors",
    "NotIncremental": "shipyard.training.errors",
    "PartialFitReport": "shipyard.training.incremental",
    "Promotion": "shipyard.training.promote",
    "Scored": "shipyard.training.promote",
    "TrainResult": "shipyard.training.trainer",
    "TrainSpec": "shipyard.training.spec",
    "load_spec": "shipyard.training.spec",
    "partial_fit": "shipyard.training.incremental",
    "train": "shipyard.training.trainer",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), __all__)
