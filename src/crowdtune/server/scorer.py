"""The CaR quality scorer of a server process (:class:`QualityScorer`): loaded once from the
cache when it has been fitted on this machine, never fitted here, with the scores of the texts
it has seen kept. Light to import: the scorer's libraries load on first use, so the server
starts without them.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np


class TextScorer(Protocol):
    """A quality scorer: one number per item text (as :func:`crowdtune.crowd.signals.quality_gains`
    takes it)."""

    def score(self, texts: Sequence[str]) -> np.ndarray: ...


#: The CaR quality scorer the server uses: the static (model2vec) encoder, which scores a
#: revision in about 5 ms on one core (the MiniLM encoder is about 60 times slower).
SCORER_PARAMS = {"encoder": "m2v"}
#: How to get the scorer fitted, for the reason shown while it is not.
FIT_SCORER_HINT = (
    "the CaR quality scorer is not fitted on this machine yet; run `make demo` or "
    "`crowdtune serve --sample` once (it is cached and loaded from then on)"
)


class QualityScorer:
    """The CaR quality scorer of this process, loaded once from the cache (never fitted here),
    with the scores of the texts it has seen kept (at most ``max_texts``, least recently used
    dropped): the admin page asks for the same revisions again and again.

    Thread-safe: pages are served on worker threads. ``scorer`` replaces the CaR scorer (any
    object with ``score(texts) -> array`` that reads CaR's item text).
    """

    def __init__(
        self,
        params: dict[str, Any] | None = None,
        *,
        scorer: TextScorer | None = None,
        max_texts: int = 100_000,
    ) -> None:
        self.params = dict(SCORER_PARAMS if params is None else params)
        self.max_texts = max_texts
        self._lock = threading.Lock()
        self._scorer: TextScorer | None = scorer
        self._memo: OrderedDict[str, float] = OrderedDict()

    def available(self) -> TextScorer | None:
        """The scorer when it is fitted and cached on this machine (loaded on first use)."""
        with self._lock:
            if self._scorer is None:
                # Deferred: the curation package loads scikit-learn and an encoder, kept off the
                # server's start (and off servers that never show a revision project).
                from crowdtune.curation.scoring import cached_default_scorer

                self._scorer = cached_default_scorer(self.params)
            return self._scorer

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """The quality score of each text (those not seen before are scored in one batch)."""
        scorer = self.available()
        if scorer is None:
            raise RuntimeError(FIT_SCORER_HINT)
        with self._lock:
            new = [t for t in dict.fromkeys(texts) if t not in self._memo]
        fresh = np.asarray(scorer.score(new), dtype=float) if new else np.empty(0)
        with self._lock:
            self._memo.update(zip(new, fresh.tolist(), strict=True))
            scores = [self._memo[t] if t in self._memo else math.nan for t in texts]
            for text in texts:
                if text in self._memo:
                    self._memo.move_to_end(text)
            while len(self._memo) > self.max_texts:
                self._memo.popitem(last=False)
        return np.asarray(scores, dtype=float)
