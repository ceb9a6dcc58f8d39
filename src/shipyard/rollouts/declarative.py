"""Deployment specs from options or from a declarative file (``shipyard deploy`` and ``shipyard apply``).

One function, :func:`build_spec`, turns the fields a user gives (``version``, ``ab``, ``canary``,
``shadow``, ``alias`` and their companions) into a :class:`DeploymentSpec`; the CLI options and the
entries of a ``deployments.yaml`` file go through it, so both accept and refuse the same things.

A file maps model names to entries::

    fraud:
      canary: 4                  # or {version: 4, steps: [5, 25, 50, 100], interval: 10m, ...}
      steps: 5,25,50,100
      interval: 10m
      max_error_rate: 0.01
    churn:
      ab: "3:90,4:10"            # or {3: 90, 4: 10}
      sticky: customer_id
    spam:
      shadow: 4
      sample: 0.5
    risk:
      version: 7

A list of entries with a ``model`` key, or either form under a top-level ``deployments`` key, works too.

>>> specs = parse_deployments({"fraud": {"version": 4}, "churn": {"ab": {3: 90, 4: 10}, "sticky": "customer_id"}})
>>> {name: spec.describe() for name, spec in specs.items()}
{'fraud': 'pinned to version 4', 'churn': 'A/B 3:90, 4:10 (sticky customer_id)'}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from shipyard.errors import InvalidInput, ShipyardError
from shipyard.rollouts.spec import (
    CanaryPlan,
    DeploymentSpec,
    Variant,
    parse_ab,
    parse_duration,
    parse_steps,
)

CANARY_FIELDS = ("incumbent", "steps", "interval", "max_error_rate", "max_p99_ms", "min_agreement", "min_requests",
                 "check")
FIELDS = ("version", "ab", "sticky", "canary", "shadow", "sample", "alias", *CANARY_FIELDS)
DEFAULT_STEPS = "5,25,50,100"
DEFAULT_INTERVAL = "10m"


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().isdigit():
        raise InvalidInput(f"{what} must be a version number (a whole number >= 1), got {value!r}")
    number = int(str(value).strip())
    if number < 1:
        raise InvalidInput(f"{what} must be a version number (a whole number >= 1), got {value!r}")
    return number


def _float(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise InvalidInput(f"{what} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{what} must be a number, got {value!r}") from None


def build_spec(fields: Mapping[str, Any]) -> DeploymentSpec:
    """The spec for one model from user fields (``None`` values count as not given).

    Exactly one of ``version`` (pin), ``ab``, ``canary``, ``shadow`` or ``alias`` says the kind;
    ``version`` together with ``shadow`` names the shadow's primary. A canary without ``incumbent`` and a
    shadow without ``version`` start from the version served now (the service fills it in).

    >>> build_spec({"canary": 4, "max_p99_ms": 50}).describe()
    'canary 4 over the version served now at 5% (step 1/4, every 10m), running; guards: p99 <= 50 ms'
    >>> build_spec({"shadow": 4, "version": 3, "sample": 0.5}).describe()
    'version 3, shadow 4 (50% of requests)'
    >>> build_spec({"version": 4, "ab": "3:50,4:50"})
    Traceback (most recent call last):
        ...
    shipyard.errors.InvalidInput: give one of --version, --ab, --canary, --shadow or --alias, not --version and --ab
    >>> build_spec({"ab": "3:50,4:50", "sample": 0.5})
    Traceback (most recent call last):
        ...
    shipyard.errors.InvalidInput: --sample only applies to a shadow deployment (--shadow VERSION)
    """
    given = {key: value for key, value in fields.items() if value is not None}
    unknown = sorted(set(given) - set(FIELDS))
    if unknown:
        raise InvalidInput(f"unknown deployment field(s): {', '.join(unknown)}; known: {', '.join(FIELDS)}")
    canary = given.get("canary")
    if isinstance(canary, Mapping):  # {version: 4, steps: ..., ...} in a file
        nested = {str(k).replace("-", "_"): v for k, v in canary.items()}
        candidate = nested.pop("version", nested.pop("candidate", None))
        if candidate is None:
            raise InvalidInput("a canary mapping needs 'version', the candidate, e.g. canary: {version: 4, steps: ...}")
        clash = sorted(set(nested) & set(given))
        if clash:
            raise InvalidInput(f"canary field(s) given twice: {', '.join(clash)}")
        bad = sorted(set(nested) - set(CANARY_FIELDS))
        if bad:
            raise InvalidInput(f"unknown canary field(s): {', '.join(bad)}; known: version, {', '.join(CANARY_FIELDS)}")
        given = {**given, **nested, "canary": candidate}
    shadow = given.get("shadow")
    if isinstance(shadow, Mapping):  # {version: 4, sample: 0.5}
        nested = {str(k).replace("-", "_"): v for k, v in shadow.items()}
        if set(nested) - {"version", "sample"} or "version" not in nested:
            raise InvalidInput("a shadow mapping is {version: VERSION, sample: FRACTION}")
        if "sample" in nested and "sample" in given:
            raise InvalidInput("sample is given twice")
        given = {**given, "shadow": nested["version"], **({"sample": nested["sample"]} if "sample" in nested else {})}

    kinds = [key for key in ("version", "ab", "canary", "shadow", "alias") if key in given]
    if "shadow" in kinds and "version" in kinds:
        kinds.remove("version")
    if len(kinds) != 1:
        if not kinds:
            raise InvalidInput("say how to deploy: --version N, --ab 3:90,4:10, --canary N, --shadow N or --alias NAME")
        raise InvalidInput(
            "give one of --version, --ab, --canary, --shadow or --alias, not "
            + " and ".join(_option(kind) for kind in kinds)
        )
    kind = kinds[0]
    for key in ("sticky",):
        if key in given and kind not in ("ab", "canary"):
            raise InvalidInput("--sticky only applies to A/B and canary deployments (--ab, --canary)")
    if "sample" in given and kind != "shadow":
        raise InvalidInput("--sample only applies to a shadow deployment (--shadow VERSION)")
    stray = [key for key in CANARY_FIELDS if key in given and kind != "canary"]
    if stray:
        raise InvalidInput(f"{', '.join(_option(key) for key in stray)} only apply to a canary deployment (--canary)")

    if kind == "version":
        return DeploymentSpec(kind="pin", variants=(Variant(_int(given["version"], "--version"), 100),))
    if kind == "alias":
        alias = given["alias"]
        if not isinstance(alias, str):
            raise InvalidInput(f"--alias must be an alias name such as production, got {alias!r}")
        from shipyard.types import validate_name

        return DeploymentSpec(kind="alias", alias=validate_name(alias, "alias"))
    if kind == "ab":
        return DeploymentSpec(kind="ab", variants=_ab(given["ab"]), sticky=given.get("sticky"))
    if kind == "shadow":
        primary = (Variant(_int(given["version"], "--version"), 100),) if "version" in given else ()
        return DeploymentSpec(
            kind="shadow",
            variants=primary,
            shadow=_int(given["shadow"], "--shadow"),
            sample=_float(given.get("sample", 1.0), "--sample"),
        )
    steps = given.get("steps", DEFAULT_STEPS)
    plan = CanaryPlan(
        incumbent=_int(given["incumbent"], "--incumbent") if "incumbent" in given else 0,
        candidate=_int(given["canary"], "--canary"),
        steps=parse_steps(steps) if isinstance(steps, str) else _steps(steps),
        interval_s=parse_duration(given.get("interval", DEFAULT_INTERVAL)),
        max_error_rate=_maybe(given, "max_error_rate"),
        max_p99_ms=_maybe(given, "max_p99_ms"),
        min_agreement=_maybe(given, "min_agreement"),
        min_requests=_count(given.get("min_requests", 50)),
        check_s=parse_duration(given.get("check", "1s")),
    )
    return DeploymentSpec(kind="canary", canary=plan, sticky=given.get("sticky"), status="running")


def _maybe(given: Mapping[str, Any], key: str) -> float | None:
    return _float(given[key], _option(key)) if key in given else None


def _count(value: Any) -> int:
    if isinstance(value, bool) or not str(value).strip().isdigit():
        raise InvalidInput(f"--min-requests must be a whole number >= 0, got {value!r}")
    return int(str(value).strip())


def _steps(value: Any) -> tuple[float, ...]:
    if not isinstance(value, list | tuple):
        raise InvalidInput(f"canary steps must be a list of percents, e.g. [5, 25, 50, 100]; got {value!r}")
    return parse_steps(",".join(str(v) for v in value))


def _ab(value: Any) -> tuple[Variant, ...]:
    if isinstance(value, str):
        return parse_ab(value)
    if isinstance(value, Mapping):
        return parse_ab(",".join(f"{k}:{v}" for k, v in value.items()))
    if isinstance(value, list | tuple):
        parts = []
        for item in value:
            if not isinstance(item, Mapping) or set(item) != {"version", "weight"}:
                raise InvalidInput(f"each A/B entry must be {{version, weight}}, got {item!r}")
            parts.append(f"{item['version']}:{item['weight']}")
        return parse_ab(",".join(parts))
    raise InvalidInput(f"ab must be 'VERSION:PERCENT,...' or a mapping version -> percent, got {value!r}")


class DeploymentFileError(InvalidInput):
    """Every problem of a deployments file, one line each (``problems``), naming the model or entry it is in."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def parse_deployments(data: Any) -> dict[str, DeploymentSpec]:
    """Every model's spec from a parsed deployments file; :class:`DeploymentFileError` lists every problem.

    >>> parse_deployments([{"model": "fraud", "shadow": {"version": 4, "sample": 0.25}}])["fraud"].describe()
    'the version served now, shadow 4 (25% of requests)'
    >>> parse_deployments({"fraud": {"ab": "3:90,4:5"}})
    Traceback (most recent call last):
        ...
    shipyard.rollouts.declarative.DeploymentFileError: deployment of 'fraud': A/B weights must add up to 100, ...
    """
    specs, problems = check_deployments(data)
    if problems:
        raise DeploymentFileError(problems)
    return specs


def check_deployments(
    data: Any, verify: Callable[[str, DeploymentSpec], None] | None = None
) -> tuple[dict[str, DeploymentSpec], list[str]]:
    """The specs of the valid entries of a parsed deployments file and one problem line per invalid entry, in
    the file's order. ``verify(name, spec)`` checks each valid entry further (e.g. against the registry); a
    :class:`~shipyard.errors.ShipyardError` it raises is that entry's problem.

    >>> specs, problems = check_deployments({"fraud": {"version": 4}, "churn": {"ab": "1:50"}, "Bad Name": 3})
    >>> list(specs), len(problems), problems[0]
    (['fraud'], 2, "deployment of 'churn': an A/B deployment needs at least two versions, e.g. --ab 3:90,4:10")
    >>> problems[1].startswith("deployment of 'Bad Name': invalid model name")
    True
    """
    if isinstance(data, Mapping) and set(data) == {"deployments"}:
        data = data["deployments"]
    problems: list[str] = []
    entries: list[tuple[str, Any]]
    if isinstance(data, Mapping):
        entries = [(str(name), entry) for name, entry in data.items()]
    elif isinstance(data, list):
        entries = []
        for index, item in enumerate(data, 1):
            if not isinstance(item, Mapping) or not isinstance(item.get("model", item.get("name")), str):
                problems.append(f"entry {index} of the deployments list needs a 'model' name, got {item!r}")
                continue
            rest = {k: v for k, v in item.items() if k not in ("model", "name")}
            entries.append((str(item.get("model", item.get("name"))), rest))
    else:
        raise DeploymentFileError(
            [
                "a deployments file maps model names to deployments, e.g. 'fraud: {version: 4}', or lists entries "
                "with a 'model' key"
            ]
        )
    if not entries and not problems:
        raise DeploymentFileError(["the deployments file names no model"])
    specs: dict[str, DeploymentSpec] = {}
    seen: set[str] = set()
    from shipyard.types import validate_name

    for name, entry in entries:
        try:
            validate_name(name, "model")
            if name in seen:
                raise InvalidInput("the model appears twice in the file")
            seen.add(name)
            if isinstance(entry, int | str) and not isinstance(entry, bool):
                entry = {"version": entry}  # fraud: 4
            if not isinstance(entry, Mapping):
                raise InvalidInput(f"expected a mapping such as {{version: 4}}, got {entry!r}")
            spec = build_spec({str(k).replace("-", "_"): v for k, v in entry.items()})
            if verify is not None:
                verify(name, spec)
            specs[name] = spec
        except ShipyardError as exc:
            problems.append(f"deployment of {name!r}: {exc.message}")
    return specs, problems
