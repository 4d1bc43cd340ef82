"""Who is calling: the signed-in contributor of a request, and a short-lived cache of tokens.

Looking a token up costs a database round trip on a worker thread; under load that is a third
of a vote's work. :class:`TokenCache` remembers, for ``ttl`` seconds, which contributor a token
that was just accepted belongs to, so the next requests of the same annotator are checked on
the event loop. Unknown, expired and revoked tokens are never cached (a new contributor can
sign in at once), and a cached token is checked against its expiry on every request.

Revoking or rotating a token in this process (:func:`crowdtune.store.repository.revoke_token`,
:func:`~crowdtune.store.repository.rotate_token`) drops it from the cache at once: the cache
listens through :func:`crowdtune.store.repository.on_token_change`. A change made by another
process (``crowdtune users revoke`` while the server runs) is seen within ``ttl`` seconds
(:data:`TOKEN_TTL_SECONDS`): until then the server may still accept the old token on the
bearer API. Sign-in sessions are not cached, so they end everywhere at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime

from crowdtune.store.repository import on_token_change

#: How long a token's owner is remembered, in seconds: the longest another process's revocation
#: or rotation takes to reach the bearer API of a running server.
TOKEN_TTL_SECONDS = 10.0
#: Most tokens remembered at once; past this the cache starts afresh.
TOKEN_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Caller:
    """The contributor behind a request: what routes need, detached from any session.
    ``expires_at`` is when their token stops working (None: not before it is revoked)."""

    id: int
    name: str
    role: str
    expires_at: datetime | None = None


class TokenCache:
    """Token hash -> :class:`Caller`, each entry valid for ``ttl`` seconds.

    Safe to use from several threads. :meth:`forget_contributor` drops a contributor's entries;
    a lookup that began before it (``generation`` read earlier) is then not stored, so a token
    revoked while it was being looked up is not remembered.

    >>> cache = TokenCache(ttl=10.0)
    >>> cache.put("h", Caller(1, "ann", "annotator"), now=0.0)
    >>> cache.get("h", now=5.0)
    Caller(id=1, name='ann', role='annotator', expires_at=None)
    >>> cache.get("h", now=10.5) is None
    True
    >>> cache.put("h", Caller(1, "ann", "annotator"), now=0.0)
    >>> cache.forget_contributor(1)
    >>> cache.get("h", now=1.0) is None
    True
    """

    def __init__(self, ttl: float = TOKEN_TTL_SECONDS, size: int = TOKEN_CACHE_SIZE) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: dict[str, tuple[float, Caller]] = {}
        self._lock = threading.Lock()
        self._generation = 0
        on_token_change(self)

    @property
    def generation(self) -> int:
        """A number that grows each time an entry is forgotten."""
        return self._generation

    def get(self, token_hash: str, now: float | None = None) -> Caller | None:
        """The caller for this token hash if it was stored less than ``ttl`` seconds ago."""
        with self._lock:
            entry = self._entries.get(token_hash)
            if entry is None:
                return None
            expires, caller = entry
            if (time.monotonic() if now is None else now) >= expires:
                del self._entries[token_hash]
                return None
            return caller

    def put(
        self,
        token_hash: str,
        caller: Caller,
        now: float | None = None,
        *,
        generation: int | None = None,
    ) -> None:
        """Remember ``caller`` for ``ttl`` seconds from ``now``, unless a contributor was
        forgotten since ``generation`` was read (the lookup may be stale)."""
        with self._lock:
            if generation is not None and generation != self._generation:
                return
            if len(self._entries) >= self.size:
                self._entries.clear()
            expires = (time.monotonic() if now is None else now) + self.ttl
            self._entries[token_hash] = (expires, caller)

    def forget_contributor(self, contributor_id: int) -> None:
        """Drop every token of this contributor (their token was revoked or replaced)."""
        with self._lock:
            self._generation += 1
            stale = [
                key for key, (_, caller) in self._entries.items() if caller.id == contributor_id
            ]
            for key in stale:
                del self._entries[key]
