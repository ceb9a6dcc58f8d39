"""Small pieces the commands share: the service they talk to, ``KEY=VALUE`` options, ``--since`` and renamed options."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    from shipyard.service import ModelService

T = TypeVar("T")
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$")
SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


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


def renamed(new: str, new_value: T | None, old: str, old_value: T | None) -> T | None:
    """The value of option ``new`` or of its deprecated spelling ``old`` (hidden in help); both is a mistake.

    >>> renamed("--since", None, "--window", "1h")
    '1h'
    >>> renamed("--since", "1h", "--window", "2h")
    Traceback (most recent call last):
    ...
    shipyard.errors.InvalidInput: --window is the old name of --since; give only --since
    """
    if old_value is not None and new_value is not None:
        raise InvalidInput(f"{old} is the old name of {new}; give only {new}")
    return new_value if new_value is not None else old_value


def parse_duration(text: str, option: str = "--since") -> timedelta:
    """``90s``, ``15m``, ``1h``, ``2d``, ``1w`` as a timedelta.

    >>> parse_duration("1h"), parse_duration("15min")
    (datetime.timedelta(seconds=3600), datetime.timedelta(seconds=900))
    >>> parse_duration("soon")
    Traceback (most recent call last):
    ...
    shipyard.errors.InvalidInput: --since expects a duration such as 30m, 1h or 7d, got 'soon'
    """
    match = DURATION.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise InvalidInput(f"{option} expects a duration such as 30m, 1h or 7d, got {text!r}")
    return timedelta(seconds=float(match.group(1)) * SECONDS[match.group(2)])


def since_window(text: str | None, option: str = "--since") -> timedelta | None:
    """How far back ``--since`` reaches: a duration (``30m``, ``1h``, ``7d``) or an ISO time, as a timedelta.

    >>> since_window("90m")
    datetime.timedelta(seconds=5400)
    >>> since_window("soon")
    Traceback (most recent call last):
    ...
    shipyard.errors.InvalidInput: --since expects a duration such as 30m, 1h or 7d, got 'soon' (or an ISO time)
    """
    if text is None:
        return None
    from shipyard.monitoring.logs import parse_since

    if DURATION.match(text):
        return parse_duration(text, option)
    now = datetime.now(UTC)
    try:
        start = parse_since(text, now)
    except InvalidInput:
        raise InvalidInput(
            f"{option} expects a duration such as 30m, 1h or 7d, got {text!r} (or an ISO time)"
        ) from None
    if start >= now:
        raise InvalidInput(f"{option} {text!r} is not in the past; give a duration such as 1h or an earlier time")
    return now - start
