"""The training spec: what to read, what to predict, which model to fit and how to judge it.

A spec is YAML (or a dict) validated with pydantic; a bad spec raises one :class:`InvalidSpec` whose
message names the field. Relative data paths in a spec file are relative to the file's folder.

.. code-block:: yaml

    name: fraud
    data:
      source: data/                 # file, folder, glob, sqlite:///x.db?table=tx, duckdb:///x.duckdb?table=tx
      query: null                   # optional SQL query (databases)
      incremental:                  # how --incremental finds new data: one of
        new_files: true             #   files not consumed by the parent version
        # watermark: event_time     #   rows whose column is above the parent's recorded maximum
    target: is_fraud
    features: [amount, merchant_risk, hour]   # default: every column but the target and the watermark
    preprocess:
      - class: sklearn.preprocessing.StandardScaler
    estimator:
      class: sklearn.linear_model.SGDClassifier
      params: {loss: log_loss, random_state: 0}
    validation:
      holdout: 0.2                  # fraction of the rows, split with seed; or holdout_source: holdout.parquet
      seed: 0
    metrics: [accuracy, f1, roc_auc] # sklearn scorer or metric names; the first decides promotion
    chunk_rows: 100000
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shipyard.data.base import DEFAULT_CHUNK_ROWS
from shipyard.errors import InvalidName, NotFound
from shipyard.training.errors import InvalidSpec
from shipyard.types import validate_name

_IMPORT_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_MAX_SHOWN = 3


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Component(_Strict):
    """A class to build, by import path, with constructor parameters.

    A parameter that is itself a mapping with a ``class`` key (and optional ``params``) is built the
    same way, so a ``ColumnTransformer`` or a wrapped estimator can be written in YAML.
    """

    class_: str = Field(alias="class")
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("class_")
    @classmethod
    def _dotted(cls, value: str) -> str:
        if not _IMPORT_PATH.fullmatch(value):
            raise ValueError(f"{value!r} is not an import path such as sklearn.linear_model.SGDClassifier")
        return value

    @property
    def short_name(self) -> str:
        """The class name without its module, e.g. ``SGDClassifier``."""
        return self.class_.rsplit(".", 1)[1]


class Incremental(_Strict):
    """How ``--incremental`` finds the data that the parent version has not seen: exactly one way."""

    new_files: bool = False
    watermark: str | None = None

    @model_validator(mode="after")
    def _one_way(self) -> Incremental:
        if self.new_files and self.watermark:
            raise ValueError("give either new_files: true or watermark: COLUMN, not both")
        if not self.new_files and not self.watermark:
            raise ValueError("give new_files: true or watermark: COLUMN")
        return self


class DataSpec(_Strict):
    """Where the training rows come from."""

    source: str
    query: str | None = None
    incremental: Incremental | None = None

    @field_validator("source")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the data source is empty; give a file, folder, glob or database URL")
        return value.strip()


class Validation(_Strict):
    """The holdout every version is scored on: a seeded fraction of the rows, or a separate source."""

    holdout: float = Field(default=0.2, gt=0.0, lt=1.0)
    holdout_source: str | None = None
    seed: int = 0


class TrainSpec(_Strict):
    """A validated training spec (see the module documentation for the YAML form).

    >>> spec = TrainSpec.model_validate({
    ...     "name": "fraud", "data": {"source": "tx.parquet"}, "target": "is_fraud",
    ...     "estimator": {"class": "sklearn.linear_model.SGDClassifier", "params": {"random_state": 0}},
    ... })
    >>> spec.estimator.short_name, spec.validation.holdout, spec.metrics
    ('SGDClassifier', 0.2, [])
    """

    name: str
    data: DataSpec
    target: str
    features: list[str] | None = None
    preprocess: list[Component] = Field(default_factory=list)
    estimator: Component
    validation: Validation = Field(default_factory=Validation)
    metrics: list[str] = Field(default_factory=list)
    chunk_rows: int = Field(default=DEFAULT_CHUNK_ROWS, gt=0)
    base_dir: Path | None = Field(default=None, exclude=True)
    """The folder relative data paths are read from (the spec file's folder); not part of the YAML."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        try:
            return validate_name(value, "model")
        except InvalidName as exc:
            raise ValueError(exc.message) from None

    @field_validator("features")
    @classmethod
    def _features(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("the list of features is empty; leave it out to use every column but the target")
            repeated = sorted({f for f in value if value.count(f) > 1})
            if repeated:
                raise ValueError(f"{repeated[0]!r} is listed twice")
        return value

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: list[str]) -> list[str]:
        repeated = sorted({m for m in value if value.count(m) > 1})
        if repeated:
            raise ValueError(f"{repeated[0]!r} is listed twice")
        return value

    @model_validator(mode="after")
    def _columns_distinct(self) -> TrainSpec:
        watermark = self.data.incremental.watermark if self.data.incremental else None
        if self.features is not None:
            for column, role in ((self.target, "the target"), (watermark, "the watermark column")):
                if column is not None and column in self.features:
                    raise ValueError(f"features lists {column!r}, which is {role}; leave it out of the features")
        return self

    @property
    def watermark(self) -> str | None:
        """The watermark column, when new data is found by one."""
        return self.data.incremental.watermark if self.data.incremental else None

    def resolve(self, location: str) -> str:
        """``location`` (a path or a database URL from this spec) with a relative path made absolute
        against :attr:`base_dir`.

        >>> spec = TrainSpec.model_validate({"name": "m", "data": {"source": "d/"}, "target": "y",
        ...                                  "estimator": {"class": "sklearn.linear_model.Ridge"},
        ...                                  "base_dir": "/proj"})
        >>> spec.resolve("d/"), spec.resolve("sqlite:///x.db?table=t"), spec.resolve("/abs/x.csv")
        ('/proj/d/', 'sqlite:////proj/x.db?table=t', '/abs/x.csv')
        """
        if self.base_dir is None:
            return location
        match = _URL.match(location)
        if match is None:
            path = Path(os.path.expanduser(location))
            if path.is_absolute():
                return location
            return os.path.join(self.base_dir, location)
        scheme = match.group(1).lower()
        prefix = f"{match.group(1)}:///"
        if scheme.startswith(("sqlite", "duckdb")) and location.startswith(prefix):
            rest = location[len(prefix):]
            if rest and not rest.startswith(("/", "?", ":memory:", "file:")):
                return f"{prefix}{self.base_dir / rest}"
        return location


def load_spec(spec: str | os.PathLike[str] | Mapping[str, Any] | TrainSpec) -> TrainSpec:
    """A :class:`TrainSpec` from a YAML file, a mapping, or a spec (returned as it is).

    Relative data paths in a YAML file are read from the file's folder; in a mapping, from the current
    folder (or from ``base_dir`` if the mapping gives one).

    >>> load_spec({"name": "fraud", "data": {"source": "x.csv"}, "target": "y",
    ...            "estimator": {"class": "sklearn.linear_model.SGDClassifier"}, "epochs": 3})
    Traceback (most recent call last):
    ...
    shipyard.training.errors.InvalidSpec: invalid training spec: unknown field 'epochs'; the fields here are: ...
    """
    if isinstance(spec, TrainSpec):
        return spec
    if isinstance(spec, Mapping):
        return _validate(dict(spec), "training spec")
    path = Path(spec).expanduser()
    if not path.is_file():
        raise NotFound(f"no training spec at {path}; give the path of a YAML file")
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidSpec(f"{path} is not valid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidSpec(f"cannot read the training spec {path}: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidSpec(f"{path} must hold a mapping of fields (name, data, target, estimator, ...)")
    if "base_dir" in data:  # set from the file's location, never written in it
        raise InvalidSpec(f"invalid {path}: unknown field 'base_dir'; relative paths are read from the spec's folder")
    data["base_dir"] = path.resolve().parent
    return _validate(data, str(path))


def _validate(data: dict[str, Any], what: str) -> TrainSpec:
    try:
        return TrainSpec.model_validate(data)
    except ValidationError as exc:
        raise InvalidSpec(f"invalid {what}: {describe_errors(exc)}") from None


def describe_errors(exc: ValidationError) -> str:
    """Pydantic's errors as one line, each naming its field (at most three shown)."""
    shown: list[str] = []
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")  # a typo explains a "missing"
    for error in errors[:_MAX_SHOWN]:
        field = _dotted(error["loc"])
        kind = error["type"]
        if kind == "extra_forbidden":
            parent = error["loc"][:-1]
            allowed = _fields_at(parent)
            listing = f"; the fields here are: {', '.join(allowed)}" if allowed else ""
            shown.append(f"unknown field {field!r}{listing}")
        elif kind == "missing":
            shown.append(f"field {field!r} is required")
        else:
            message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
            shown.append(f"{field}: {message}" if field else message)
    if len(errors) > _MAX_SHOWN:
        shown.append(f"and {len(errors) - _MAX_SHOWN} more")
    return "; ".join(shown)


def _dotted(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + ("class" if part == "class_" else part)
    return text


def _fields_at(loc: tuple[int | str, ...]) -> list[str]:
    """The YAML field names of the model found at ``loc`` inside a spec."""
    model: Any = TrainSpec
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part if part != "class" else "class_")
        if info is None:
            return []
        model = _model_of(info.annotation)
        if model is None:
            return []
    return [info.alias or name for name, info in model.model_fields.items() if name != "base_dir"]


def _model_of(annotation: Any) -> Any:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None
