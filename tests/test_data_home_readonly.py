"""The data home is only read: everything derived goes under the cache directory.

Tests run as root, whom missing write bits do not stop, so "read-only" is checked as "nothing under
the data home changes": the path, size and modification time of every file and folder under
``$CROWDTUNE_DATA`` before and after the commands that cache, with ``$CROWDTUNE_CACHE`` pointing
at a fresh folder where every artefact must appear instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from crowdtune.cli import app
from crowdtune.curation.scoring import default_scorer
from crowdtune.datasets.home import CACHE_KINDS, cache_dir, cache_home, data_home
from crowdtune.spaces import emotions
from crowdtune.spaces.text import M2V_DIRNAME, TextEncoder, load_m2v
from crowdtune.training.models import SMOLLM2_DIRNAME, smollm2_checkpoint

#: A classifier that fits on all of GoEmotions in seconds (m2v vectors, no n-grams).
FAST_EMOTIONS = {"encoder": "m2v", "ngrams": False, "max_iter": 50}


def snapshot(folder: Path) -> dict[str, tuple[int, int] | None]:
    """``relative path -> (size, mtime_ns)`` of every file under ``folder`` (None: a folder)."""
    out: dict[str, tuple[int, int] | None] = {}
    for path in sorted(folder.rglob("*")):
        status = path.stat()
        key = str(path.relative_to(folder))
        out[key] = (status.st_size, status.st_mtime_ns) if path.is_file() else None
    return out


def test_every_cache_path_is_under_the_cache_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CROWDTUNE_CACHE", str(tmp_path / "cache"))
    assert cache_home() == tmp_path / "cache"
    assert {kind: cache_dir(kind) for kind in CACHE_KINDS} == {
        kind: tmp_path / "cache" / kind for kind in ("embeddings", "models", "emotions", "quality")
    }
    with pytest.raises(ValueError, match="unknown cache kind 'checkpoints'; choose one of"):
        cache_dir("checkpoints")
    assert emotions.default_classifier_path().parent == tmp_path / "cache" / "emotions"
    result = CliRunner().invoke(app, ["data", "cache"])
    assert result.exit_code == 0 and result.stdout.strip() == str(tmp_path / "cache")
    monkeypatch.delenv("CROWDTUNE_CACHE")
    assert cache_home() == Path("~/.cache/crowdtune").expanduser()


@pytest.mark.slow
def test_commands_that_cache_leave_the_data_home_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = data_home()
    assert (home / "goemotions").is_dir() and (home / "car-expert-revised").is_dir()
    before = snapshot(home)
    monkeypatch.setenv("CROWDTUNE_CACHE", str(tmp_path))

    # SmolLM2-135M-Instruct converted from its packaged GGUF (the real dequantization, ~30 s).
    checkpoint = smollm2_checkpoint()
    assert checkpoint == tmp_path / "models" / SMOLLM2_DIRNAME
    assert (checkpoint / "config.json").is_file() and smollm2_checkpoint() == checkpoint

    # model2vec distilled from MiniLM, and MiniLM vectors in the SQLite cache.
    load_m2v()
    assert (tmp_path / "models" / M2V_DIRNAME / "config.json").is_file()
    vectors = TextEncoder("minilm").encode(["a text to embed", "another one"], progress=False)
    assert vectors.shape == (2, 384) and (tmp_path / "embeddings" / "embeddings.sqlite").is_file()

    # The default emotion classifier fitted on GoEmotions, then its scores of a split beside it.
    fitted = emotions.fit_default(FAST_EMOTIONS, progress=False)
    classifier_file = emotions.default_classifier_path(FAST_EMOTIONS)
    assert classifier_file.parent == tmp_path / "emotions" and classifier_file.is_file()
    loaded = emotions.load_default(FAST_EMOTIONS, fit_if_missing=False)
    np.testing.assert_array_equal(loaded.thresholds_, fitted.thresholds_)
    monkeypatch.setattr(emotions, "default_classifier_path", lambda params=None: classifier_file)
    monkeypatch.setattr(emotions, "load_default", lambda **kwargs: loaded)
    texts, scores = emotions.pool_scores(split="dev")
    assert scores.shape == (len(texts), 28)
    assert classifier_file.with_name(f"{classifier_file.stem}.scores-dev.npz").is_file()

    # The default quality scorer fitted on CaR's expert pairs (text features only: seconds).
    default_scorer({"views": "", "C": 0.03})
    assert len(list((tmp_path / "quality").glob("embedding-*.joblib"))) == 1

    assert {path.name for path in tmp_path.iterdir()} <= set(CACHE_KINDS)
    assert snapshot(home) == before
