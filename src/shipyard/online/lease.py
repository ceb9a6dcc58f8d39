"""One learner per model: a lease in the model's ``online_models`` row, taken and renewed with one UPDATE.

``UPDATE ... SET holder = me, expires_at = now + lease WHERE model = m AND (holder = me OR holder IS NULL OR
expires_at < now)`` succeeds (rowcount 1) for at most one learner at a time on SQLite and PostgreSQL alike.
Clocks of the machines running learners must agree to well within the lease.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta

from sqlalchemy import Connection, or_, update

from shipyard.registry.store import utcnow
from shipyard.registry.tables import online_models


def new_holder_id() -> str:
    """A learner identity: host, process id and a random suffix.

    >>> new_holder_id().count(":")
    2
    """
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def acquire(conn: Connection, model_id: int, holder: str, seconds: float, **also: object) -> bool:
    """Take or renew the lease for ``seconds``; ``also`` are further columns to set when it succeeds."""
    now = utcnow()
    result = conn.execute(
        update(online_models)
        .where(
            online_models.c.model_id == model_id,
            or_(
                online_models.c.holder == holder,
                online_models.c.holder.is_(None),
                online_models.c.expires_at < now,
            ),
        )
        .values(holder=holder, expires_at=now + timedelta(seconds=seconds), **also)
    )
    return result.rowcount == 1


def release(conn: Connection, model_id: int, holder: str) -> None:
    """Give the lease up at once (a clean shutdown), so another learner need not wait for it to expire."""
    conn.execute(
        update(online_models)
        .where(online_models.c.model_id == model_id, online_models.c.holder == holder)
        .values(holder=None, expires_at=None)
    )
