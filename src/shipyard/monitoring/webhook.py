"""Alerts of the live monitor: fire once when a value crosses its threshold, re-arm once it is back under.

:class:`Crossings` is the state machine (no I/O, explicit values); :func:`post_alert` sends one alert to a
webhook with httpx. The live monitor posts only what :meth:`Crossings.update` says has just crossed, and
forgets a crossing whose post failed so that the next window tries again.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Hashable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shipyard.monitoring._files import private_dir

log = logging.getLogger("shipyard.monitoring")


@dataclass(frozen=True)
class Alert:
    """One threshold crossing, as posted to the webhook (``to_dict`` is the JSON body)."""

    model: str
    version: int
    kind: str
    """``"drift"`` (``feature`` is set) or ``"accuracy"`` (``metric`` is set)."""
    value: float
    threshold: float
    verdict: str
    at: str
    """When it was detected, ISO 8601 in UTC."""
    feature: str | None = None
    metric: str | None = None
    reason: str | None = None
    """Why, in the words ``shipyard monitor`` uses (drift: :func:`~shipyard.evaluation.drift.drift_sentence`)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of the webhook post."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def sentence(self) -> str:
        """One line for logs and reports.

        >>> Alert("fraud", 3, "drift", 0.31, 0.2, "alert", "2024-05-01T12:00:00+00:00", feature="amount").sentence()
        'fraud:3: drift of amount: 0.31 (threshold 0.2)'
        """
        if self.reason is not None:
            return f"{self.model}:{self.version}: {self.kind} of {self.reason}"
        subject = f"drift of {self.feature}" if self.kind == "drift" else f"live {self.metric}"
        return f"{self.model}:{self.version}: {subject}: {self.value:.4g} (threshold {self.threshold:.4g})"


class Crossings:
    """Which watched values are over their threshold: :meth:`update` is true only on the way over.

    A value that stays over does not fire again; once it is seen back under, the next crossing fires.
    ``None`` (not enough data to tell) changes nothing.

    >>> c = Crossings()
    >>> [c.update("amount", over) for over in (False, True, True, None, False, True)]
    [False, True, False, False, False, True]
    """

    def __init__(self) -> None:
        self._over: set[Hashable] = set()

    def update(self, key: Hashable, over: bool | None) -> bool:
        """Record the state of ``key``; true when it has just gone over its threshold."""
        if over is None:
            return False
        if not over:
            self._over.discard(key)
            return False
        if key in self._over:
            return False
        self._over.add(key)
        return True

    def forget(self, key: Hashable) -> None:
        """Treat ``key`` as under its threshold again (its alert could not be delivered: retry next time)."""
        self._over.discard(key)

    def is_over(self, key: Hashable) -> bool:
        """Whether ``key`` is over its threshold now."""
        return key in self._over


class SharedCrossings(Crossings):
    """:class:`Crossings` shared by the worker processes of one server through marker files in ``folder``.

    A key is over while its file exists: the worker that creates it (``O_EXCL``: one wins) posts the alert, any
    worker that sees the value back under removes it. So a crossing is posted once, whichever worker's traffic
    shows it.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> first, second = SharedCrossings(folder), SharedCrossings(folder)
    >>> first.update("amount", True), second.update("amount", True), second.update("amount", False)
    (True, False, False)
    >>> first.update("amount", True)
    True
    """

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        private_dir(folder)

    def _marker(self, key: Hashable) -> Path:
        return self.folder / hashlib.sha256(repr(key).encode()).hexdigest()[:32]

    def update(self, key: Hashable, over: bool | None) -> bool:
        if over is None:
            return False
        marker = self._marker(key)
        if not over:
            marker.unlink(missing_ok=True)
            return False
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            return False
        return True

    def forget(self, key: Hashable) -> None:
        self._marker(key).unlink(missing_ok=True)

    def is_over(self, key: Hashable) -> bool:
        return self._marker(key).exists()

    def clear(self) -> None:
        """Forget every crossing (a new server starts with none)."""
        for marker in self.folder.iterdir():
            marker.unlink(missing_ok=True)


def post_alert(url: str, alert: Alert, *, timeout_s: float = 5.0) -> bool:
    """POST ``alert`` as JSON to ``url``; true on a 2xx answer. Failures are logged, never raised."""
    import httpx

    try:
        answer = httpx.post(url, json=alert.to_dict(), timeout=timeout_s)
    except httpx.HTTPError as exc:
        log.warning("could not post the alert %r to %s: %s", alert.sentence(), url, exc)
        return False
    if not answer.is_success:
        log.warning("the webhook %s answered %d to the alert %r", url, answer.status_code, alert.sentence())
        return False
    return True
