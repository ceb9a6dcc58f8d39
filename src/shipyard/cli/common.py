"""Small pieces the commands share: the service they talk to and ``KEY=VALUE`` option parsing."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    from shipyard.service import ModelService


def get_service() -> ModelService:
    """The :class:`~shipyard.service.ModelService` that the ``SHIPYARD_*`` environment names."""
    import shipyard

    return shipyard.connect()


def parse_pairs(values: Sequence[str], option: str, form: str = "KEY=VALUE") -> dict[str, str]:
    """Turn repeated ``KEY=VALUE`` options into a dict; the first ``=`` splits.

    >>> parse_pairs(["team=risk", "note=a=b"], "--tag")
    {'team': 'risk', 'note': 'a=b'}
    >>> parse_pairs(["oops"], "--tag")
    Traceback (most recent call last):
    ...
    shipyard.errors.InvalidInput: --tag expects KEY=VALUE, got 'oops'
    """
    result: dict[str, str] = {}
    for raw in values:
        key, sep, value = raw.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidInput(f"{option} expects {form}, got {raw!r}")
        if key in result:
            raise InvalidInput(f"{option} {key} is given twice; give each key once")
        result[key] = value.strip()
    return result


def parse_metrics(values: Sequence[str]) -> dict[str, float]:
    """Parse repeated ``--metric KEY=NUMBER`` options.

    >>> parse_metrics(["auc=0.91", "rows=5000"])
    {'auc': 0.91, 'rows': 5000.0}
    >>> parse_metrics(["auc=high"])
    Traceback (most recent call last):
    ...
    shipyard.errors.InvalidInput: --metric auc must be a number, got 'high' (use KEY=NUMBER, e.g. --metric auc=0.91)
    """
    metrics: dict[str, float] = {}
    for key, text in parse_pairs(values, "--metric", "KEY=NUMBER").items():
        try:
            value = float(text)
        except ValueError:
            raise InvalidInput(
                f"--metric {key} must be a number, got {text!r} (use KEY=NUMBER, e.g. --metric auc=0.91)"
            ) from None
        if not math.isfinite(value):
            raise InvalidInput(f"--metric {key} must be a finite number, got {text!r}")
        metrics[key] = value
    return metrics
