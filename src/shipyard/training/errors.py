"""The errors training adds to :mod:`shipyard.errors`; each message says what to change."""

from __future__ import annotations

from http import HTTPStatus

from shipyard.errors import InvalidInput, ShipyardError


class InvalidSpec(InvalidInput):
    """A training spec that cannot be used: a bad or unknown field, a disallowed import path, a missing column."""


class NotIncremental(InvalidInput):
    """A model whose final estimator has no ``partial_fit``, asked to continue training."""

    def __init__(self, estimator: str, where: str = "") -> None:
        super().__init__(
            f"{estimator}{where} cannot be trained incrementally (no partial_fit); train it again with "
            "'shipyard train spec.yaml' or use an estimator such as SGDClassifier, SGDRegressor, "
            "MultinomialNB or MLPClassifier"
        )
        self.estimator = estimator


class NoNewData(ShipyardError):
    """Incremental training found nothing that the parent version has not already consumed."""

    status = HTTPStatus.CONFLICT
