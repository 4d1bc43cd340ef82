"""The emotion space: the GoEmotions loader, the classifier, emotion targets, the CLI."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from typer.testing import CliRunner

from crowdtune.cli import app
from crowdtune.datasets.goemotions import GOEMOTIONS_LABELS, load_goemotions
from crowdtune.datasets.home import DatasetFormatError, DatasetMissingError, data_home
from crowdtune.spaces import emotions
from crowdtune.spaces.emotions import (
    EmotionClassifier,
    distance_to_target,
    emotion_point,
    emotion_target,
    multilabel_f1,
    tune_thresholds,
)

runner = CliRunner()
N_TRAIN, N_DEV, N_TEST = 4000, 1000, 600


# ------------------------------------------------------------------------------------- loader


@pytest.mark.parametrize(("split", "rows"), [("train", 43410), ("dev", 5426), ("test", 5427)])
def test_loader_reads_the_real_splits(split: str, rows: int) -> None:
    data = load_goemotions(split)
    assert len(data) == len(data.ids) == rows
    assert data.labels.shape == (rows, 28) and data.label_names == GOEMOTIONS_LABELS
    assert data.labels.sum(axis=1).min() >= 1  # every row has at least one label
    assert 0.14 < (data.labels.sum(axis=1) > 1).mean() < 0.18  # SOURCE.md: 15-16 % multi-label
    if split == "train":
        assert data.labels[:, GOEMOTIONS_LABELS.index("neutral")].sum() == 14219


def _small_home(tmp_path: Path, train_lines: list[str]) -> Path:
    folder = tmp_path / "goemotions"
    folder.mkdir()
    shutil.copy(data_home() / "goemotions" / "emotions.txt", folder / "emotions.txt")
    (folder / "train.tsv.gz").write_bytes(gzip.compress("\n".join(train_lines).encode()))
    return tmp_path


def test_loader_names_file_and_line_of_a_malformed_row(tmp_path: Path) -> None:
    home = _small_home(tmp_path, ["so happy\t17\tid1", 'he said ""hi""\t17,27\tid2', "oops\t28\tx"])
    with pytest.raises(DatasetFormatError, match=r"train\.tsv\.gz, data row 3.*line 3.*\[0, 28\)"):
        load_goemotions("train", home=home)
    home2 = tmp_path / "other"
    home2.mkdir()
    _small_home(home2, ["fine\t1\tid1", "no columns here"])
    with pytest.raises(DatasetFormatError, match="line 2: expected 3 tab-separated columns"):
        load_goemotions("train", home=home2)


def test_loader_keeps_quotes_and_multi_labels(tmp_path: Path) -> None:
    home = _small_home(tmp_path, ["so happy\t17\tid1", 'he said ""hi""\t17,27\tid2'])
    data = load_goemotions("train", home=home)
    assert data.texts == ["so happy", 'he said ""hi""'] and data.ids == ["id1", "id2"]
    assert data.labels[1, [17, 27]].tolist() == [1, 1] and data.labels[1].sum() == 2


def test_loader_raises_missing_naming_the_file(tmp_path: Path) -> None:
    home = _small_home(tmp_path, ["so happy\t17\tid1"])
    with pytest.raises(DatasetMissingError, match=r"dev\.tsv\.gz"):
        load_goemotions("dev", home=home)
    with pytest.raises(ValueError, match="unknown GoEmotions split"):
        load_goemotions("validation", home=home)


# --------------------------------------------------------------------------------- classifier


@pytest.fixture(scope="module")
def small_fit() -> tuple[EmotionClassifier, dict[str, object]]:
    """An m2v classifier (default n-grams) fitted on 4,000 real train texts, thresholds tuned on
    1,000 dev texts: seconds, where MiniLM would embed for minutes on a cold cache."""
    train, dev, test = load_goemotions("train"), load_goemotions("dev"), load_goemotions("test")
    classifier = EmotionClassifier(encoder="m2v", progress=False)
    classifier.fit(
        train.texts[:N_TRAIN], train.labels[:N_TRAIN], dev.texts[:N_DEV], dev.labels[:N_DEV]
    )
    return classifier, {"dev": dev, "test": test}


def test_classifier_beats_the_trivial_baseline_on_real_test(small_fit) -> None:
    classifier, data = small_fit
    test = data["test"]
    texts, truth = test.texts[:N_TEST], test.labels[:N_TEST]
    scores = classifier.predict_proba(texts)
    assert scores.shape == (N_TEST, 28) and ((scores >= 0) & (scores <= 1)).all()
    result = multilabel_f1(truth, classifier.predict(texts))
    # Trivial baseline: call everything neutral (the most frequent label).
    neutral = np.zeros_like(truth)
    neutral[:, GOEMOTIONS_LABELS.index("neutral")] = 1
    baseline = multilabel_f1(truth, neutral)
    assert baseline["micro_f1"] < 0.33
    # Measured: micro 0.466, macro 0.345 (all-neutral: micro about 0.30, macro about 0.02).
    assert result["micro_f1"] > max(0.40, baseline["micro_f1"] + 0.08)
    assert result["macro_f1"] > 0.25 > 10 * baseline["macro_f1"]
    assert classifier.score(texts, truth) == pytest.approx(result["micro_f1"])


def test_thresholds_come_from_dev(small_fit) -> None:
    classifier, data = small_fit
    dev = data["dev"]
    assert classifier.threshold_source_ == "dev"
    dev_scores = classifier.predict_proba(dev.texts[:N_DEV])
    np.testing.assert_array_equal(
        classifier.thresholds_, tune_thresholds(dev_scores, dev.labels[:N_DEV])
    )
    assert not np.allclose(classifier.thresholds_, 0.5)
    # Tuned thresholds are at least as good on dev as 0.5 for every label.
    tuned = multilabel_f1(dev.labels[:N_DEV], classifier.predict(dev.texts[:N_DEV]))
    half = multilabel_f1(dev.labels[:N_DEV], (dev_scores >= 0.5).astype(int))
    assert all(
        t >= h - 1e-12 for t, h in zip(tuned["per_label_f1"], half["per_label_f1"], strict=True)
    )


def test_tune_thresholds_picks_the_f1_maximiser() -> None:
    scores = np.array([[0.9, 0.1], [0.7, 0.2], [0.3, 0.3], [0.1, 0.4]])
    labels = np.array([[1, 0], [1, 0], [0, 0], [0, 0]])
    thresholds = tune_thresholds(scores, labels)
    assert 0.3 < thresholds[0] <= 0.7  # separates the two positives from the rest
    assert thresholds[1] == 0.5  # no positives: nothing to tune


def test_estimator_api_get_params_clone_and_holdout() -> None:
    classifier = EmotionClassifier(encoder="m2v", C=0.3)
    assert classifier.get_params()["C"] == 0.3 and classifier.get_params()["encoder"] == "m2v"
    twin = clone(classifier)
    assert twin.get_params() == classifier.get_params() and not hasattr(twin, "thresholds_")
    train = load_goemotions("train")
    twin.fit(train.texts[:600], train.labels[:600])  # no dev: thresholds from a 10 % hold-out
    assert twin.threshold_source_ == "holdout" and twin.thresholds_.shape == (28,)
    assert twin.predict(train.texts[:5]).shape == (5, 28)
    with pytest.raises(ValueError, match="Y must be"):
        twin.fit(train.texts[:10], train.labels[:9])


def test_default_classifier_is_cached_and_keyed(tmp_path: Path, monkeypatch) -> None:
    # A private data home holding small copies of train and dev, so the fit takes seconds.
    for split, rows in (("train", 500), ("dev", 200)):
        folder = tmp_path / "goemotions"
        folder.mkdir(exist_ok=True)
        shutil.copy(data_home() / "goemotions" / "emotions.txt", folder / "emotions.txt")
        with gzip.open(data_home() / "goemotions" / f"{split}.tsv.gz", "rt") as source:
            lines = [next(source) for _ in range(rows)]
        (folder / f"{split}.tsv.gz").write_bytes(gzip.compress("".join(lines).encode()))
    monkeypatch.setenv("CROWDTUNE_DATA", str(tmp_path))
    monkeypatch.setenv("CROWDTUNE_CACHE", str(tmp_path / "cache"))
    params = {"encoder": "m2v"}
    first = emotions.default_classifier_path(params)
    assert first.parent == tmp_path / "cache" / "emotions"  # never the data home
    assert f"v{emotions.EMOTION_MODEL_VERSION}" in first.name
    assert emotions.default_classifier_path({"encoder": "m2v", "C": 9.0}) != first
    with pytest.raises(FileNotFoundError):
        emotions.load_default(params, fit_if_missing=False)
    fitted = emotions.fit_default(params, progress=False)
    assert first.is_file() and fitted.threshold_source_ == "dev"
    assert not (tmp_path / "goemotions" / "models").exists()
    loaded = emotions.load_default(params, fit_if_missing=False)
    np.testing.assert_array_equal(loaded.thresholds_, fitted.thresholds_)


# ------------------------------------------------------------------------------------ targets


def test_emotion_target_on_real_scores(small_fit) -> None:
    classifier, data = small_fit
    scores = classifier.predict_proba(data["test"].texts[:N_TEST])
    joy = GOEMOTIONS_LABELS.index("joy")
    target = emotion_target("joy", scores, k=100)
    assert target.top_index == int(np.argmax(scores[:, joy]))
    assert len(target.indices) == 101 == len(set(target.indices.tolist()))
    assert target.indices[0] == target.top_index
    # The 100 neighbours are the nearest by Euclidean distance in the score space.
    distances = np.linalg.norm(scores - scores[target.top_index], axis=1)
    assert distances[target.indices].max() <= np.sort(distances)[100] + 1e-12
    members = scores[target.indices]
    np.testing.assert_allclose(target.centre, members.mean(axis=0))
    assert (target.low <= target.high).all()
    assert (target.low <= np.median(members, axis=0)).all()
    assert (np.median(members, axis=0) <= target.high).all()
    # The band holds the median; a skewed emotion's mean can fall outside its 25-75 % band.
    assert (members.min(axis=0) <= target.centre).all()
    assert (target.centre <= members.max(axis=0)).all()
    assert target.centre[joy] > scores[:, joy].mean()
    assert distance_to_target(target.centre, target.centre) == 0.0
    assert distance_to_target(target.centre, target.centre, metric="mean-abs") == 0.0
    by_index = emotion_target(joy, scores, k=100)
    np.testing.assert_array_equal(by_index.indices, target.indices)
    as_json = target.to_dict()
    assert as_json["k"] == 100 and len(as_json["centre"]) == 28


def test_distances_and_points() -> None:
    centre = np.zeros(28)
    points = np.zeros((2, 28))
    points[0, 0], points[1, :] = 3.0, 1.0
    np.testing.assert_allclose(distance_to_target(points, centre), [3.0, np.sqrt(28)])
    np.testing.assert_allclose(distance_to_target(points, centre, "mean-abs"), [3 / 28, 1.0])
    np.testing.assert_allclose(emotion_point(points), np.full(28, 0.5) + 1.5 * np.eye(28)[0])
    with pytest.raises(ValueError, match="unknown distance metric"):
        distance_to_target(points, centre, "cosine")
    with pytest.raises(ValueError, match="unknown emotion"):
        emotion_target("glee", np.random.default_rng(0).random((200, 28)))
    with pytest.raises(ValueError, match="k must be"):
        emotion_target("joy", np.random.default_rng(0).random((50, 28)), k=100)


# ---------------------------------------------------------------------------------------- CLI


def test_split_scores_are_cached_beside_the_default_classifier(
    small_fit, tmp_path: Path, monkeypatch
) -> None:
    classifier, _ = small_fit
    fitted = tmp_path / "models" / "classifier.joblib"
    fitted.parent.mkdir()
    fitted.write_bytes(b"a fitted classifier")
    monkeypatch.setattr(emotions, "default_classifier_path", lambda params=None: fitted)
    loads = []

    def load_default(**kwargs: object) -> EmotionClassifier:
        loads.append(1)
        return classifier

    monkeypatch.setattr(emotions, "load_default", load_default)
    texts, scores = emotions.pool_scores(split="dev")
    assert len(loads) == 1 and scores.shape == (len(texts), 28)
    np.testing.assert_allclose(scores, classifier.predict_proba(texts))
    assert (tmp_path / "models" / "classifier.scores-dev.npz").is_file()
    _, again = emotions.pool_scores(split="dev")  # from the cache: the classifier is not loaded
    assert len(loads) == 1
    np.testing.assert_array_equal(again, scores)
    fitted.write_bytes(b"another fit, a different file")  # a refit invalidates the cache
    emotions.pool_scores(split="dev")
    assert len(loads) == 2


def test_cli_evaluate_and_target_json(small_fit, tmp_path: Path, monkeypatch) -> None:
    classifier, _ = small_fit
    monkeypatch.setattr(emotions, "load_default", lambda **kwargs: classifier)
    # No cached scores of the real default classifier: the target uses this classifier.
    monkeypatch.setattr(emotions, "default_classifier_path", lambda p=None: tmp_path / "none")
    result = runner.invoke(app, ["emotions", "evaluate", "--json", "--limit", "200"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert set(summary) == {"micro_f1", "macro_f1", "n"} and summary["n"] == 200
    assert 0 < summary["macro_f1"] < summary["micro_f1"] < 1
    table = runner.invoke(app, ["emotions", "evaluate", "--split", "dev", "--limit", "100"])
    assert table.exit_code == 0 and "gratitude" in table.stdout and "micro-F1" in table.stdout
    target = runner.invoke(app, ["emotions", "target", "--emotion", "joy", "--json"])
    assert target.exit_code == 0, target.output
    shown = json.loads(target.stdout)
    assert shown["emotion"] == "joy" and shown["k"] == 100 and len(shown["indices"]) == 101
    assert shown["sentence"] == load_goemotions("test").texts[shown["top_index"]]
    bad = runner.invoke(app, ["emotions", "target", "--emotion", "glee"])
    assert bad.exit_code == 2 and "unknown --emotion" in bad.output
