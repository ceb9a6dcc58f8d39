"""Deployments in the registry: the current spec per model, its history, the rollout lease and counters.

Every change writes the ``deployments`` row (spec, revision + 1) and a ``deployment_history`` row in one
transaction, under a lock on the model's row (``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN
IMMEDIATE`` on SQLite), so revisions are gap-free and a compare-and-set on the revision is exact.

Rolling back walks the history like a stack: a user's change (``deploy``, ``apply``, ``remove``) pushes
a state, an automatic canary change (``canary-step``, ``canary-promote``, ``canary-rollback``) replaces
the top one, and a ``rollback`` pops it; the target is the state below the top. Before the first change
a model has "no deployment" (``spec`` ``None``), which a rollback can restore.

:func:`last_change` merges the deployment history with the alias moves that decide what is served, in time
order and with the same stack rules, to find the newest change not undone yet: what ``shipyard rollback``
undoes, whichever kind it was.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, RowMapping, insert, or_, select, update
from sqlalchemy import exc as sa_exc

from shipyard.errors import Conflict
from shipyard.registry.entities import AliasMove, DeploymentState
from shipyard.registry.store import MetadataStore, _aware, utcnow
from shipyard.registry.tables import alias_history, deployment_history, deployments, models, rollout_stats

USER_ACTIONS = ("deploy", "apply", "remove")
CANARY_ACTIONS = ("canary-step", "canary-promote", "canary-rollback")
ACTIONS = (*USER_ACTIONS, "rollback", *CANARY_ACTIONS)

Resolver = Callable[[Connection, RowMapping, DeploymentState | None], dict[str, Any] | None]
"""Builds the spec to write from the locked model row and the current state (inside the transaction)."""


class DeploymentStore:
    """Deployment rows of a :class:`MetadataStore` (the service validates specs; this stores them)."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    # ------------------------------------------------------------------ writes
    def write(
        self,
        name: str,
        resolve: Resolver,
        *,
        action: str,
        reason: str,
        actor: str,
        expected_revision: int | None = None,
        then: Callable[[Connection, RowMapping, DeploymentState | None, dict[str, Any] | None], None] | None = None,
    ) -> DeploymentState:
        """Write a new revision whose spec ``resolve`` builds; ``then`` runs in the same transaction.

        ``expected_revision`` (0 = "no deployment yet") makes the write a compare-and-set: another revision
        raises :class:`Conflict`, and nothing is written.
        """
        if action not in ACTIONS:
            raise ValueError(f"unknown deployment action {action!r}")
        try:
            with self.store._write() as conn:
                model_row = self._lock(conn, name)
                current = self._current(conn, model_row)
                revision = current.revision if current is not None else 0
                if expected_revision is not None and expected_revision != revision:
                    raise Conflict(
                        f"the deployment of {name!r} changed meanwhile: it is at revision {revision}, not "
                        f"{expected_revision}; see 'shipyard deploy show {name}' and try again"
                    )
                spec = resolve(conn, model_row, current)
                state = self._insert(conn, model_row, revision + 1, spec, action, reason, actor)
                if then is not None:
                    then(conn, model_row, current, spec)
                return state
        except sa_exc.IntegrityError:  # two first deployments of one model at once (PostgreSQL)
            raise Conflict(f"the deployment of {name!r} changed meanwhile; try again") from None

    def _lock(self, conn: Connection, name: str) -> RowMapping:
        row = conn.execute(select(models).where(models.c.name == name).with_for_update()).mappings().first()
        if row is None:
            return self.store._model_row(conn, name)  # raises ModelNotFound
        return row

    def _insert(
        self,
        conn: Connection,
        model_row: RowMapping,
        revision: int,
        spec: dict[str, Any] | None,
        action: str,
        reason: str,
        actor: str,
    ) -> DeploymentState:
        now = utcnow()
        values = {"revision": revision, "spec": spec, "actor": actor, "updated_at": now}
        if revision == 1:
            conn.execute(insert(deployments).values(model_id=model_row["id"], **values))
        else:
            conn.execute(update(deployments).where(deployments.c.model_id == model_row["id"]).values(**values))
        conn.execute(
            insert(deployment_history).values(
                model_id=model_row["id"], revision=revision, spec=spec, action=action, reason=reason, actor=actor,
                at=now,
            )
        )
        return DeploymentState(model_row["name"], revision, spec, action, reason, actor, now)

    # ------------------------------------------------------------------ reads
    def current(self, name: str) -> DeploymentState | None:
        """The running revision of ``name``'s deployment, or ``None`` if it never had one."""
        with self.store._read() as conn:
            return self._current(conn, self.store._model_row(conn, name))

    def _current(self, conn: Connection, model_row: RowMapping) -> DeploymentState | None:
        row = (
            conn.execute(
                select(deployment_history)
                .join(
                    deployments,
                    (deployments.c.model_id == deployment_history.c.model_id)
                    & (deployments.c.revision == deployment_history.c.revision),
                )
                .where(deployments.c.model_id == model_row["id"])
            )
            .mappings()
            .first()
        )
        return None if row is None else _state(model_row["name"], row)

    def history(self, name: str) -> list[DeploymentState]:
        """Every revision of ``name``'s deployment, oldest first."""
        with self.store._read() as conn:
            return self._history(conn, self.store._model_row(conn, name))

    def _history(self, conn: Connection, model_row: RowMapping) -> list[DeploymentState]:
        rows = conn.execute(
            select(deployment_history)
            .where(deployment_history.c.model_id == model_row["id"])
            .order_by(deployment_history.c.revision)
        ).mappings()
        return [_state(model_row["name"], row) for row in rows]

    def revisions(self) -> dict[str, int]:
        """Model name -> revision of its deployment, for every model that has one (one small query)."""
        with self.store._read() as conn:
            rows = conn.execute(
                select(models.c.name, deployments.c.revision).join(deployments, deployments.c.model_id == models.c.id)
            ).all()
        return {name: int(revision) for name, revision in rows}

    # ------------------------------------------------------------------ lease
    def acquire_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew the rollout lease of ``name`` for ``seconds``; False if another holder has it."""
        now = utcnow()
        with self.store._write() as conn:
            model_row = self.store._model_row(conn, name)
            result = conn.execute(
                update(deployments)
                .where(
                    deployments.c.model_id == model_row["id"],
                    or_(
                        deployments.c.holder == holder,
                        deployments.c.holder.is_(None),
                        deployments.c.expires_at < now,
                    ),
                )
                .values(holder=holder, expires_at=now + timedelta(seconds=seconds))
            )
            return bool(result.rowcount == 1)

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up at once if ``holder`` has it (a clean shutdown)."""
        with self.store._write() as conn:
            model_row = self.store._model_row(conn, name)
            conn.execute(
                update(deployments)
                .where(deployments.c.model_id == model_row["id"], deployments.c.holder == holder)
                .values(holder=None, expires_at=None)
            )

    # ------------------------------------------------------------------ counters
    def record_stats(self, name: str, revision: int, replica: str, counters: dict[int, Any]) -> None:
        """Upsert one replica's cumulative counters (``RolloutCounters`` per version) for ``revision``."""
        if not counters:
            return
        now = utcnow()
        with self.store._write() as conn:
            model_id = self.store._model_row(conn, name)["id"]
            rows = [
                {
                    "model_id": model_id,
                    "revision": revision,
                    "replica": replica,
                    "version": int(version),
                    "requests": c.requests,
                    "errors": c.errors,
                    "agree": c.agree,
                    "compared": c.compared,
                    "latency_buckets": list(c.latency_buckets),
                    "updated_at": now,
                }
                for version, c in sorted(counters.items())
            ]
            conn.execute(_upsert(conn, rows))

    def stats(self, name: str, revision: int) -> list[RowMapping]:
        """Every replica's counter rows of ``revision``."""
        with self.store._read() as conn:
            model_id = self.store._model_row(conn, name)["id"]
            return list(
                conn.execute(
                    select(rollout_stats).where(
                        rollout_stats.c.model_id == model_id, rollout_stats.c.revision == revision
                    )
                ).mappings()
            )


def rollback_target(history: Sequence[DeploymentState]) -> tuple[bool, DeploymentState | None]:
    """The state a rollback restores: ``(True, entry)``, ``(True, None)`` for "no deployment", ``(False, None)``
    when there is nothing to go back to.

    >>> from datetime import UTC, datetime
    >>> def s(rev, action, spec):
    ...     return DeploymentState("m", rev, spec, action, "", "ann", datetime.now(UTC))
    >>> pin3, pin4 = {"kind": "pin", "n": 3}, {"kind": "pin", "n": 4}
    >>> rollback_target([]), rollback_target([s(1, "deploy", pin3)])
    ((False, None), (True, None))
    >>> rollback_target([s(1, "deploy", pin3), s(2, "deploy", pin4)])[1].spec == pin3
    True
    >>> rollback_target([s(1, "deploy", pin3), s(2, "deploy", pin4), s(3, "rollback", pin3)])
    (True, None)
    """
    stack: list[DeploymentState | None] = [None]
    for state in history:
        if state.action == "rollback":
            if len(stack) > 1:
                stack.pop()
        elif state.action in CANARY_ACTIONS and len(stack) > 1:
            stack[-1] = state
        else:
            stack.append(state)
    return (True, stack[-2]) if len(stack) >= 2 else (False, None)


@dataclass(frozen=True)
class Change:
    """A change of what a model serves: a deployment revision, an alias move, or a canary's promotion (the
    alias move a promoted canary made, undone by rolling the deployment back)."""

    kind: Literal["deployment", "alias", "promotion"]
    at: datetime
    state: DeploymentState | None = None
    move: AliasMove | None = None


def last_change(
    history: Sequence[DeploymentState], moves: Sequence[AliasMove], aliases: Collection[str]
) -> Change | None:
    """The newest change not undone yet among the deployment ``history`` and the ``moves`` of ``aliases``.

    Both are walked as one stack in time order: a user's deployment change or an alias move pushes, a
    deployment rollback pops the newest deployment change, an alias rollback the newest move of that alias;
    automatic canary steps belong to the canary's deployment change. ``None`` when nothing is left to undo.

    >>> from datetime import UTC
    >>> t = lambda minute: datetime(2024, 5, 1, 12, minute, tzinfo=UTC)
    >>> pin = DeploymentState("m", 1, {"kind": "pin"}, "deploy", "", "ann", t(0))
    >>> move = AliasMove("m", "production", "set", 3, 2, "bob", t(1))
    >>> last_change([pin], [move], {"production"}).kind
    'alias'
    >>> undo = AliasMove("m", "production", "rollback", 2, 3, "bob", t(2))
    >>> last_change([pin], [move, undo], {"production"}).state.revision
    1
    >>> last_change([pin], [move], {"staging"}).kind  # a move of an alias not served is not a change of it
    'deployment'
    """
    events: list[tuple[datetime, int, int, DeploymentState | AliasMove]] = [
        (state.at, 0, index, state) for index, state in enumerate(history)
    ]
    events += [(move.at, 1, index, move) for index, move in enumerate(moves) if move.alias in aliases]
    stack: list[Change] = []
    for at, _, _, event in sorted(events, key=lambda e: e[:3]):
        if isinstance(event, DeploymentState):
            if event.action == "rollback":
                _pop(stack, lambda c: c.kind == "deployment")
            elif event.action not in CANARY_ACTIONS:
                stack.append(Change("deployment", at, state=event))
        elif event.action == "rollback":
            _pop(stack, lambda c, alias=event.alias: c.move is not None and c.move.alias == alias)
        else:
            stack.append(Change("promotion" if event.action == "canary-promote" else "alias", at, move=event))
    return stack[-1] if stack else None


def _pop(stack: list[Change], match: Callable[..., bool]) -> None:
    """Remove the newest entry of ``stack`` that ``match`` accepts (none: nothing)."""
    for index in range(len(stack) - 1, -1, -1):
        if match(stack[index]):
            del stack[index]
            return


def last_alias_move(conn: Connection, model_id: int, alias: str) -> RowMapping | None:
    """The newest ``alias_history`` row of ``alias``, read inside the caller's transaction."""
    return (
        conn.execute(
            select(alias_history)
            .where(alias_history.c.model_id == model_id, alias_history.c.alias == alias)
            .order_by(alias_history.c.id.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )


def _state(name: str, row: RowMapping) -> DeploymentState:
    return DeploymentState(
        model=name,
        revision=int(row["revision"]),
        spec=row["spec"],
        action=row["action"],
        reason=row["reason"] or "",
        actor=row["actor"],
        at=_aware(row["at"]),
    )


def _upsert(conn: Connection, rows: list[dict[str, Any]]) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]
    statement = dialect_insert(rollout_stats).values(rows)
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=["model_id", "revision", "replica", "version"],
        set_={
            "requests": excluded.requests,
            "errors": excluded.errors,
            "agree": excluded.agree,
            "compared": excluded.compared,
            "latency_buckets": excluded.latency_buckets,
            "updated_at": excluded.updated_at,
        },
    )
