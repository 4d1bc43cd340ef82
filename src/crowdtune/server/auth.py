"""Who is calling: the signed-in contributor of a request, and a short-lived cache of tokens.

Looking a token up costs a database round trip on a worker thread; under load that is a third
of a vote's work. :class:`TokenCache` remembers, for ``ttl`` seconds, which contributor a token
that was just accepted belongs to, so the next requests of the same annotator are checked on
the event loop. Unknown tokens are never cached (a new contributor can sign in at once); a
contributor whose role or token changes in the database is seen with the new one within
``ttl`` seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

#: How long a token's owner is remembered, in seconds.
TOKEN_TTL_SECONDS = 10.0
#: Most tokens remembered at once; past this the cache starts afresh.
TOKEN_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Caller:
    """The contributor behind a request: what routes need, detached from any session."""

    id: int
    name: str
    role: str


class TokenCache:
    """Token hash -> :class:`Caller`, each entry valid for ``ttl`` seconds.

    >>> cache = TokenCache(ttl=10.0)
    >>> cache.put("h", Caller(1, "ann", "annotator"), now=0.0)
    >>> cache.get("h", now=5.0)
    Caller(id=1, name='ann', role='annotator')
    >>> cache.get("h", now=10.5) is None
    True
    """

    def __init__(self, ttl: float = TOKEN_TTL_SECONDS, size: int = TOKEN_CACHE_SIZE) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: dict[str, tuple[float, Caller]] = {}

    def get(self, token_hash: str, now: float | None = None) -> Caller | None:
        """The caller for this token hash if it was stored less than ``ttl`` seconds ago."""
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        expires, caller = entry
        if (time.monotonic() if now is None else now) >= expires:
            del self._entries[token_hash]
            return None
        return caller

    def put(self, token_hash: str, caller: Caller, now: float | None = None) -> None:
        """Remember ``caller`` for ``ttl`` seconds from ``now``."""
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[token_hash] = ((time.monotonic() if now is None else now) + self.ttl, caller)
