"""A batch job's identity: its resolved settings, a deterministic id, and the manifest that survives a crash.

The job id is a SHA-256 (first 16 hex digits) of everything that decides the output: the resolved model
version and its artifact hash, the input's URI and fingerprint, the output and rejects locations, the
chunk size, the id and kept columns, ``strict``, the SQL ``if_exists`` mode and an explicit
``scored_at``. The engine is deliberately left out: a job started on the local engine can be resumed on
Dask and the other way round, since both write the same chunks.

The manifest (``job.json`` in the job's staging folder) records the job's ``scored_at`` timestamp, so a
resumed job stamps its remaining rows with the same time as the rows written before the interruption.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

MANIFEST = "job.json"


@dataclass(frozen=True)
class JobSpec:
    """The settings that decide a job's output; equal specs give equal ids.

    >>> spec = JobSpec(model="fraud", version=3, sha256="ab", input="tx.parquet", fingerprint="cd",
    ...                output="/data/scores.parquet", rejects="/data/scores.rejects.parquet", chunk_rows=100_000)
    >>> spec.job_id == JobSpec(**spec.to_dict()).job_id, len(spec.job_id)
    (True, 16)
    >>> spec.job_id == JobSpec(**{**spec.to_dict(), "chunk_rows": 50_000}).job_id
    False
    """

    model: str
    version: int
    sha256: str
    input: str
    fingerprint: str
    output: str
    rejects: str
    chunk_rows: int
    id_column: str | None = None
    keep: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    strict: bool = False
    if_exists: str | None = None
    scored_at: str | None = None

    @property
    def job_id(self) -> str:
        """16 hex digits of the SHA-256 of the spec."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        data = asdict(self)
        data["keep"] = tuple(self.keep)
        data["columns"] = tuple(self.columns)
        return data


def write_manifest(folder: Path, spec: JobSpec, scored_at: datetime) -> None:
    """Write ``job.json`` into ``folder`` atomically (temporary name, then rename)."""
    body = {"job_id": spec.job_id, "scored_at": scored_at.isoformat(), "spec": spec.to_dict()}
    tmp = folder / f".{MANIFEST}.tmp"
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(body, handle, indent=2, default=list)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, folder / MANIFEST)


def read_scored_at(folder: Path, job_id: str) -> datetime | None:
    """The ``scored_at`` of the job whose manifest is in ``folder``, or ``None`` if there is none for ``job_id``.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> spec = JobSpec("m", 1, "s", "in", "f", "out", "rej", 10)
    >>> from datetime import UTC
    >>> write_manifest(folder, spec, datetime(2024, 5, 1, 12, tzinfo=UTC))
    >>> read_scored_at(folder, spec.job_id)
    datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.timezone.utc)
    >>> read_scored_at(folder, "another-job") is None
    True
    """
    try:
        body = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if body.get("job_id") != job_id:
            return None
        return datetime.fromisoformat(body["scored_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
