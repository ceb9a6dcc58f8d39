"""API-key authentication (being written): a pass-through until keys land."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from shipyard.service import ModelService


class AuthMiddleware:
    """Checks the API key and scope of every request that needs one."""

    def __init__(self, app: ASGIApp, *, service: ModelService, required: bool) -> None:
        self.app = app
        self.service = service
        self.required = required

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
