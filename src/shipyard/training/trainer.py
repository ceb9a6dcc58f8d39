"""Train from a spec, one-off or incrementally, register the result with its lineage, compare, promote.

* **One-off** (:func:`train`): read the source in chunks, hold out a seeded fraction of the rows (or
  read ``validation.holdout_source``), ``fit`` the spec's estimator or pipeline on the rest, score it
  on the holdout, and register it with its metrics, params, signature and lineage (the source, its
  fingerprint, the files read and the watermark reached).
* **Incremental** (``incremental=True``): load the ``from_ref`` version, read only the data it has not
  consumed (new files, or rows past its watermark), update it with ``partial_fit`` chunk by chunk
  (:mod:`shipyard.training.incremental`) and register it as a child of that version.

Either way the earlier versions (the parent, the version behind the alias to promote, or else the
production or latest version) are scored on the same holdout, and ``promote`` moves the alias only if
the new version is at least as good on the first metric (``force`` moves it regardless).
A version is registered only once everything before it has succeeded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from shipyard.errors import InvalidInput, ModelNotFound, ShipyardError
from shipyard.training.components import build_model, encode_text_columns
from shipyard.training.errors import InvalidSpec, NoNewData
from shipyard.training.incremental import PartialFitReport, check_incremental, final_estimator, partial_fit
from shipyard.training.metrics import Metric, evaluate, evaluate_version, resolve_metrics
from shipyard.training.promote import Comparison, Promotion, Scored, apply_promotion, pick_current
from shipyard.training.reading import (
    FileSelection,
    Splitter,
    TrainingStream,
    above_watermark,
    is_url,
    open_training_source,
    read_holdout,
    select_new_files,
    shown_location,
    source_files,
    training_columns,
    watermark_value,
)
from shipyard.training.spec import TrainSpec, load_spec
from shipyard.types import validate_name

if TYPE_CHECKING:
    from shipyard.registry import ModelVersion
    from shipyard.scoring import Model
    from shipyard.service import ModelService

Mode = Literal["one-off", "incremental"]
Progress = Callable[[str], None]
PROFILE_ROWS = 100_000  # rows of new data an incremental run keeps for the version's reference profile
"""Rows of training data kept to infer the signature and the stored input example."""


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` did: the registered version, its metrics, the comparison and the promotion."""

    version: ModelVersion
    mode: Mode
    metrics: dict[str, float]
    comparison: Comparison
    promotion: Promotion | None = None
    parent: ModelVersion | None = None
    rows: int = 0
    """Rows trained on (the holdout excluded)."""
    holdout_rows: int = 0
    files_read: tuple[str, ...] = ()
    """Files opened by this run (new files only, in incremental mode)."""
    report: PartialFitReport | None = None
    """For incremental training: the pipeline steps updated and those left frozen."""
    notes: tuple[str, ...] = ()

    @property
    def frozen_steps(self) -> tuple[str, ...]:
        """Pipeline steps without ``partial_fit`` that incremental training left as they were."""
        return self.report.frozen if self.report else ()


def train(
    spec: TrainSpec | Mapping[str, Any] | str | os.PathLike[str],
    *,
    promote: str | None = None,
    force: bool = False,
    incremental: bool = False,
    from_ref: str | None = None,
    service: ModelService | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train the model a spec (YAML path, mapping or :class:`TrainSpec`) describes and register it.

    ``promote`` names an alias to move to the new version if it is at least as good as the alias's
    current version on the same holdout (``force`` moves it regardless). ``incremental`` continues
    ``from_ref`` (default: the spec's model, production alias else latest) on new data only.
    ``service`` defaults to :func:`shipyard.connect`; ``progress`` receives status lines.

    >>> import tempfile, pathlib, numpy as np, pandas as pd
    >>> from shipyard.registry import ArtifactStore, MetadataStore
    >>> from shipyard.service import ModelService
    >>> home = pathlib.Path(tempfile.mkdtemp())
    >>> service = ModelService(MetadataStore(f"sqlite:///{home}/r.db"), ArtifactStore(str(home / "a")))
    >>> rng = np.random.default_rng(0)
    >>> frame = pd.DataFrame({"x": rng.normal(size=400)}).assign(y=lambda d: (d.x > 0).astype(int))
    >>> frame.to_parquet(home / "tx.parquet")
    >>> spec = {"name": "toy", "data": {"source": str(home / "tx.parquet")}, "target": "y",
    ...         "estimator": {"class": "sklearn.linear_model.LogisticRegression"}, "metrics": ["accuracy"]}
    >>> result = train(spec, promote="production", service=service)
    >>> result.version.ref, result.metrics["accuracy"] > 0.9, result.promotion.moved
    ('toy:1', True, True)
    >>> result.version.lineage["files"] == [str((home / "tx.parquet").resolve())]
    True
    """
    spec = load_spec(spec)
    if promote is not None:
        validate_name(promote, "alias")
    if force and promote is None:
        raise InvalidInput("force only applies when promoting; pass promote=ALIAS too (CLI: --promote ALIAS --force)")
    if from_ref is not None and not incremental:
        raise InvalidInput("from_ref only applies to incremental training; pass incremental=True (CLI: --incremental)")
    if service is None:
        import shipyard

        service = shipyard.connect()
    run = _Run(spec, service, progress or (lambda _line: None))
    if incremental:
        return run.incremental(from_ref, promote, force)
    return run.one_off(promote, force)


class _Run:
    """One training run: the spec, the registry, and the steps both modes share."""

    def __init__(self, spec: TrainSpec, service: ModelService, progress: Progress) -> None:
        self.spec = spec
        self.service = service
        self.say = progress
        self.trusted = tuple(service.trusted_types)
        self.shown = shown_location(spec.resolve(spec.data.source))

    # ------------------------------------------------------------------ the two modes
    def one_off(self, promote: str | None, force: bool) -> TrainResult:
        spec = self.spec
        model = build_model(spec, self.trusted)
        metrics = resolve_metrics(spec.metrics, model)
        source = open_training_source(spec)
        features = training_columns(spec, source.column_names, source.uri)
        columns = self._columns(features)
        splitter, fixed_holdout = self._holdout_plan(columns)
        fingerprint = source.fingerprint()
        stream = TrainingStream(source, columns, chunk_rows=spec.chunk_rows, splitter=splitter,
                                watermark=spec.watermark)
        self.say(f"Reading {self.shown}")
        parts = list(stream)
        if not parts:
            where = " outside the holdout" if stream.rows else ""
            raise InvalidInput(f"{self.shown} has no rows to train on{where}")
        frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        del parts
        X, y = frame[features], frame[spec.target]
        notes: list[str] = []
        if spec.features is None:
            model, text = encode_text_columns(model, X)
            if text:
                notes.append(f"text columns one-hot encoded: {', '.join(text)} (list features: to choose columns)")
        self.say(f"Training {_describe(model)} on {len(frame):,} rows")
        _fit(model, X, y)
        holdout = fixed_holdout if fixed_holdout is not None else stream.holdout()
        lineage: dict[str, Any] = {"source": self.shown, "fingerprint": fingerprint, "rows": stream.rows}
        files = source_files(source)
        if files:
            lineage["files"] = files
        return self._finish(  # all of X: register profiles (a sample of) the training rows
            model, metrics, features, X, y, holdout, lineage, stream,
            mode="one-off", parent=None, promote=promote, force=force, rows=len(frame),
            files_read=tuple(files), report=None, notes=tuple(notes),
        )

    def incremental(self, from_ref: str | None, promote: str | None, force: bool) -> TrainResult:
        spec = self.spec
        how = spec.data.incremental
        if how is None:
            raise InvalidSpec(
                "data.incremental: incremental training needs to know which data is new; add "
                "'incremental: {new_files: true}' (files) or 'incremental: {watermark: COLUMN}' under data"
            )
        parent = self.service.resolve(from_ref or spec.name)
        if parent.name != spec.name:
            raise InvalidInput(
                f"{from_ref} (--from) is a version of {parent.name!r} but the spec trains {spec.name!r}; "
                "incremental training adds a version to the same model"
            )
        loaded = self.service.load(parent.ref)
        model = loaded.raw
        check_incremental(model)  # before looking for new data: without partial_fit no data would help
        location = spec.resolve(spec.data.source)
        selection = self._new_files(location, parent) if how.new_files else None
        mark: Any = None if how.new_files else self._watermark_of(parent)
        notes: list[str] = []
        last = type(final_estimator(model)).__name__
        if last != spec.estimator.short_name:
            notes.append(f"the spec names {spec.estimator.short_name} but {parent.ref} is a {last}; "
                         f"{parent.ref} was trained further as it is")
        metrics = resolve_metrics(spec.metrics, model)
        inherited = loaded.signature.column_names if loaded.signature is not None else []
        if selection is not None:
            from shipyard.data import open_source

            source = open_source([str(p) for p in selection.new_files])
            fingerprint = selection.fingerprint()
            self.say(f"{len(selection.new_files)} new of {len(selection.all_files)} files in {self.shown} "
                     f"since {parent.ref}")
        else:
            base = open_training_source(spec)
            fingerprint = base.fingerprint()
            source = above_watermark(base, how.watermark or "", mark)
            self.say(f"Reading rows of {self.shown} with {how.watermark} > {mark} (the watermark of {parent.ref})")
        features = training_columns(spec, source.column_names, self.shown, inherited)
        if inherited and features != list(inherited):
            raise InvalidSpec(
                f"features: {parent.ref} was trained on {', '.join(inherited)}; incremental training must use "
                "the same columns in the same order (leave features out to use the parent's)"
            )
        columns = self._columns(features)
        splitter, fixed_holdout = self._holdout_plan(columns)
        stream = TrainingStream(source, columns, chunk_rows=spec.chunk_rows, splitter=splitter,
                                watermark=spec.watermark, mark=mark)
        self.say(f"Training {parent.ref} ({_describe(model)}) further with partial_fit, "
                 f"{spec.chunk_rows:,} rows at a time")
        report = PartialFitReport(0, (), ())
        sample: tuple[pd.DataFrame, pd.Series] | None = None
        for part in stream:
            X, y = part[features], part[spec.target]
            report += _partial_fit(model, X, y)
            if sample is None:
                sample = (X.head(PROFILE_ROWS), y.head(PROFILE_ROWS))
            elif len(sample[0]) < PROFILE_ROWS:  # the new rows register profiles, up to PROFILE_ROWS of them
                room = PROFILE_ROWS - len(sample[0])
                sample = (pd.concat([sample[0], X.head(room)]), pd.concat([sample[1], y.head(room)]))
        if stream.rows == 0:
            raise NoNewData(
                f"no rows of {self.shown} have {how.watermark} > {mark} (the watermark of {parent.ref}); "
                "nothing was registered"
            )
        if sample is None:
            raise InvalidInput(
                f"all {stream.rows} new rows went to the holdout (validation.holdout "
                f"{spec.validation.holdout}); nothing was trained or registered, wait for more data"
            )
        if report.frozen:
            notes.append(f"left as they were (no partial_fit): {', '.join(report.frozen)}")
        holdout = fixed_holdout if fixed_holdout is not None else stream.holdout()
        lineage: dict[str, Any] = {"source": self.shown, "fingerprint": fingerprint, "rows": stream.rows}
        files_read: tuple[str, ...] = ()
        if selection is not None:
            files_read = tuple(str(p) for p in selection.new_files)
            lineage["files"] = selection.lineage_files()
            lineage["new_files"] = list(files_read)
        return self._finish(
            model, metrics, features, sample[0], sample[1], holdout, lineage, stream,
            mode="incremental", parent=parent, promote=promote, force=force, rows=report.rows,
            files_read=files_read, report=report, notes=tuple(notes),
        )

    # ------------------------------------------------------------------ shared steps
    def _finish(
        self,
        model: Any,
        metrics: list[Metric],
        features: list[str],
        sample_X: pd.DataFrame,
        sample_y: pd.Series,
        holdout: pd.DataFrame,
        lineage: dict[str, Any],
        stream: TrainingStream,
        *,
        mode: Mode,
        parent: ModelVersion | None,
        promote: str | None,
        force: bool,
        rows: int,
        files_read: tuple[str, ...],
        report: PartialFitReport | None,
        notes: tuple[str, ...],
    ) -> TrainResult:
        spec = self.spec
        if holdout.empty:
            raise InvalidInput(
                f"the holdout is empty ({stream.rows} rows read, validation.holdout {spec.validation.holdout}); "
                "use more data, a larger validation.holdout, or validation.holdout_source"
            )
        if spec.watermark is not None and stream.max_seen is not None:
            lineage["watermark"] = {"column": spec.watermark, "max": watermark_value(stream.max_seen)}
        if spec.data.query:
            lineage["query"] = spec.data.query
        if spec.validation.holdout_source:
            lineage["holdout_source"] = shown_location(spec.resolve(spec.validation.holdout_source))
        self.say(f"Scoring on {len(holdout):,} holdout rows")
        new_metrics = evaluate(model, holdout[features], holdout[spec.target], metrics)
        baselines = self._baselines(holdout, metrics, parent, promote)
        description = (
            f"trained from {self.shown} ({rows:,} rows)" if parent is None
            else f"{parent.ref} trained further on {rows:,} new rows of {self.shown}"
            + (f" ({len(files_read)} new files)" if files_read else "")
        )
        mv = self.service.register(
            model,
            spec.name,
            X=sample_X,
            y=sample_y,
            metrics=new_metrics,
            params=_params(spec, model, mode, features, metrics),
            description=description,
            parent=parent.version if parent is not None else None,
            lineage=lineage,
        )
        self.say(f"Registered {mv.ref}")
        new = Scored(mv.ref, mv.version, ("new",), new_metrics)
        comparison = Comparison(tuple(metrics), tuple(baselines), new, holdout_rows=len(holdout))
        promotion = None
        if promote is not None:
            promotion = apply_promotion(
                self.service, spec.name, promote, new, pick_current(baselines, promote), metrics[0], force=force
            )
        return TrainResult(
            version=mv, mode=mode, metrics=new_metrics, comparison=comparison, promotion=promotion, parent=parent,
            rows=rows, holdout_rows=len(holdout), files_read=files_read, report=report, notes=notes,
        )

    def _columns(self, features: Sequence[str]) -> list[str]:
        extra = [c for c in (self.spec.target, self.spec.watermark) if c is not None]
        return [*features, *[c for c in extra if c not in features]]

    def _holdout_plan(self, columns: Sequence[str]) -> tuple[Splitter | None, pd.DataFrame | None]:
        validation = self.spec.validation
        if validation.holdout_source:
            self.say(f"Reading the holdout {validation.holdout_source}")
            return None, read_holdout(self.spec, columns)
        return Splitter(validation.holdout, validation.seed), None

    def _new_files(self, location: str, parent: ModelVersion) -> FileSelection:
        if is_url(location):
            raise InvalidSpec(
                f"data.incremental.new_files: {self.shown} is a database, not files; use 'watermark: COLUMN' "
                "to read the rows added since the last run"
            )
        consumed = parent.lineage.get("files")
        if not isinstance(consumed, list):
            raise InvalidInput(
                f"{parent.ref} has no record of the files it was trained on (lineage.files), so the new ones "
                "cannot be told apart; train it once with 'shipyard train SPEC' (it records them), then continue"
            )
        selection = select_new_files(location, [str(f) for f in consumed])
        if not selection.new_files:
            raise NoNewData(
                f"no new files in {self.shown} since {parent.ref} (it has consumed all {len(selection.all_files)}); "
                "nothing was registered"
            )
        return selection

    def _watermark_of(self, parent: ModelVersion) -> Any:
        recorded = parent.lineage.get("watermark")
        column = self.spec.watermark
        if not isinstance(recorded, dict) or recorded.get("max") is None:
            raise InvalidInput(
                f"{parent.ref} has no recorded watermark (lineage.watermark), so the new rows cannot be told "
                f"apart; train it once with 'shipyard train SPEC' (with data.incremental.watermark: {column}), "
                "then continue"
            )
        if recorded.get("column") != column:
            raise InvalidSpec(
                f"data.incremental.watermark: {parent.ref} recorded its watermark on {recorded.get('column')!r}, "
                f"not {column!r}"
            )
        return recorded["max"]

    def _baselines(
        self, holdout: pd.DataFrame, metrics: list[Metric], parent: ModelVersion | None, promote: str | None
    ) -> list[Scored]:
        """Score the parent, the version behind ``promote`` (or else production/latest) on the holdout."""
        name = self.spec.name
        try:
            aliases = self.service.get_model(name).aliases
        except ModelNotFound:
            return []
        versions: list[int] = []
        if parent is not None:
            versions.append(parent.version)
        if promote is not None and promote in aliases:
            versions.append(aliases[promote])
        if not versions:
            try:
                versions.append(self.service.resolve(name).version)
            except ShipyardError:
                return []
        scored: list[Scored] = []
        for version in dict.fromkeys(versions):
            roles = ["parent"] if parent is not None and version == parent.version else []
            roles += sorted(a for a, v in aliases.items() if v == version)
            if not roles:
                roles = ["latest"]
            scored.append(self._score_version(name, version, tuple(roles), holdout, metrics))
        return scored

    def _score_version(
        self, name: str, version: int, roles: tuple[str, ...], holdout: pd.DataFrame, metrics: list[Metric]
    ) -> Scored:
        ref = f"{name}:{version}"
        self.say(f"Scoring {ref} on the same holdout")
        try:
            loaded: Model = self.service.load(ref)
            values = evaluate_version(loaded, holdout, holdout[self.spec.target], metrics)
        except (ShipyardError, ValueError, TypeError, AttributeError) as exc:
            text = " ".join(str(exc).split()) or type(exc).__name__
            return Scored(ref, version, roles, {}, error=text)
        return Scored(ref, version, roles, values)


# ---------------------------------------------------------------------- fitting
def _fit(model: Any, X: pd.DataFrame, y: pd.Series) -> None:
    try:
        model.fit(X, y)
    except ShipyardError:
        raise
    except (ValueError, TypeError) as exc:
        raise _training_error(model, exc, X) from None


def _partial_fit(model: Any, X: pd.DataFrame, y: pd.Series) -> PartialFitReport:
    try:
        return partial_fit(model, X, y)
    except ShipyardError:
        raise
    except (ValueError, TypeError) as exc:
        raise _training_error(model, exc, X) from None


_NOT_A_FLOAT = re.compile(r"could not convert string to float: '(.*)'")


def _training_error(model: Any, exc: Exception, X: pd.DataFrame) -> InvalidInput:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if type(exc).__name__ == "InvalidParameterError":
        return InvalidSpec(f"estimator or preprocess params: {text}")
    found = _NOT_A_FLOAT.search(text)
    if found is not None:  # name the column holding the text the model cannot take
        value = found.group(1)
        columns = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c].dtype)]
        holding = [str(c) for c in columns if (X[c].astype(str) == value).any()] or [str(c) for c in columns]
        if holding:
            return InvalidInput(
                f"training {_describe(model)} failed: column {holding[0]!r} holds text ({value!r}) that "
                f"{_describe(model)} cannot take; leave it out of features:, or encode it in preprocess "
                "(e.g. a ColumnTransformer with a OneHotEncoder)"
            )
    return InvalidInput(f"training {_describe(model)} failed: {text}")


def _describe(model: Any) -> str:
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline):
        return " -> ".join(type(step).__name__ for _, step in model.steps if step not in (None, "passthrough"))
    return type(model).__name__


def _params(spec: TrainSpec, model: Any, mode: Mode, features: list[str], metrics: list[Metric]) -> dict[str, Any]:
    """What the version records as its params: how it was trained and the estimator's settings."""
    estimator = final_estimator(model)
    try:
        settings = estimator.get_params(deep=False)
    except Exception:  # a non-scikit-learn estimator: only its class is recorded
        settings = {}
    plain = {k: v for k, v in settings.items() if v is None or isinstance(v, (bool, int, float, str))}
    params: dict[str, Any] = {
        "training": mode,
        "estimator": type(estimator).__name__,
        "estimator_params": plain,
        "preprocess": [type(step).__name__ for _, step in getattr(model, "steps", [])[:-1]],
        "features": features,
        "target": spec.target,
        "metrics": [m.name for m in metrics],
        "chunk_rows": spec.chunk_rows,
        "seed": spec.validation.seed,
    }
    if spec.validation.holdout_source:
        params["holdout_source"] = spec.validation.holdout_source
    else:
        params["holdout"] = spec.validation.holdout
    return params
