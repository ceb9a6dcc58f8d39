"""The canary controller: every server runs one; per model, the holder of the rollout lease drives the canary.

Each check (every ``check_s`` of the plan) the lease holder reads the candidate's counters for the running
revision, summed over every replica, and:

* **rolls back** on a breached guard (error rate, p99 latency, agreement with the incumbent), once the
  candidate has served ``min_requests`` in the step: all traffic goes back to the incumbent, and the
  deployment records why (action ``canary-rollback``);
* **advances** to the next step once the step has run ``interval_s`` (with ``min_requests`` served when the
  plan has guards): a new revision, so the next step is judged on its own traffic (action ``canary-step``);
* **promotes** after the last step: the production alias moves to the candidate and the deployment goes
  back to following the alias (action ``canary-promote``).

Every change is a compare-and-set on the revision the decision was based on, so two servers can never
both act on one step; losing the lease (a dead server) hands the canary to another server within
``lease_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from shipyard.errors import Conflict
from shipyard.registry.entities import DeploymentState
from shipyard.rollouts.spec import CanaryPlan, DeploymentSpec, RolloutCounters
from shipyard.service import ModelService

log = logging.getLogger("shipyard.rollouts")


def _fmt(number: float) -> str:
    return f"{number:.4g}"


def breach(plan: CanaryPlan, candidate: RolloutCounters) -> str | None:
    """The first guard the candidate's counters breach, in words; ``None`` while they hold (or too few requests).

    >>> plan = CanaryPlan(3, 4, (10, 100), 60, max_error_rate=0.01, min_requests=10)
    >>> counters = RolloutCounters()
    >>> for i in range(20):
    ...     counters.observe(2.0, error=i % 5 == 0)
    >>> breach(plan, counters)
    'error rate 0.2 > 0.01 over 20 candidate requests'
    >>> breach(plan, RolloutCounters()) is None
    True
    """
    if candidate.requests < plan.min_requests:
        return None
    rate = candidate.error_rate()
    if plan.max_error_rate is not None and rate is not None and rate > plan.max_error_rate:
        return f"error rate {_fmt(rate)} > {_fmt(plan.max_error_rate)} over {candidate.requests} candidate requests"
    p99 = candidate.p99_ms()
    if plan.max_p99_ms is not None and p99 is not None and p99 > plan.max_p99_ms:
        return f"p99 latency {_fmt(p99)} ms > {_fmt(plan.max_p99_ms)} ms over {candidate.requests} candidate requests"
    agreement = candidate.agreement()
    if (
        plan.min_agreement is not None
        and agreement is not None
        and candidate.compared >= plan.min_requests
        and agreement < plan.min_agreement
    ):
        return (
            f"agreement with version {plan.incumbent} {_fmt(agreement)} < {_fmt(plan.min_agreement)} "
            f"over {candidate.compared} compared rows"
        )
    return None


def _guarded(plan: CanaryPlan) -> bool:
    return plan.max_error_rate is not None or plan.max_p99_ms is not None or plan.min_agreement is not None


@dataclass(frozen=True)
class Decision:
    """What one check did: ``"rollback"``, ``"step"``, ``"promote"`` or ``"wait"``, and why."""

    action: str
    reason: str = ""


class CanaryController:
    """Drives the running canaries of some model names, from one server process.

    ``names()`` lists the model names to look after (the server's followed names); ``holder`` names this
    process in the leases.
    """

    def __init__(
        self,
        service: ModelService,
        holder: str,
        names: Callable[[], Iterable[str]],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.holder = holder
        self.names = names
        self.clock = clock
        self.decisions: list[tuple[str, Decision]] = []
        """What this controller did, oldest first (for logs and tests)."""

    def check(self, name: str) -> tuple[Decision, float | None]:
        """One check of model ``name`` (blocking: registry calls); returns the decision and the plan's ``check_s``."""
        state = self.service.deployment(name)
        if state is None or state.spec is None:
            return Decision("wait", "no deployment"), None
        spec = DeploymentSpec.from_json(state.spec)
        plan = spec.canary
        if spec.kind != "canary" or plan is None or spec.status != "running" or not plan.incumbent:
            return Decision("wait", "no running canary"), None
        lease_s = max(5.0, 3.0 * plan.check_s)
        if not self.service.acquire_rollout_lease(name, self.holder, lease_s):
            return Decision("wait", "another server holds the lease"), plan.check_s
        counters = self.service.rollout_stats(name, state.revision).get(plan.candidate, RolloutCounters())
        decision = self._decide(name, state, spec, plan, counters)
        if decision.action != "wait":
            self.decisions.append((name, decision))
        return decision, plan.check_s

    def _decide(
        self, name: str, state: DeploymentState, spec: DeploymentSpec, plan: CanaryPlan, counters: RolloutCounters
    ) -> Decision:
        reason = breach(plan, counters)
        try:
            if reason is not None:
                reason = f"rolled back at step {spec.step + 1}/{len(plan.steps)}: {reason}"
                self.service.deploy(
                    name,
                    spec.finished("rolled_back", reason),
                    action="canary-rollback",
                    reason=reason,
                    expected_revision=state.revision,
                )
                log.warning("%s: canary of version %d %s", name, plan.candidate, reason)
                return Decision("rollback", reason)
            started = spec.step_started_at if spec.step_started_at is not None else state.at.timestamp()
            if self.clock() - started < plan.interval_s:
                return Decision("wait", "step still running")
            if _guarded(plan) and counters.requests < plan.min_requests:
                return Decision("wait", f"{counters.requests} of {plan.min_requests} candidate requests")
            passed = (
                f"step {spec.step + 1}/{len(plan.steps)} ({plan.steps[spec.step]:g}%) passed "
                f"with {counters.requests} candidate requests"
            )
            if spec.step + 1 < len(plan.steps):
                self.service.deploy(
                    name,
                    spec.at_step(spec.step + 1, started_at=self.clock()),
                    action="canary-step",
                    reason=passed,
                    expected_revision=state.revision,
                )
                log.info("%s: canary %s", name, passed)
                return Decision("step", passed)
            reason = f"promoted: every step passed; last {passed}"
            self.service.promote_canary(name, state, reason)
            log.info("%s: canary of version %d %s", name, plan.candidate, reason)
            return Decision("promote", reason)
        except Conflict:  # someone else changed the deployment since we read it: judge the new one next time
            return Decision("wait", "the deployment changed meanwhile")

    def check_all(self) -> float | None:
        """Check every name once (blocking); the shortest ``check_s`` among running canaries, if any."""
        shortest: float | None = None
        for name in list(self.names()):
            try:
                _, check_s = self.check(name)
            except Exception:
                log.exception("%s: canary check failed; will retry", name)
                continue
            if check_s is not None:
                shortest = check_s if shortest is None else min(shortest, check_s)
        return shortest

    async def run(self, idle_s: float = 1.0) -> None:
        """Check forever: every running canary's ``check_s``, or every ``idle_s`` while none runs."""
        while True:
            try:
                period = await asyncio.to_thread(self.check_all)
            except Exception:
                log.exception("canary checks failed; will retry")
                period = None
            await asyncio.sleep(period if period is not None else idle_s)
