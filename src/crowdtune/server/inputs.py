"""Input checks at the edge: every query string, header, form and JSON body, before any route.

:class:`InputCheck` is ASGI middleware that answers 422, naming the field, when a request holds
input that :mod:`crowdtune.validation` refuses: a NUL character or a lone surrogate in any
text (a query parameter, a header, a form field, a JSON string or key), and in a JSON body a
non-finite number (``NaN``, ``Infinity``, ``1e400``), an integer past 64 bits or nesting past
:data:`~crowdtune.validation.MAX_JSON_DEPTH`. So no route, API or page, ever parses a body
that would make Python's JSON parser recurse out of its stack, and no such text reaches the
database (PostgreSQL refuses NUL) or an encoder. Multipart uploads are left to the route: their
file is an arena CSV, which :func:`crowdtune.datasets.comparisons.read_arena_csv` checks cell by
cell, naming the row and column.

:func:`validation_error` replaces FastAPI's handler of request validation errors: its 422 body
echoes the refused input, which must itself be JSON (a NaN, or a lone surrogate, made the
default handler fail with a 500).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain
from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread
from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crowdtune.tables import jsonable
from crowdtune.validation import InputError, encodable_text, loads_json, text_problem

#: Bodies larger than this are checked on a worker thread, off the event loop.
THREAD_BYTES = 64_000
_FORM = "application/x-www-form-urlencoded"


def refused(where: Iterable[str | int], problem: str) -> JSONResponse:
    """The 422 of refused input, shaped like FastAPI's validation errors: ``{"detail": [{"type",
    "loc", "msg"}]}``; the input itself is not echoed."""
    loc = [encodable_text(part) if isinstance(part, str) else part for part in where]
    detail = [{"type": "value_error", "loc": loc, "msg": problem}]
    return JSONResponse({"detail": detail}, status_code=422)


def _text_fields(
    pairs: Iterable[tuple[str, str]], where: str
) -> tuple[list[str | int], str] | None:
    for name, value in pairs:
        for text, what in ((name, "the name"), (value, "the value")):
            if (problem := text_problem(text)) is not None:
                return [where, name], f"{what} {problem}"
    return None


def _body_problem(body: bytes, content_type: str) -> tuple[list[str | int], str] | None:
    """Where and why a (non-multipart) body is refused, or None. A body that is not JSON at
    all is left to the route, which says what it expected."""
    if content_type.startswith(_FORM):
        return _text_fields(parse_qsl(body.decode("latin-1"), keep_blank_values=True), "body")
    try:
        loads_json(body)
    except InputError as exc:
        return ["body", *exc.where], exc.problem
    except ValueError:  # not JSON (or not UTF-8): the route's own parser will say so
        return None
    return None


class InputCheck:
    """ASGI middleware: 422 naming the field for a query parameter, header, form field or JSON
    value that :mod:`crowdtune.validation` refuses (see the module docs). Multipart bodies and
    requests without a body pass through untouched."""

    def __init__(self, app: ASGIApp, thread_bytes: int = THREAD_BYTES) -> None:
        self.app = app
        self.thread_bytes = thread_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        found = _text_fields(query, "query")
        # Decoded as Latin-1 a header holds no surrogate, so only a NUL byte can be refused:
        # one search of all header bytes at once, and the headers are decoded (to name the
        # field) only when it finds one.
        if found is None and b"\x00" in b"".join(chain.from_iterable(scope["headers"])):
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
            found = _text_fields(headers, "header")
        if found is not None:
            await refused(*found)(scope, receive, send)
            return
        content_type = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1").lower()
        if content_type.startswith("multipart/"):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:  # the client went away
            return
        if body:
            if len(body) > self.thread_bytes:
                found = await anyio.to_thread.run_sync(_body_problem, body, content_type)
            else:
                found = _body_problem(body, content_type)
            if found is not None:
                await refused(*found)(scope, receive, send)
                return
        await self.app(scope, replay(body, receive), send)


class BodyTooLarge(Exception):
    """The request body passed the ``max_bytes`` given to :func:`read_body`."""


async def read_body(receive: Receive, max_bytes: int | None = None) -> bytes | None:
    """The whole request body from ``receive``; ``None`` when the client went away first.

    Raises :class:`BodyTooLarge` as soon as more than ``max_bytes`` have arrived.
    """
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        total += len(chunk)
        if max_bytes is not None and total > max_bytes:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app ``body`` (read already) as one message, then whatever
    ``receive`` gives (a disconnect)."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 of a request that fails validation, with the echoed input made JSON-safe
    (:func:`crowdtune.tables.jsonable`: a NaN becomes null, a lone surrogate U+FFFD)."""
    detail: Any = jsonable(jsonable_encoder(exc.errors()))
    return JSONResponse({"detail": detail}, status_code=422)
