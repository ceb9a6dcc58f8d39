"""Old against new on the same holdout, and the promotion guard.

A new version moves an alias only if its first metric is at least as good as that of the version the
alias points to now, both scored on the same holdout rows; ``force`` moves it anyway, and an alias
that does not exist yet is simply created.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shipyard.training.metrics import Metric

if TYPE_CHECKING:
    from shipyard.service import ModelService


@dataclass(frozen=True)
class Scored:
    """One version's metrics on the holdout, or why it could not be scored.

    ``roles`` say why it is in the comparison: ``new``, ``parent``, or the alias it stands behind.
    """

    ref: str
    version: int | None
    roles: tuple[str, ...]
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def label(self) -> str:
        """``fraud:2 (parent, production)``."""
        return f"{self.ref} ({', '.join(self.roles)})" if self.roles else self.ref


@dataclass(frozen=True)
class Comparison:
    """Metrics of the earlier versions and of the new one on the same holdout rows.

    >>> from shipyard.training.metrics import resolve_metric
    >>> old = Scored("fraud:1", 1, ("production",), {"accuracy": 0.80})
    >>> new = Scored("fraud:2", 2, ("new",), {"accuracy": 0.85})
    >>> c = Comparison((resolve_metric("accuracy"),), (old,), new, holdout_rows=200)
    >>> [(r.metric, r.old, r.new, round(r.change or 0, 2), r.better) for r in c.rows()]
    [('accuracy', [0.8], 0.85, 0.05, True)]
    """

    metrics: tuple[Metric, ...]
    baselines: tuple[Scored, ...]
    new: Scored
    holdout_rows: int

    def rows(self) -> list[ComparisonRow]:
        """One row per metric: the baselines' values, the new value, and the change from the first baseline."""
        rows: list[ComparisonRow] = []
        for metric in self.metrics:
            old = [b.metrics.get(metric.name) for b in self.baselines]
            new = self.new.metrics[metric.name]
            first = old[0] if old else None
            change = None if first is None else new - first
            better = None if first is None else metric.better(new, first)
            rows.append(ComparisonRow(metric.name, metric.greater_is_better, old, new, change, better))
        return rows

    def baseline(self, version: int) -> Scored | None:
        """The baseline for ``version``, if it was scored."""
        return next((b for b in self.baselines if b.version == version), None)

    def as_dict(self) -> dict[str, dict[str, float | None]]:
        """``{ref: {metric: value}}`` for every version in the comparison, the new one last."""
        return {s.ref: {m.name: s.metrics.get(m.name) for m in self.metrics} for s in (*self.baselines, self.new)}


@dataclass(frozen=True)
class ComparisonRow:
    """One metric across the compared versions."""

    metric: str
    greater_is_better: bool
    old: list[float | None]
    new: float
    change: float | None
    better: bool | None


@dataclass(frozen=True)
class Promotion:
    """What happened to the alias: moved or not, from which version to which, and why."""

    alias: str
    moved: bool
    from_version: int | None
    to_version: int
    reason: str
    forced: bool = False


def decide(
    alias: str, current: Scored | None, new: Scored, metric: Metric, *, force: bool
) -> tuple[bool, str]:
    """Whether ``new`` may take ``alias`` from ``current`` (``None``: the alias does not exist yet), and why.

    >>> from shipyard.training.metrics import resolve_metric
    >>> acc = resolve_metric("accuracy")
    >>> old = Scored("fraud:1", 1, ("production",), {"accuracy": 0.9})
    >>> decide("production", old, Scored("fraud:2", 2, ("new",), {"accuracy": 0.8}), acc, force=False)
    (False, 'accuracy 0.8 is worse than 0.9 of fraud:1 on the same holdout; use --force to move it anyway')
    >>> decide("production", old, Scored("fraud:2", 2, ("new",), {"accuracy": 0.9}), acc, force=False)[0]
    True
    """
    value = new.metrics[metric.name]
    if current is None:
        return True, f"{alias} did not exist yet"
    if current.error is not None:
        if force:
            return True, f"forced (the current version {current.ref} could not be scored: {current.error})"
        return False, (
            f"the current version {current.ref} could not be scored on this holdout ({current.error}); "
            "use --force to move it anyway"
        )
    old = current.metrics[metric.name]
    if metric.better(value, old):
        word = "equal to" if abs(value - old) <= 1e-12 else ("higher than" if value > old else "lower than")
        return True, f"{metric.name} {value:.4g} is {word} {old:.4g} of {current.ref} on the same holdout"
    text = f"{metric.name} {value:.4g} is worse than {old:.4g} of {current.ref} on the same holdout"
    if force:
        return True, f"forced: {text}"
    return False, f"{text}; use --force to move it anyway"


def apply_promotion(
    service: ModelService,
    name: str,
    alias: str,
    new: Scored,
    current: Scored | None,
    metric: Metric,
    *,
    force: bool,
) -> Promotion:
    """Decide, then move ``alias`` to the new version if allowed.

    The alias is checked again just before it moves: if someone moved it while the model trained,
    it is left alone (unless ``force``), because the comparison no longer holds.
    """
    assert new.version is not None
    allowed, reason = decide(alias, current, new, metric, force=False)
    forced = not allowed and force
    if forced:
        allowed, reason = decide(alias, current, new, metric, force=True)
    before = current.version if current is not None else None
    if allowed and not forced:
        now = service.get_model(name).aliases.get(alias)
        if now != before:
            shown = "removed" if now is None else f"moved to version {now}"
            return Promotion(alias, False, now, new.version,
                             f"{alias} was {shown} while training; compare again before promoting")
    if allowed:
        service.set_alias(name, alias, new.version)
    return Promotion(alias, allowed, before, new.version, reason, forced=forced)


def pick_current(baselines: Sequence[Scored], alias: str) -> Scored | None:
    """The baseline standing behind ``alias``, if any."""
    return next((b for b in baselines if alias in b.roles), None)
