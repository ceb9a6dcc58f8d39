"""A registered model version, loaded and bound to its signature."""

from __future__ import annotations

from typing import Any

import numpy as np

from shipyard.flavors.base import Features, LoadedModel
from shipyard.registry.entities import ModelVersion
from shipyard.signature import Signature


class Model:
    """A loaded model version that checks its input against the signature before it predicts.

    Obtain one with :func:`shipyard.load`. Input may be a DataFrame, a list of records, a dict of
    columns or an array; it is validated once and passed to the model in the training layout.
    """

    def __init__(self, info: ModelVersion, loaded: LoadedModel) -> None:
        self.info = info
        self.loaded = loaded
        self.signature: Signature | None = Signature.from_dict(info.signature) if info.signature else None
        self._takes_arrays: bool | None = None

    @property
    def name(self) -> str:
        """The registered model's name."""
        return self.info.name

    @property
    def version(self) -> int:
        """The version number that was loaded."""
        return self.info.version

    @property
    def flavor(self) -> str:
        """The flavor that stored and loaded the model."""
        return self.info.flavor

    @property
    def classes(self) -> list[Any] | None:
        """Class labels in ``predict_proba`` column order, for classifiers."""
        return self.loaded.classes

    @property
    def has_predict_proba(self) -> bool:
        """Whether :meth:`predict_proba` is available."""
        return self.loaded.has_predict_proba

    @property
    def raw(self) -> Any:
        """The underlying model object (a scikit-learn pipeline, an ONNX session, ...)."""
        return self.loaded.model

    def prepare(self, data: Any, *, allow_extra: bool = False, first_row: int = 0) -> Features:
        """Validate ``data`` against the signature and shape it for the model.

        ``first_row`` numbers the rows in error messages, for data that is one chunk of a larger source.
        """
        if self.signature is None:
            if isinstance(data, np.ndarray):
                return data
            import pandas as pd

            return data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
        return self.signature.validate(data, allow_extra=allow_extra, first_row=first_row)

    @property
    def takes_arrays(self) -> bool:
        """Whether :meth:`features` gives plain float arrays: every input is a float64 and the model scores
        arrays in training column order exactly as it scores frames."""
        if self._takes_arrays is None:
            self._takes_arrays = bool(
                self.signature is not None
                and self.signature.all_float
                and getattr(self.loaded, "takes_arrays", False)
            )
        return self._takes_arrays

    def features(self, data: Any, *, allow_extra: bool = False) -> Features:
        """Like :meth:`prepare`, in the cheapest form the model takes: a float array (rows, inputs) where
        :attr:`takes_arrays`, else the frame. What a server scores and logs."""
        if not self.takes_arrays:
            return self.prepare(data, allow_extra=allow_extra)
        assert self.signature is not None
        return self.signature.validate(data, allow_extra=allow_extra, as_array=True)

    def predict(self, data: Any, *, allow_extra: bool = False) -> np.ndarray[Any, Any]:
        """One prediction per input row."""
        return self.loaded.predict(self.prepare(data, allow_extra=allow_extra))

    def predict_proba(self, data: Any, *, allow_extra: bool = False) -> np.ndarray[Any, Any]:
        """Class probabilities, one row per input row and one column per class."""
        return self.loaded.predict_proba(self.prepare(data, allow_extra=allow_extra))

    def __repr__(self) -> str:
        return f"Model({self.info.ref}, flavor={self.flavor!r})"
