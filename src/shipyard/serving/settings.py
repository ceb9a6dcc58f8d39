"""Settings of a prediction server: limits, batching, reload and auth, from flags and ``serve.yaml``."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from shipyard.errors import InvalidInput
from shipyard.evaluation.thresholds import DEFAULT_THRESHOLDS

DEFAULT_SOURCE = "serve config"
"""How error messages name settings that were not read from a file."""


class BatchSettings(BaseModel):
    """Micro-batching of one model version."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(default=64, ge=1, description="Most rows merged into one model call.")
    max_wait_ms: float = Field(
        default=0.0, ge=0.0, description="How long a batch may wait to fill; 0 runs as soon as the model is free."
    )


class OnlineServeSettings(BaseModel):
    """Online learning in the server: feedback limits, prediction recording and the learners' settings."""

    model_config = ConfigDict(extra="forbid")

    learn: bool = Field(default=True, description="Run a learner per served online model in every worker.")
    feedback_events_per_second: float = Field(
        default=100_000.0, ge=0.0, description="Feedback events per second per API key and worker; 0: no limit."
    )
    feedback_burst: int = Field(default=200_000, ge=1, description="Most feedback events a key may send at once.")
    record_interval_ms: float = Field(
        default=100.0, gt=0.0, description="How often recorded predictions are written for the request-id join."
    )
    record_rows: int = Field(default=2_000, ge=1, description="Write recorded predictions once this many are held.")
    record_buffer_rows: int = Field(
        default=100_000, ge=1, description="Most recorded predictions held in memory; beyond, new ones are dropped."
    )
    status_interval_s: float = Field(default=1.0, gt=0.0, description="How often /metrics reads the learners' status.")
    learner: dict[str, float | int | None] = Field(
        default_factory=dict, description="Learner settings (snapshot_every, lease_seconds, tolerance, window...)."
    )


class LogSettings(BaseModel):
    """The prediction log: where every answered prediction is written, how often, and for how long it is kept.

    >>> LogSettings(sensitive={"fraud": {"email": "hash"}}).sensitive["fraud"]["email"]
    'hash'
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Record every answered prediction.")
    backend: Literal["parquet", "postgres"] = Field(
        default="parquet", description="parquet: files under path; postgres: a table in postgres_url."
    )
    path: Path | None = Field(default=None, description="Folder of the Parquet log; default <SHIPYARD_HOME>/logs.")
    postgres_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the PostgreSQL database of the log (backend postgres)."
    )
    writer: Literal["process", "thread"] = Field(
        default="process",
        description="process: tables are built and written by a writer process fed through shared memory (the "
        "server only copies each request once); thread: by a thread of the server itself.",
    )
    flush_interval_s: float = Field(
        default=1.0, gt=0.0, description="Most seconds a recorded prediction waits before it is written."
    )
    flush_rows: int = Field(default=50_000, ge=1, description="Write as soon as this many rows are held.")
    fsync: bool = Field(default=False, description="fsync every written file (survives a power cut, slower).")
    rotate_seconds: float = Field(
        default=3600.0, gt=0.0, description="Flush files of each closed period this long are merged into one segment."
    )
    rotate_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1, description="Merge a period's files early once they hold this many bytes."
    )
    max_age_hours: float = Field(default=168.0, gt=0.0, description="Delete log files older than this.")
    max_bytes: int = Field(
        default=10 * 1024**3, ge=1, description="Delete the oldest log files once the log is larger than this."
    )
    buffer_rows: int = Field(
        default=1_000_000, ge=1, description="Most rows held in memory; beyond, new ones are dropped and counted."
    )
    sensitive: dict[str, dict[str, Literal["hash", "drop", "raw"]]] = Field(
        default_factory=dict,
        description="Per model, input columns to hash (sha256 of the value) or drop before anything is written, "
        "or to log raw although their name looks personal (see hash_personal_columns).",
    )
    hash_personal_columns: bool = Field(
        default=True,
        description="Hash every input column whose name looks like personal data (email, phone, name, address, "
        "ssn, iban, card number, birth date, ip, passport, user or customer id...; see "
        "shipyard.monitoring.privacy), as if it were listed under sensitive with hash.",
    )

    @model_validator(mode="after")
    def _backend_has_a_place(self) -> LogSettings:
        if self.enabled and self.backend == "postgres" and not self.postgres_url:
            raise ValueError(
                "backend postgres needs postgres_url, a SQLAlchemy URL such as postgresql+psycopg://user@host/db"
            )
        return self


class MonitorSettings(BaseModel):
    """The live monitor: drift and accuracy over a sliding window of logged predictions, alerts to a webhook."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Compute drift and live accuracy in the server.")
    interval_s: float = Field(default=10.0, gt=0.0, description="How often the window's statistics are recomputed.")
    window_rows: int = Field(default=10_000, ge=1, description="Latest logged predictions kept per model version.")
    psi_warn: float = Field(
        default=DEFAULT_THRESHOLDS.psi_warn, ge=0.0, description="PSI from which a feature's drift is a warning."
    )
    psi_alert: float = Field(
        default=DEFAULT_THRESHOLDS.psi_alert, ge=0.0, description="PSI from which a feature's drift is an alert."
    )
    p_value: float = Field(
        default=DEFAULT_THRESHOLDS.p_value, gt=0.0, lt=1.0, description="Significance level of the KS / chi2 tests."
    )
    min_samples: int = Field(
        default=DEFAULT_THRESHOLDS.min_samples, ge=1, description="Fewer live values than this: no verdict."
    )
    webhook_url: str | None = Field(default=None, description="POST an alert here when a threshold is crossed.")
    accuracy_alert_below: float | None = Field(
        default=None, description="Alert when live accuracy (classifiers) falls below this."
    )


class ServeSettings(BaseModel):
    """Everything ``shipyard serve`` can be told, by flags or by a YAML file.

    >>> ServeSettings.from_yaml_text("port: 9000\\nmodels:\\n  fraud:\\n    max_batch_size: 16").port
    9000
    """

    model_config = ConfigDict(extra="forbid")

    refs: list[str] = Field(
        default_factory=list, description="Model references to serve; empty: every production alias."
    )
    host: str = Field(default="127.0.0.1", description="Address to bind.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port to bind; 0 picks a free one.")
    workers: int = Field(default=1, ge=1, description="Worker processes sharing the port.")
    auth: bool | None = Field(
        default=None, description="Require API keys; default: on unless the server binds a loopback address."
    )
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1, description="Largest request body (413 above).")
    max_rows: int = Field(default=10_000, ge=1, description="Most rows in one request (413 above).")
    timeout_s: float = Field(default=30.0, gt=0, description="Per-request time limit (504 above).")
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a client has to send a request's head, from the connection's opening or the previous "
        "answer (408 and close above).",
    )
    body_timeout_s: float = Field(
        default=30.0, gt=0, description="Seconds a client has to send a whole request body after its head (408 above)."
    )
    max_connections_per_client: int = Field(
        default=64,
        ge=1,
        description="Open connections one client address may hold per worker process; one more is answered 429.",
    )
    max_columns: int = Field(
        default=1_000,
        ge=1,
        description="Most columns in an MLflow request (text/csv header, dataframe_split columns, record fields), "
        "or the model's input count if larger; a wider body is refused (413) before a table is built from it.",
    )
    reload_interval_s: float = Field(
        default=1.0, gt=0, description="How often aliases and deployments are checked for changes in the registry."
    )
    shadow_queue_size: int = Field(
        default=1_000,
        ge=1,
        description="Requests waiting, per model, to be scored by a shadow (or by a canary's incumbent for the "
        "agreement guard); beyond, copies are dropped and counted in shipyard_shadow_dropped_total.",
    )
    stats_flush_s: float = Field(
        default=1.0, gt=0, description="How often this server's rollout counters are written to the registry."
    )
    rollouts: bool = Field(
        default=True,
        description="Run the canary controller: servers compete for each model's rollout lease, and the holder "
        "advances, rolls back or promotes running canaries.",
    )
    batching: BatchSettings = Field(default_factory=BatchSettings, description="Default micro-batching.")
    models: dict[str, BatchSettings] = Field(default_factory=dict, description="Micro-batching per model name.")
    online: OnlineServeSettings = Field(default_factory=OnlineServeSettings, description="Online learning.")
    logging: LogSettings = Field(default_factory=LogSettings, description="The prediction log.")
    monitoring: MonitorSettings = Field(default_factory=MonitorSettings, description="The live monitor.")

    _source: str = PrivateAttr(default=DEFAULT_SOURCE)

    @property
    def source(self) -> str:
        """Where these settings were read from (the ``serve.yaml`` path), for error messages."""
        return self._source

    def check_model_names(self, known: Iterable[str], what: str = "served") -> None:
        """Refuse ``models:`` entries for names not in ``known``, with a "did you mean" for a likely typo.

        >>> ServeSettings.from_yaml_text("models: {fruad: {max_batch_size: 8}}").check_model_names(["fraud"])
        Traceback (most recent call last):
        ...
        shipyard.errors.InvalidInput: serve config: models.fruad: no model 'fruad' is served; did you mean 'fraud'?
        """
        names = sorted(set(known))
        problems = [
            f"{self._source}: models.{name}: no model {name!r} is {what}{did_you_mean(name, names)}"
            for name in self.models
            if name not in names
        ]
        if problems:
            raise InvalidInput("; ".join(problems))

    def batching_for(self, name: str) -> BatchSettings:
        """The batching settings of model ``name``."""
        return self.models.get(name, self.batching)

    def auth_required(self) -> bool:
        """Whether API keys are required: explicit, or else on unless every address ``host`` resolves to is loopback.

        The bind address is resolved, not read as text (``127.attacker.example`` is a name like any other); a name
        that does not resolve counts as not loopback.

        >>> ServeSettings(host="127.0.0.1").auth_required(), ServeSettings(host="0.0.0.0").auth_required()
        (False, True)
        """
        if self.auth is not None:
            return self.auth
        import ipaddress
        import socket

        try:
            found = socket.getaddrinfo(self.host, None)
        except (OSError, UnicodeError):
            return True
        addresses = {info[4][0] for info in found if isinstance(info[4][0], str)}
        return not addresses or not all(ipaddress.ip_address(a.partition("%")[0]).is_loopback for a in addresses)

    @classmethod
    def from_yaml_text(cls, text: str, **overrides: Any) -> ServeSettings:
        """Settings from YAML text, with flag values laid over it; every mistake is reported at once, unknown
        keys with a "did you mean" (``serve.yaml: loging: unknown setting; did you mean 'logging'?``).

        >>> ServeSettings.from_yaml_text("loging: {enabled: false}")
        Traceback (most recent call last):
        ...
        shipyard.errors.InvalidInput: invalid serve settings: loging: unknown setting; did you mean 'logging'?
        """
        return cls.read_yaml(text, DEFAULT_SOURCE, overrides)

    @classmethod
    def read_yaml(cls, text: str, source: str, overrides: dict[str, Any]) -> ServeSettings:
        """:meth:`from_yaml_text` for text read from ``source`` (a path), which error messages name."""
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise InvalidInput(f"{source} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidInput(f"{source} must be a mapping of settings, such as 'port: 8000'")
        from pydantic import ValidationError

        try:
            settings = cls.model_validate({**data, **{k: v for k, v in overrides.items() if v is not None}})
        except ValidationError as exc:
            problems = "; ".join(_problem(cls, e["loc"], e["type"], e["msg"]) for e in exc.errors(include_url=False))
            prefix = "invalid serve settings" if source == DEFAULT_SOURCE else source
            raise InvalidInput(f"{prefix}: {problems}") from None
        settings._source = source
        return settings

    @classmethod
    def from_file(cls, path: Path, **overrides: Any) -> ServeSettings:
        """Settings from a ``serve.yaml`` file, with flag values laid over it."""
        try:
            text = path.read_text()
        except OSError as exc:
            raise InvalidInput(f"cannot read the serve config {path}: {exc.strerror}") from None
        return cls.read_yaml(text, str(path), overrides)


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """``; did you mean 'x'?`` for the closest of ``choices``, or the choices themselves when none is close.

    >>> did_you_mean("fruad", ["fraud", "churn"]), did_you_mean("zzz", ["fraud", "churn"]), did_you_mean("x", [])
    ("; did you mean 'fraud'?", ' (choose from churn, fraud)', '')
    """
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f" (choose from {', '.join(sorted(choices))})" if choices else ""


def _keys_at(model: Any, where: Sequence[Any]) -> list[str]:
    """The setting names allowed at ``where`` (a path of keys below ``model``), through nested models and dicts."""
    current = model
    for part in where:
        if isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[part].annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _problem(model: Any, loc: Sequence[Any], kind: str, message: str) -> str:
    where = ".".join(map(str, loc))
    if kind == "extra_forbidden" and loc:
        return f"{where}: unknown setting{did_you_mean(str(loc[-1]), _keys_at(model, loc[:-1]))}"
    return f"{where}: {message}"
