"""Request limits as plain ASGI middleware: body size (413) and a per-token rate (429).

Both answer before the route runs, so an oversized or too frequent request never opens a
database session.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    """Answer 413 to a request whose body is larger than ``max_bytes``.

    A declared ``Content-Length`` over the limit is refused without reading anything; otherwise
    the body is read (at most ``max_bytes`` plus one chunk) and counted, so a chunked upload or
    a lying header is caught too, and then handed to the app unchanged.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, size: int | None) -> JSONResponse:
        shown = "more than" if size is None else f"{size} bytes,"
        return JSONResponse(
            {"detail": f"request body is {shown} over the limit of {self.max_bytes} bytes"},
            status_code=413,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await JSONResponse({"detail": "malformed Content-Length"}, 400)(
                    scope, receive, send
                )
                return
            if size > self.max_bytes:
                await self._too_large(size)(scope, receive, send)
                return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await self._too_large(None)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class SlidingWindow:
    """At most ``limit`` events per key in any ``window`` seconds (a log of event times)."""

    def __init__(
        self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> float:
        """Record an event for ``key``; 0 when allowed, else the seconds until one would be."""
        now = self.clock()
        with self._lock:
            events = self._events.setdefault(key, deque())
            while events and events[0] <= now - self.window:
                events.popleft()
            if len(events) >= self.limit:
                return events[0] + self.window - now
            events.append(now)
            if len(self._events) > 10_000:  # forget idle keys so memory stays bounded
                self._events = {
                    k: v for k, v in self._events.items() if v and v[-1] > now - self.window
                }
            return 0.0


class RateLimit:
    """Answer 429 with ``Retry-After`` when a bearer token (or, without one, a client address)
    sends more than ``per_minute`` requests under ``prefix`` in a sliding minute."""

    def __init__(self, app: ASGIApp, per_minute: int, prefix: str = "/api/") -> None:
        self.app = app
        self.prefix = prefix
        self.window = SlidingWindow(per_minute, 60.0)

    @staticmethod
    def _key(scope: Scope) -> str:
        authorization = dict(scope["headers"]).get(b"authorization", b"")
        if authorization:
            # Hashed, so tokens never sit in memory longer than the request needs them.
            return "token:" + hashlib.sha256(authorization).hexdigest()
        client = scope.get("client")
        return f"client:{client[0] if client else 'unknown'}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        wait = self.window.hit(self._key(scope))
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            response = JSONResponse(
                {"detail": f"rate limit of {self.window.limit} requests per minute exceeded; "
                 f"retry in {seconds} s"},
                status_code=429,
                headers={"Retry-After": str(seconds)},
            )  # fmt: skip
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
