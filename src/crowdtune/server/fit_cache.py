"""A small in-process cache of per-project fits that are slow to compute and change only when
the project's answers do: each contributor's Dawid–Skene reliability on the stats and the admin
page (about 5 s at MT-Bench's size, with its bootstrap) is fitted once per state of the votes,
not on every view.

Each app has its own cache (``app.state.reliability_cache``), so two apps on two databases
never share an entry. An entry is keyed by the project and a *version* of what the fit read
(:func:`votes_version`: the number of votes and a digest of them); a view with another version
refits and replaces the project's entry. Sync routes run on worker threads, so the cache is
locked, and one lock per project makes a second view of the same state wait for the first fit
instead of fitting again.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import pandas as pd

#: Projects whose last fit is kept (least recently viewed dropped first).
MAX_PROJECTS = 256


def votes_version(frame: pd.DataFrame, columns: tuple[str, ...]) -> tuple[int, str]:
    """``(rows, digest)`` of ``frame``'s ``columns``: changes when a row is added, removed or
    edited."""
    hashes = pd.util.hash_pandas_object(frame[list(columns)], index=False).to_numpy()
    return len(frame), hashlib.sha256(hashes.tobytes()).hexdigest()[:16]


class FitCache:
    """The last result of a fit per project and the version of the data it was fitted on.

    :meth:`get` returns the stored result while the version is the same and otherwise calls
    ``compute`` (counted in :attr:`fits`) and stores what it returns.
    """

    def __init__(self, max_projects: int = MAX_PROJECTS) -> None:
        self.max_projects = max_projects
        self.fits = 0
        self._entries: OrderedDict[int, tuple[Hashable, Any]] = OrderedDict()
        self._locks: dict[int, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, project_id: int, version: Hashable, compute: Callable[[], Any]) -> Any:
        """The result for ``project_id`` at ``version``: stored, or computed now."""
        with self._lock:
            project_lock = self._locks.setdefault(project_id, threading.Lock())
        with project_lock:
            with self._lock:
                entry = self._entries.get(project_id)
                if entry is not None and entry[0] == version:
                    self._entries.move_to_end(project_id)
                    return entry[1]
            result = compute()
            with self._lock:
                self.fits += 1
                self._entries[project_id] = (version, result)
                self._entries.move_to_end(project_id)
                while len(self._entries) > self.max_projects:
                    dropped, _ = self._entries.popitem(last=False)
                    self._locks.pop(dropped, None)
            return result
