"""Scoring: a loaded model bound to its signature, ready to turn features into predictions."""

from shipyard.scoring.model import Model

__all__ = ["Model"]
