"""Request limits: body size (413) and request rates (429 with ``Retry-After``).

:class:`BodySizeLimit` is plain ASGI middleware: an oversized request never opens a database
session. Rates are counted in three places, by :class:`RateLimits`:

- **per contributor**, after authentication (:func:`count_contributor`, which
  :mod:`~crowdtune.server.deps` and the pages call with the contributor's id): one budget per
  person for the API and the pages together, whatever spelling of ``Bearer`` or which session
  they come with; a request that does not authenticate never makes a budget of its own;
- **per client address**, for requests that end unauthenticated (the sign-in page, static
  files, docs, 401s, 404s): counted by :class:`RateLimit` after the app answered;
- **per client address, failed authentication** (an unknown token, session or sign-in,
  :func:`count_failure`): a small burst, then a few a minute, so guessing tokens crawls (the
  same wrong secret sent again, like a stale cookie, counts once).

:class:`RateLimit` refuses, before the app runs, every request of an address that has used up
either of its address budgets, so a blocked guesser learns nothing from a right guess either.
Budgets are kept by :class:`Throttle`, in bounded memory.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from crowdtune.server.inputs import BodyTooLarge, read_body, replay


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
        try:
            body = await read_body(receive, self.max_bytes)
        except BodyTooLarge:
            await self._too_large(None)(scope, receive, send)
            return
        if body is None:  # the client went away
            return
        await self.app(scope, replay(body, receive), send)


#: How many failed authentications (unknown token, session or sign-in) one address may make
#: at once, and then per minute.
FAILED_AUTH_BURST = 10
FAILED_AUTH_PER_MINUTE = 5
#: A wrong secret sent again within this many minutes is not counted again (a stale session
#: cookie, a client retrying with a revoked token): a guess is a new wrong secret.
REPEATED_FAILURE_MINUTES = 10
#: The most keys (contributors or addresses) one :class:`Throttle` remembers.
THROTTLE_KEYS = 50_000
#: Where :class:`RateLimit` leaves the request's :class:`Ticket` in the ASGI scope.
TICKET = "crowdtune.rate_limit"


# The budgets are written here rather than taken from a library. None of the usual ones is
# installed (slowapi, limits, cachetools); pyrate-limiter is, but only as schemathesis'
# dependency (a dev extra), and it is built for clients that wait: a bucket object with its own
# lock per key, which we would still have to bound and expire ourselves, and its GCRA is an
# internal class in version 4. GCRA itself is a few lines: one float per key, an exact wait.
class Throttle:
    """At most ``burst`` events per key at once, refilled at ``per_minute`` (the generic cell
    rate algorithm: one "theoretical arrival time" per key).

    Memory is bounded: a key whose time has passed is forgotten (it would be admitted as if
    new), and past ``max_keys`` the least recently counted key is forgotten (it gets a fresh
    budget: forgetting only ever forgives).

    >>> clock = iter([0.0, 0.0, 0.0, 30.0]).__next__
    >>> throttle = Throttle(per_minute=2, burst=2, clock=clock)
    >>> [throttle.hit("ann") for _ in range(3)]  # two at once, then wait 30 s for the third
    [0.0, 0.0, 30.0]
    >>> throttle.hit("ann")
    0.0
    """

    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        max_keys: int = THROTTLE_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute <= 0 or burst < 1 or max_keys < 1:
            raise ValueError(
                f"a throttle needs per_minute > 0, burst >= 1 and max_keys >= 1; got "
                f"{per_minute}, {burst} and {max_keys}"
            )
        self.per_minute, self.burst, self.max_keys, self.clock = per_minute, burst, max_keys, clock
        self.interval = 60.0 / per_minute
        self._due: OrderedDict[Hashable, float] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._due)

    def _wait(self, due: float, now: float) -> float:
        # Seconds until one more event fits: it would move ``due`` one interval on, and ``due``
        # may run at most ``burst`` intervals ahead of now. Written so that a key with nothing
        # owed waits exactly 0 (``now + interval - now - interval`` can round above 0).
        return max(0.0, (max(due, now) - now) - (self.burst - 1) * self.interval)

    def wait(self, key: Hashable) -> float:
        """Seconds until ``key`` may have one more event (0: now), counting nothing."""
        now = self.clock()
        with self._lock:
            return self._wait(self._due.get(key, now), now)

    def hit(self, key: Hashable, *, force: bool = False) -> float:
        """Count one event for ``key`` and return 0, or, over the limit, count nothing and
        return the seconds to wait. ``force`` counts it anyway (the event happened: a failed
        sign-in), so the wait grows with every event past the limit."""
        now = self.clock()
        with self._lock:
            due = self._due.get(key, now)
            wait = self._wait(due, now)
            if wait > 0 and not force:
                return wait
            self._due[key] = max(due, now) + self.interval
            self._due.move_to_end(key)
            # Forget keys whose time has passed (a couple per call keeps up with the inserts).
            for _ in range(2):
                oldest, oldest_due = next(iter(self._due.items()))
                if oldest_due > now or oldest == key:
                    break
                del self._due[oldest]
            while len(self._due) > self.max_keys:
                self._due.popitem(last=False)
            return wait


class RateLimits:
    """The app's three budgets (see the module's docstring): ``contributors`` and
    ``addresses`` allow ``per_minute`` requests on average with bursts as large, ``failures``
    ``failed_auth_burst`` failed authentications at once and ``failed_auth_per_minute`` after."""

    def __init__(
        self,
        per_minute: int,
        *,
        failed_auth_per_minute: float = FAILED_AUTH_PER_MINUTE,
        failed_auth_burst: int = FAILED_AUTH_BURST,
        max_keys: int = THROTTLE_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = per_minute
        self.contributors = Throttle(per_minute, per_minute, max_keys=max_keys, clock=clock)
        self.addresses = Throttle(per_minute, per_minute, max_keys=max_keys, clock=clock)
        self.failures = Throttle(
            failed_auth_per_minute, failed_auth_burst, max_keys=max_keys, clock=clock
        )
        # Wrong secrets seen lately, by (address, digest): each is admitted once per period.
        self.wrong_secrets = Throttle(
            1 / REPEATED_FAILURE_MINUTES, 1, max_keys=max_keys, clock=clock
        )

    def fail(self, address: str, secret: str) -> None:
        """Count a failed authentication from ``address`` with ``secret``, unless the same
        wrong secret came from there lately."""
        digest = hashlib.blake2b(secret.encode(errors="replace"), digest_size=16).digest()
        if self.wrong_secrets.hit((address, digest)) == 0:
            self.failures.hit(address, force=True)

    def sizes(self) -> dict[str, int]:
        """How many keys each budget remembers now."""
        return {
            "contributors": len(self.contributors),
            "addresses": len(self.addresses),
            "failures": len(self.failures),
            "wrong_secrets": len(self.wrong_secrets),
        }


class RateLimited(Exception):
    """Too many requests: answered 429 with ``Retry-After: seconds``."""

    def __init__(self, seconds: float, message: str) -> None:
        self.seconds = max(1, math.ceil(seconds))
        super().__init__(f"{message}; retry in {self.seconds} s")

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.seconds)}


@dataclass
class Ticket:
    """What :class:`RateLimit` leaves in a request's scope for the counters the routes call."""

    limits: RateLimits
    address: str
    authenticated: bool = False


def client_address(scope: Scope) -> str:
    """The address a request's budget is kept for: the client's IP address (an IPv6 address by
    its /64, which one machine usually has whole), else whatever the server named it."""
    client = scope.get("client")
    return _budget_address(str(client[0]) if client else "unknown")


@functools.lru_cache(maxsize=4096)
def _budget_address(host: str) -> str:
    # Cached: parsing the address took dozens of Python calls on every request.
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def count_contributor(request: Request, contributor_id: int) -> None:
    """Count a request of an authenticated contributor (call it after authentication);
    :class:`RateLimited` past their budget. A no-op in an app without :class:`RateLimit`."""
    ticket: Ticket | None = request.scope.get(TICKET)
    if ticket is None:
        return
    ticket.authenticated = True
    wait = ticket.limits.contributors.hit(contributor_id)
    if wait > 0:
        raise RateLimited(
            wait, f"rate limit of {ticket.limits.per_minute} requests per minute exceeded"
        )


def count_failure(request: Request, secret: str) -> None:
    """Count a failed authentication from the request's address: ``secret`` (a token or
    session id) is unknown, expired or revoked. The same wrong secret again within
    :data:`REPEATED_FAILURE_MINUTES` counts once. The request still gets its own answer (401);
    once the address has used up its failures, :class:`RateLimit` refuses what it sends
    next."""
    ticket: Ticket | None = request.scope.get(TICKET)
    if ticket is not None:
        ticket.limits.fail(ticket.address, secret)


#: Builds an error response: (request, status, message, headers) -> response.
ErrorAnswer = Callable[[Request, int, str, dict[str, str]], Awaitable[Response]]


async def json_error(
    request: Request, status: int, message: str, headers: dict[str, str]
) -> Response:
    """An error as ``{"detail": message}`` (:class:`RateLimit`'s default answer)."""
    return JSONResponse({"detail": message}, status, headers=headers)


class RateLimit:
    """Refuse (429 with ``Retry-After``) every request of an address that used up its budget
    of unauthenticated requests or of failed authentications, and count the requests that end
    unauthenticated against their address (see :class:`RateLimits`).

    ``answer`` builds the refusal (the app's: JSON under the API, an error page elsewhere).
    """

    def __init__(self, app: ASGIApp, limits: RateLimits, answer: ErrorAnswer = json_error) -> None:
        self.app, self.limits, self.answer = app, limits, answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        address = client_address(scope)
        failures = self.limits.failures.wait(address)
        wait = max(failures, self.limits.addresses.wait(address))
        if wait > 0:
            why = "failed sign-ins or tokens" if failures else "requests without signing in"
            refused = RateLimited(wait, f"too many {why} from your address")
            response = await self.answer(Request(scope), 429, str(refused), refused.headers)
            await response(scope, receive, send)
            return
        ticket = Ticket(self.limits, address)
        scope[TICKET] = ticket
        try:
            await self.app(scope, receive, send)
        finally:
            if not ticket.authenticated:
                self.limits.addresses.hit(address, force=True)
