"""The drift thresholds: the one place their defaults live (no heavy imports, so settings can use them).

:mod:`shipyard.evaluation.drift` applies them; ``serve.yaml``'s ``monitoring`` section, ``shipyard monitor``
and ``shipyard report`` take their defaults from :class:`DriftThresholds`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DriftThresholds:
    """When a feature's drift warns or alerts (see the module docstring for the rule).

    The one source of the drift thresholds: ``shipyard monitor``, ``shipyard report``, the server's live
    monitor and its dashboard all take them from here (their defaults) or from the ``monitoring`` section
    of the serve config (:meth:`from_settings`), and word them with :func:`drift_threshold` and
    :func:`drift_sentence`.

    >>> DriftThresholds.from_settings(None) == DriftThresholds()
    True
    """

    psi_warn: float = 0.1
    psi_alert: float = 0.2
    p_value: float = 0.05
    min_samples: int = 100

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> DriftThresholds:
        """The thresholds of a serve config's ``monitoring`` section (any object with ``psi_warn``,
        ``psi_alert``, ``p_value``, ``min_samples``; ``None``: the defaults), then ``overrides`` that are
        not ``None`` (command-line options)."""
        values = (
            {}
            if settings is None
            else {name: getattr(settings, name) for name in ("psi_warn", "psi_alert", "p_value", "min_samples")}
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


DEFAULT_THRESHOLDS = DriftThresholds()
"""The defaults every surface starts from."""
