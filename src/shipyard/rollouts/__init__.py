"""Rollouts: how traffic for a model name is routed (pin, A/B, canary, shadow), stored in the registry.

A :class:`DeploymentSpec` is the data model; :class:`~shipyard.service.ModelService` stores it
(``deploy``, ``deployment``, ``deployment_history``, ``rollback_deployment``) and servers route by it.
"""

from __future__ import annotations

from shipyard.rollouts.spec import (
    LATENCY_BUCKETS_MS,
    CanaryPlan,
    DeploymentSpec,
    Kind,
    RolloutCounters,
    Variant,
    bucket_index,
    parse_ab,
    parse_duration,
    parse_steps,
)

__all__ = [
    "LATENCY_BUCKETS_MS",
    "CanaryPlan",
    "DeploymentSpec",
    "Kind",
    "RolloutCounters",
    "Variant",
    "bucket_index",
    "parse_ab",
    "parse_duration",
    "parse_steps",
]
