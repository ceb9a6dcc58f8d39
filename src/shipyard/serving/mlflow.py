"""Protocol adapter (being written): converts requests and delegates to the data plane."""

from __future__ import annotations

from fastapi import APIRouter

from shipyard.serving.dataplane import DataPlane


def router(dataplane: DataPlane) -> APIRouter:
    """The routes of this protocol over ``dataplane``."""
    return APIRouter()
