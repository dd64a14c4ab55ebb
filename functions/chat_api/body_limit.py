"""Refuse request bodies over the configured size before the app reads them whole."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from chat_api.errors import error_response, route_path
from chat_api.exceptions import BodyTooLarge

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass(frozen=True, slots=True)
class BodySizeLimitMiddleware:
    """413 for a body over `max_bytes`, by its Content-Length or by counting what arrives."""

    app: ASGIApp
    max_bytes: int

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return

        received = 0
        refused = False

        async def counting_receive() -> Message:
            # A chunked body has no Content-Length: count it, and once it passes the limit
            # answer 413 and tell the app the client has gone, so it stops reading.
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                refused = True
                await self._refuse(scope, receive, send)
                return {"type": "http.disconnect"}
            return message

        async def send_unless_refused(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counting_receive, send_unless_refused)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = BodyTooLarge(f"Request body is larger than the limit of {self.max_bytes} bytes.")
        response = error_response(error, route_path(scope))
        await response(scope, receive, send)
