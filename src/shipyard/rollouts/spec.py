"""The deployment data model: how traffic for one model name is split between its versions.

Five kinds of deployment:

- ``alias``: no split; requests follow an alias (``production`` by default), as without a deployment.
- ``pin``: every request goes to one version.
- ``ab``: requests are split by weight between two or more versions, optionally sticky on a request field.
- ``canary``: a candidate gets a growing share (``steps``) while guards on its error rate, p99 latency and
  agreement with the incumbent hold; a breach sends all traffic back, passing every step promotes it.
- ``shadow``: one primary version answers; a sample of the requests is copied to a shadow version whose
  answers are logged, never returned.

Specs are immutable and validated when built: bad values raise :class:`~shipyard.errors.InvalidInput`
with a message that names the problem and the fix.

>>> spec = DeploymentSpec(kind="ab", variants=parse_ab("3:90,4:10"), sticky="customer_id")
>>> spec.describe()
'A/B 3:90, 4:10 (sticky customer_id)'
>>> DeploymentSpec.from_json(spec.to_json()) == spec
True
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Any, Literal, get_args

from shipyard.errors import InvalidInput

Kind = Literal["alias", "pin", "ab", "canary", "shadow"]
KINDS: tuple[str, ...] = get_args(Kind)
CANARY_STATUSES = ("running", "promoted", "rolled_back")

#: Upper edges (milliseconds) of the latency histogram buckets, roughly log-spaced from 0.5 ms to 10 s.
#: Bucket ``i`` counts latencies ``<= LATENCY_BUCKETS_MS[i]`` (and above the previous edge); one more
#: bucket at the end counts everything slower than 10 s, so counters hold ``len(LATENCY_BUCKETS_MS) + 1``.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0,
    15.0, 20.0, 30.0, 40.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0,
    400.0, 500.0, 750.0, 1000.0, 1500.0, 2000.0, 3000.0, 5000.0, 7500.0, 10000.0,
)  # fmt: skip
N_BUCKETS = len(LATENCY_BUCKETS_MS) + 1

_STICKY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
_WEIGHT_TOLERANCE = 1e-6


def _fmt(number: float) -> str:
    """A number without a useless ``.0``: ``_fmt(90.0) == '90'``, ``_fmt(2.5) == '2.5'``."""
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def _version(value: Any, what: str, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise InvalidInput(f"{what} must be a version number (a whole number >= 1), got {value!r}")
    if value < (0 if allow_zero else 1):
        raise InvalidInput(f"{what} must be a version number (a whole number >= 1), got {value}")
    return int(value)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{what} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInput(f"{what} must be a finite number, got {value!r}")
    return number


@dataclass(frozen=True)
class Variant:
    """One version and its share of the traffic (percent, 0..100).

    >>> Variant(4, 10)
    Variant(version=4, weight=10.0)
    >>> Variant(4, 120)
    Traceback (most recent call last):
        ...
    shipyard.errors.InvalidInput: weight of version 4 must be between 0 and 100 (percent of traffic), got 120
    """

    version: int
    weight: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "version", _version(self.version, "variant version"))
        weight = _number(self.weight, f"weight of version {self.version}")
        if not 0 <= weight <= 100:
            raise InvalidInput(
                f"weight of version {self.version} must be between 0 and 100 (percent of traffic), got {_fmt(weight)}"
            )
        object.__setattr__(self, "weight", weight)


@dataclass(frozen=True)
class CanaryPlan:
    """A canary: the candidate's share grows through ``steps`` while the guards hold.

    ``incumbent`` 0 means "the version served now"; :meth:`ModelService.deploy` fills it in.
    Guards left at ``None`` are not checked.

    >>> plan = CanaryPlan(incumbent=3, candidate=4, steps=(5, 25, 50, 100), interval_s=600, max_error_rate=0.01)
    >>> plan.steps, plan.min_requests
    ((5.0, 25.0, 50.0, 100.0), 50)
    >>> CanaryPlan(incumbent=3, candidate=4, steps=(50, 25), interval_s=60)
    Traceback (most recent call last):
        ...
    shipyard.errors.InvalidInput: canary steps must be strictly increasing percents in (0, 100], ...; got 50,25
    """

    incumbent: int
    candidate: int
    steps: tuple[float, ...]
    interval_s: float
    max_error_rate: float | None = None
    max_p99_ms: float | None = None
    min_agreement: float | None = None
    min_requests: int = 50
    check_s: float = 1.0

    def __post_init__(self) -> None:
        incumbent = _version(self.incumbent, "canary incumbent", allow_zero=True)
        candidate = _version(self.candidate, "canary candidate")
        if incumbent == candidate:
            raise InvalidInput(
                f"the canary candidate {candidate} is already the incumbent; deploy a different version as canary"
            )
        if isinstance(self.steps, str | bytes) or not isinstance(self.steps, tuple | list):
            raise InvalidInput(f"canary steps must be a list of percents, e.g. 5,25,50,100; got {self.steps!r}")
        steps = tuple(_number(step, "canary step") for step in self.steps)
        shown = ",".join(_fmt(step) for step in steps)
        if not steps or any(not 0 < s <= 100 for s in steps) or any(a >= b for a, b in pairwise(steps)):
            raise InvalidInput(
                "canary steps must be strictly increasing percents in (0, 100], e.g. 5,25,50,100; "
                f"got {shown or 'nothing'}"
            )
        interval = _number(self.interval_s, "canary interval")
        if interval <= 0:
            raise InvalidInput(f"canary interval must be a positive duration such as 10m or 30s, got {interval:g} s")
        check = _number(self.check_s, "canary check period")
        if check <= 0:
            raise InvalidInput(f"canary check period must be a positive duration such as 1s, got {check:g} s")
        for name in ("max_error_rate", "min_agreement"):
            value = getattr(self, name)
            if value is not None:
                value = _number(value, name.replace("_", " "))
                if not 0 <= value <= 1:
                    raise InvalidInput(
                        f"{name.replace('_', ' ')} is a fraction between 0 and 1 (e.g. 0.01 for 1%), got {value:g}"
                    )
                object.__setattr__(self, name, value)
        if self.max_p99_ms is not None:
            p99 = _number(self.max_p99_ms, "max p99 latency")
            if p99 <= 0:
                raise InvalidInput(f"max p99 latency must be a positive number of milliseconds, got {p99:g}")
            object.__setattr__(self, "max_p99_ms", p99)
        if isinstance(self.min_requests, bool) or not isinstance(self.min_requests, int) or self.min_requests < 0:
            raise InvalidInput(f"min requests must be a whole number >= 0, got {self.min_requests!r}")
        object.__setattr__(self, "incumbent", incumbent)
        object.__setattr__(self, "candidate", candidate)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "interval_s", interval)
        object.__setattr__(self, "check_s", check)

    def guards(self) -> str:
        """The guards in words, e.g. ``'error rate <= 0.01, p99 <= 50 ms'`` (``'no guards'`` when none).

        >>> CanaryPlan(3, 4, (50, 100), 60, max_p99_ms=50, min_agreement=0.95).guards()
        'p99 <= 50 ms, agreement >= 0.95'
        """
        parts = []
        if self.max_error_rate is not None:
            parts.append(f"error rate <= {self.max_error_rate:g}")
        if self.max_p99_ms is not None:
            parts.append(f"p99 <= {_fmt(self.max_p99_ms)} ms")
        if self.min_agreement is not None:
            parts.append(f"agreement >= {self.min_agreement:g}")
        return ", ".join(parts) or "no guards"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_json` reads it back."""
        return {
            "incumbent": self.incumbent,
            "candidate": self.candidate,
            "steps": list(self.steps),
            "interval_s": self.interval_s,
            "max_error_rate": self.max_error_rate,
            "max_p99_ms": self.max_p99_ms,
            "min_agreement": self.min_agreement,
            "min_requests": self.min_requests,
            "check_s": self.check_s,
        }

    @classmethod
    def from_json(cls, data: Any) -> CanaryPlan:
        """Read a plan from :meth:`to_json` output; raises ``InvalidInput`` naming what is wrong."""
        if not isinstance(data, dict):
            raise InvalidInput(f"canary must be a mapping with candidate, steps and interval_s, got {data!r}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(f"unknown canary field(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        missing = [name for name in ("candidate", "steps", "interval_s") if name not in data]
        if missing:
            raise InvalidInput(f"canary is missing {', '.join(missing)}")
        return cls(**{"incumbent": 0, **data})


@dataclass(frozen=True)
class DeploymentSpec:
    """How traffic for one model name is routed; see the module docstring for the kinds.

    For a canary, ``variants`` always hold ``(incumbent, 100 - p), (candidate, p)`` for the running step's
    ``p`` (all traffic to the incumbent once rolled back, to the candidate once promoted); they are
    derived from the plan when not given.

    >>> DeploymentSpec(kind="pin", variants=(Variant(4, 100),)).describe()
    'pinned to version 4'
    >>> plan = CanaryPlan(3, 4, (5, 25, 50, 100), 600, max_error_rate=0.01)
    >>> canary = DeploymentSpec(kind="canary", canary=plan, status="running")
    >>> canary.weights()
    {3: 95.0, 4: 5.0}
    >>> canary.at_step(2, started_at=0.0).weights()
    {3: 50.0, 4: 50.0}
    >>> DeploymentSpec(kind="ab", variants=(Variant(3, 50),))
    Traceback (most recent call last):
        ...
    shipyard.errors.InvalidInput: an A/B deployment needs at least two versions, e.g. --ab 3:90,4:10
    """

    kind: Kind
    variants: tuple[Variant, ...] = ()
    alias: str | None = None
    sticky: str | None = None
    shadow: int | None = None
    sample: float = 1.0
    canary: CanaryPlan | None = None
    step: int = 0
    step_started_at: float | None = None
    status: str = "active"
    reason: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidInput(f"unknown deployment kind {self.kind!r}; use one of: {', '.join(KINDS)}")
        if isinstance(self.variants, str | bytes) or not isinstance(self.variants, tuple | list):
            raise InvalidInput(f"variants must be a list of (version, weight), got {self.variants!r}")
        object.__setattr__(self, "variants", tuple(self.variants))
        if any(not isinstance(v, Variant) for v in self.variants):
            raise InvalidInput("variants must be Variant(version, weight) values")
        versions = [v.version for v in self.variants]
        if len(set(versions)) != len(versions):
            raise InvalidInput(f"a version appears twice in the split: {', '.join(map(str, versions))}")
        if self.sticky is not None:
            if self.kind not in ("ab", "canary"):
                raise InvalidInput("--sticky only applies to A/B and canary deployments")
            if not isinstance(self.sticky, str) or not _STICKY.match(self.sticky):
                raise InvalidInput(
                    f"sticky must be the name of a request field such as customer_id, got {self.sticky!r}"
                )
        sample = _number(self.sample, "sample")
        if not 0 < sample <= 1:
            raise InvalidInput(f"sample is the fraction of requests copied to the shadow, in (0, 1]; got {sample:g}")
        object.__setattr__(self, "sample", sample)
        if self.shadow is not None and self.kind != "shadow":
            raise InvalidInput("a shadow version only applies to shadow deployments (--shadow VERSION)")
        if self.canary is not None and self.kind != "canary":
            raise InvalidInput("a canary plan only applies to canary deployments (--canary VERSION)")
        if not isinstance(self.reason, str):
            raise InvalidInput(f"reason must be text, got {self.reason!r}")
        if self.step_started_at is not None:
            object.__setattr__(self, "step_started_at", _number(self.step_started_at, "step_started_at"))
        getattr(self, f"_check_{self.kind}")()

    # -- per-kind validation -------------------------------------------------------------------------

    def _plain(self, what: str) -> None:
        if self.step != 0 or self.step_started_at is not None:
            raise InvalidInput(f"step and step_started_at only apply to canary deployments, not {what}")
        if self.status != "active":
            raise InvalidInput(f"status of a {what} deployment is 'active', got {self.status!r}")

    def _check_alias(self) -> None:
        if self.variants:
            raise InvalidInput("a deployment that follows an alias has no variants; use kind 'pin' or 'ab' instead")
        alias = "production" if self.alias is None else self.alias
        if not isinstance(alias, str) or not alias.strip():
            raise InvalidInput(f"alias must be an alias name such as production, got {self.alias!r}")
        object.__setattr__(self, "alias", alias)
        self._plain("alias")

    def _no_alias(self) -> None:
        if self.alias is not None:
            raise InvalidInput(f"alias only applies to deployments of kind 'alias', not {self.kind!r}")

    def _check_pin(self) -> None:
        self._no_alias()
        if len(self.variants) != 1 or self.variants[0].weight != 100:
            raise InvalidInput("a pinned deployment has exactly one version with weight 100, e.g. --version 4")
        self._plain("pin")

    def _check_ab(self) -> None:
        self._no_alias()
        if len(self.variants) < 2:
            raise InvalidInput("an A/B deployment needs at least two versions, e.g. --ab 3:90,4:10")
        if any(v.weight <= 0 for v in self.variants):
            raise InvalidInput("every A/B variant needs a weight above 0; drop versions that should get no traffic")
        total = sum(v.weight for v in self.variants)
        if abs(total - 100) > _WEIGHT_TOLERANCE:
            raise InvalidInput(
                f"A/B weights must add up to 100, got {_fmt(total)} "
                f"({', '.join(f'{v.version}:{_fmt(v.weight)}' for v in self.variants)})"
            )
        self._plain("A/B")

    def _check_shadow(self) -> None:
        self._no_alias()
        if self.shadow is None:
            raise InvalidInput("a shadow deployment needs the shadow version, e.g. --shadow 4")
        shadow = _version(self.shadow, "shadow version")
        object.__setattr__(self, "shadow", shadow)
        if len(self.variants) > 1 or (self.variants and self.variants[0].weight != 100):
            raise InvalidInput(
                "a shadow deployment has one primary version with weight 100 (or none: the version served now)"
            )
        if self.variants and self.variants[0].version == shadow:
            raise InvalidInput(f"version {shadow} cannot shadow itself; pick another primary with --version")
        self._plain("shadow")

    def _check_canary(self) -> None:
        self._no_alias()
        plan = self.canary
        if plan is None:
            raise InvalidInput("a canary deployment needs a canary plan (--canary VERSION --steps ... --interval ...)")
        if not isinstance(plan, CanaryPlan):
            raise InvalidInput(f"canary must be a CanaryPlan, got {plan!r}")
        status = "running" if self.status == "active" else self.status
        if status not in CANARY_STATUSES:
            raise InvalidInput(f"canary status must be one of {', '.join(CANARY_STATUSES)}, got {self.status!r}")
        object.__setattr__(self, "status", status)
        if isinstance(self.step, bool) or not isinstance(self.step, int) or not 0 <= self.step < len(plan.steps):
            raise InvalidInput(f"canary step must be an index from 0 to {len(plan.steps) - 1}, got {self.step!r}")
        expected = self._canary_variants()
        if self.variants and self.variants != expected:
            raise InvalidInput(
                "canary variants must be (incumbent, 100 - p), (candidate, p) for the running step; "
                "leave them out to derive them from the plan"
            )
        object.__setattr__(self, "variants", expected)

    def _canary_variants(self) -> tuple[Variant, ...]:
        plan = self.canary
        assert plan is not None
        if plan.incumbent == 0:
            return ()
        share = {"running": plan.steps[self.step], "promoted": 100.0, "rolled_back": 0.0}[self.status]
        return (Variant(plan.incumbent, 100.0 - share), Variant(plan.candidate, share))

    # -- queries ---------------------------------------------------------------------------------------

    def versions(self) -> list[int]:
        """Every version a server must load for this spec, sorted.

        >>> DeploymentSpec(kind="shadow", variants=(Variant(3, 100),), shadow=4).versions()
        [3, 4]
        """
        found = {v.version for v in self.variants}
        if self.shadow is not None:
            found.add(self.shadow)
        if self.canary is not None:
            found.update(v for v in (self.canary.incumbent, self.canary.candidate) if v)
        return sorted(found)

    def weights(self) -> dict[int, float]:
        """Version -> percent of the primary traffic (empty for ``alias`` and unresolved specs).

        >>> DeploymentSpec(kind="ab", variants=parse_ab("3:90,4:10")).weights()
        {3: 90.0, 4: 10.0}
        """
        return {v.version: v.weight for v in self.variants}

    @property
    def primary(self) -> int | None:
        """The version with the largest share (the incumbent of a canary, the primary of a shadow), if any."""
        if self.kind == "canary" and self.canary is not None:
            if self.status == "promoted":
                return self.canary.candidate
            return self.canary.incumbent or None
        if not self.variants:
            return None
        return max(self.variants, key=lambda v: v.weight).version

    def at_step(self, step: int, *, started_at: float | None) -> DeploymentSpec:
        """This canary at another step (its variants follow), ``reason`` cleared."""
        return replace(self, step=step, step_started_at=started_at, variants=(), reason="")

    def finished(self, status: str, reason: str) -> DeploymentSpec:
        """This canary ended as ``promoted`` or ``rolled_back``, with the reason.

        >>> plan = CanaryPlan(3, 4, (10, 100), 60)
        >>> DeploymentSpec(kind="canary", canary=plan).finished("rolled_back", "p99 too high").weights()
        {3: 100.0, 4: 0.0}
        """
        return replace(self, status=status, reason=reason, variants=())

    def resolved(self, served: int) -> DeploymentSpec:
        """Fill in the version served now where the spec left it open (canary incumbent, shadow primary).

        >>> DeploymentSpec(kind="shadow", shadow=4).resolved(3).describe()
        'version 3, shadow 4 (100% of requests)'
        """
        if self.kind == "canary" and self.canary is not None and self.canary.incumbent == 0:
            return replace(self, canary=replace(self.canary, incumbent=served), variants=())
        if self.kind == "shadow" and not self.variants:
            return replace(self, variants=(Variant(served, 100),))
        return self

    @property
    def is_resolved(self) -> bool:
        """False when the canary incumbent or the shadow primary is still "the version served now"."""
        return self.kind not in ("canary", "shadow") or bool(self.variants)

    def intent(self) -> dict[str, Any]:
        """:meth:`to_json` without the run-time state of a canary (step, status, reason): what a user asked for."""
        data = self.to_json()
        for key in ("step", "step_started_at", "status", "reason", "variants" if self.kind == "canary" else ""):
            data.pop(key, None)
        return data

    def describe(self) -> str:
        """One line for people.

        >>> DeploymentSpec(kind="alias").describe()
        'follows alias production'
        >>> plan = CanaryPlan(3, 4, (5, 25, 50, 100), 600, max_p99_ms=50)
        >>> DeploymentSpec(kind="canary", canary=plan, step=1).describe()
        'canary 4 over 3 at 25% (step 2/4, every 10m), running; guards: p99 <= 50 ms'
        """
        if self.kind == "alias":
            return f"follows alias {self.alias}"
        if self.kind == "pin":
            return f"pinned to version {self.variants[0].version}"
        if self.kind == "ab":
            split = ", ".join(f"{v.version}:{_fmt(v.weight)}" for v in self.variants)
            return f"A/B {split}" + (f" (sticky {self.sticky})" if self.sticky else "")
        if self.kind == "shadow":
            primary = f"version {self.variants[0].version}" if self.variants else "the version served now"
            return f"{primary}, shadow {self.shadow} ({_fmt(self.sample * 100)}% of requests)"
        plan = self.canary
        assert plan is not None
        incumbent = str(plan.incumbent) if plan.incumbent else "the version served now"
        share = {"running": plan.steps[self.step], "promoted": 100.0, "rolled_back": 0.0}[self.status]
        text = (
            f"canary {plan.candidate} over {incumbent} at {_fmt(share)}% "
            f"(step {self.step + 1}/{len(plan.steps)}, every {format_duration(plan.interval_s)}), "
            f"{self.status.replace('_', ' ')}; guards: {plan.guards()}"
        )
        if self.sticky:
            text += f"; sticky {self.sticky}"
        if self.reason:
            text += f"; {self.reason}"
        return text

    # -- JSON ------------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what the registry stores); :meth:`from_json` reads it back."""
        return {
            "kind": self.kind,
            "variants": [{"version": v.version, "weight": v.weight} for v in self.variants],
            "alias": self.alias,
            "sticky": self.sticky,
            "shadow": self.shadow,
            "sample": self.sample,
            "canary": self.canary.to_json() if self.canary is not None else None,
            "step": self.step,
            "step_started_at": self.step_started_at,
            "status": self.status,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: Any) -> DeploymentSpec:
        """Read a spec from :meth:`to_json` output (missing fields take their defaults).

        >>> DeploymentSpec.from_json({"kind": "pin", "variants": [{"version": 4, "weight": 100}]}).describe()
        'pinned to version 4'
        >>> DeploymentSpec.from_json({"kind": "pin", "versions": [4]})
        Traceback (most recent call last):
            ...
        shipyard.errors.InvalidInput: unknown deployment field(s): versions; known: alias, canary, kind, ...
        """
        if not isinstance(data, dict):
            raise InvalidInput(f"a deployment spec must be a mapping with a 'kind', got {data!r}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(f"unknown deployment field(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        if "kind" not in data:
            raise InvalidInput(f"a deployment spec needs a 'kind' ({', '.join(KINDS)})")
        raw_variants = data.get("variants") or []
        if not isinstance(raw_variants, list | tuple):
            raise InvalidInput(f"variants must be a list of {{version, weight}}, got {raw_variants!r}")
        variants = []
        for item in raw_variants:
            if not isinstance(item, dict) or set(item) != {"version", "weight"}:
                raise InvalidInput(f"each variant must be {{version, weight}}, got {item!r}")
            variants.append(Variant(_version(item["version"], "variant version"), item["weight"]))
        canary = data.get("canary")
        kwargs = {key: value for key, value in data.items() if key not in ("variants", "canary")}
        for key, default in (("sample", 1.0), ("step", 0), ("status", "active"), ("reason", "")):
            if kwargs.get(key) is None:
                kwargs[key] = default
        return cls(
            variants=tuple(variants),
            canary=CanaryPlan.from_json(canary) if canary is not None else None,
            **kwargs,
        )


@dataclass
class RolloutCounters:
    """What one replica saw of one version during one deployment revision (cumulative counts).

    ``agree``/``compared``: of the candidate's requests whose rows the incumbent also scored, how many got
    the same predicted label. ``latency_buckets`` counts per bucket of :data:`LATENCY_BUCKETS_MS`.

    >>> c = RolloutCounters()
    >>> for ms in [1.0] * 98 + [40.0, 900.0]:
    ...     c.observe(ms)
    >>> c.observe(3.0, error=True)
    >>> c.requests, c.errors, round(c.p99_ms(), 2), round(c.error_rate(), 4)
    (101, 1, 39.9, 0.0099)
    >>> (c + c).requests, round((c + c).p99_ms(), 2)
    (202, 39.9)
    >>> RolloutCounters().p99_ms() is None, RolloutCounters(compared=4, agree=3).agreement()
    (True, 0.75)
    """

    requests: int = 0
    errors: int = 0
    agree: int = 0
    compared: int = 0
    latency_buckets: list[int] = field(default_factory=lambda: [0] * N_BUCKETS)

    def observe(self, latency_ms: float, *, error: bool = False) -> None:
        """Count one request (its latency goes into the histogram; failures count as errors too)."""
        self.requests += 1
        if error:
            self.errors += 1
        self.latency_buckets[bucket_index(latency_ms)] += 1

    def observe_agreement(self, agreed: bool) -> None:
        """Count one comparison of the candidate's label with the incumbent's on the same rows."""
        self.compared += 1
        if agreed:
            self.agree += 1

    def p99_ms(self) -> float | None:
        """The 99th percentile latency (ms); ``inf`` when it lies past 10 s; ``None`` before the first request."""
        return self.quantile_ms(0.99)

    def quantile_ms(self, q: float) -> float | None:
        """The ``q`` quantile latency (ms), interpolated linearly inside its bucket (as Prometheus'
        ``histogram_quantile`` does), so it is exact to within the bucket's width.

        >>> c = RolloutCounters()
        >>> for ms in (12.0, 18.0, 19.0, 20.0):
        ...     c.observe(ms)
        >>> c.quantile_ms(0.5), c.quantile_ms(1.0)
        (16.666666666666668, 20.0)
        """
        total = sum(self.latency_buckets)
        if total == 0:
            return None
        rank = q * total
        seen = 0
        for index, count in enumerate(self.latency_buckets):
            if count and seen + count >= rank:
                if index >= len(LATENCY_BUCKETS_MS):
                    return math.inf
                lower = LATENCY_BUCKETS_MS[index - 1] if index else 0.0
                upper = LATENCY_BUCKETS_MS[index]
                return lower + (upper - lower) * max(0.0, rank - seen) / count
            seen += count
        return math.inf  # pragma: no cover - the loop always returns

    def error_rate(self) -> float | None:
        """Failed requests / requests, None before the first request."""
        return self.errors / self.requests if self.requests else None

    def agreement(self) -> float | None:
        """Agreeing comparisons / comparisons, None before the first comparison."""
        return self.agree / self.compared if self.compared else None

    def __add__(self, other: RolloutCounters) -> RolloutCounters:
        if not isinstance(other, RolloutCounters):
            return NotImplemented
        size = max(len(self.latency_buckets), len(other.latency_buckets))
        mine = self.latency_buckets + [0] * (size - len(self.latency_buckets))
        theirs = other.latency_buckets + [0] * (size - len(other.latency_buckets))
        return RolloutCounters(
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            agree=self.agree + other.agree,
            compared=self.compared + other.compared,
            latency_buckets=[a + b for a, b in zip(mine, theirs, strict=True)],
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "requests": self.requests,
            "errors": self.errors,
            "agree": self.agree,
            "compared": self.compared,
            "latency_buckets": list(self.latency_buckets),
            "p99_ms": self.p99_ms(),
            "error_rate": self.error_rate(),
            "agreement": self.agreement(),
        }


def bucket_index(latency_ms: float) -> int:
    """Index of the latency bucket that counts ``latency_ms`` (the last index is the overflow bucket).

    >>> bucket_index(0.1), bucket_index(0.5), bucket_index(0.6), bucket_index(50_000) == len(LATENCY_BUCKETS_MS)
    (0, 0, 1, True)
    """
    return bisect_left(LATENCY_BUCKETS_MS, latency_ms)


def parse_ab(text: str) -> tuple[Variant, ...]:
    """Parse an A/B split ``"VERSION:PERCENT,..."``; the percents must add up to 100.

    >>> parse_ab("3:90, 4:10")
    (Variant(version=3, weight=90.0), Variant(version=4, weight=10.0))
    >>> parse_ab("3:90,4:5")
    Traceback (most recent call last):
        ...
    shipyard.errors.InvalidInput: A/B weights must add up to 100, got 95 (3:90, 4:5)
    >>> parse_ab("3=90")
    Traceback (most recent call last):
        ...
    shipyard.errors.InvalidInput: invalid A/B split '3=90': expected VERSION:PERCENT pairs ..., e.g. 3:90,4:10
    """
    hint = f"invalid A/B split {text!r}: expected VERSION:PERCENT pairs separated by commas, e.g. 3:90,4:10"
    variants = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+(?:\.\d*)?|\.\d+)\s*%?\s*", part)
        if match is None:
            raise InvalidInput(hint)
        variants.append(Variant(int(match.group(1)), float(match.group(2))))
    return DeploymentSpec(kind="ab", variants=tuple(variants)).variants


def parse_steps(text: str) -> tuple[float, ...]:
    """Parse canary steps ``"5,25,50,100"`` (percents of traffic for the candidate).

    >>> parse_steps("5, 25,50,100")
    (5.0, 25.0, 50.0, 100.0)
    >>> parse_steps("5,x")
    Traceback (most recent call last):
        ...
    shipyard.errors.InvalidInput: invalid canary steps '5,x': expected increasing percents ..., e.g. 5,25,50,100
    """
    try:
        steps = tuple(float(part.strip().rstrip("%")) for part in text.split(","))
    except ValueError:
        raise InvalidInput(
            f"invalid canary steps {text!r}: expected increasing percents separated by commas, e.g. 5,25,50,100"
        ) from None
    return CanaryPlan(incumbent=0, candidate=1, steps=steps, interval_s=1.0).steps


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str | float) -> float:
    """Seconds in a duration: ``"10m"``, ``"30s"``, ``"1h"``, ``"500ms"``, ``"1m30s"``, or plain seconds ``"2.5"``.

    >>> parse_duration("10m"), parse_duration("500ms"), parse_duration("1m30s"), parse_duration("2.5")
    (600.0, 0.5, 90.0, 2.5)
    >>> parse_duration("ten minutes")
    Traceback (most recent call last):
        ...
    shipyard.errors.InvalidInput: invalid duration 'ten minutes': use a number with a unit (ms, s, m, h, d), ...
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        raw = str(text).strip().lower()
        hint = f"invalid duration {text!r}: use a number with a unit (ms, s, m, h, d), e.g. 500ms, 30s, 10m, 1h"
        try:
            seconds = float(raw)
        except ValueError:
            parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)", raw)
            if not parts or re.fullmatch(r"(?:(?:\d+(?:\.\d*)?|\.\d+)\s*(?:ms|s|m|h|d)\s*)+", raw) is None:
                raise InvalidInput(hint) from None
            seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidInput(f"invalid duration {text!r}: it must be a finite number of seconds >= 0")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest of ``"10m"``, ``"30s"``, ``"1h"``, ``"500ms"`` for a number of seconds.

    >>> format_duration(600), format_duration(0.5), format_duration(90), format_duration(3600)
    ('10m', '500ms', '90s', '1h')
    """
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    if seconds < 1:
        return f"{_fmt(round(seconds * 1000, 3))}ms"
    return f"{_fmt(seconds)}s"
