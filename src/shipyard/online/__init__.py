"""Real-time learning: a durable feedback log, one learner per model, snapshots and guardrails.

A model registered with ``shipyard.register(model, name, X=X, y=y, online=True)`` gets a feedback log in
the registry database. Feedback (features and true label, or a prediction's request id and its label) is
committed to the log before it is acknowledged. A :class:`Learner` (``python -m shipyard.online NAME``)
holds a lease on the model, applies events in offset order with ``partial_fit`` (or River's
``learn_one``), scores each event before learning it (progressive validation), and registers snapshots
as new versions, moving ``production`` to them when the guardrails allow.
"""

from __future__ import annotations

from shipyard.online.events import FeedbackEvent, OnlineSettings
from shipyard.online.learner import Learner
from shipyard.online.status import OnlineStatus
from shipyard.online.store import Alert, OnlineStore

__all__ = ["Alert", "FeedbackEvent", "Learner", "OnlineSettings", "OnlineStatus", "OnlineStore"]
