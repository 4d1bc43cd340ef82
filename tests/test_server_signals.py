"""The quality signals of revision and rating projects as the server computes them from the
store: agreement and gold accuracy of ratings, edits, quality gain and gold accuracy of
revisions, and the annotators' leak rule (closed items only)."""

import numpy as np
import pytest

from crowdtune.server.scorer import FIT_SCORER_HINT, QualityScorer
from crowdtune.server.signals import contributor_signals, project_signals
from crowdtune.store import make_engine, session_factory, upgrade
from crowdtune.store import repository as repo


@pytest.fixture
def session(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    upgrade(url)
    engine = make_engine(url)
    with session_factory(engine)() as session:
        yield session
    engine.dispose()


def _answer_all(session, project_id, people, answer):
    for person in people:
        while (task := repo.next_task(session, project_id, person.id)) is not None:
            repo.submit_response(session, task.id, person.id, **answer(person, task))


def test_rating_signals_rank_a_random_rater_last_and_score_gold(session):
    project = repo.create_project(session, "rate", kind="rating", overlap=3, scale=(1, 7))
    truth = np.random.default_rng(0).integers(1, 8, size=40)
    items = [{"prompt": f"q{i}", "response": f"a{i}"} for i in range(40)]
    items[0]["gold"] = int(truth[0])
    items[1]["gold"] = [max(1, int(truth[1]) - 1), min(7, int(truth[1]) + 1)]
    repo.add_items(session, project.id, items)
    people = [repo.create_contributor(session, name)[0] for name in ("ann", "bob", "rnd")]
    noise = np.random.default_rng(1)

    def answer(person, task):
        true = int(truth[task.item_id - 1])
        score = int(noise.integers(1, 8)) if person.name == "rnd" else true
        return {"score": score}

    _answer_all(session, project.id, people, answer)
    signals = project_signals(session, project.id, n_bootstrap=50)
    assert signals["n_ratings"] == 120
    alphas = {r["contributor"]: r["alpha_interval"] for r in signals["agreement"]["raters"]}
    assert alphas["rnd"] < min(alphas["ann"], alphas["bob"])
    assert signals["gold"]["n_gold"] == 6  # two gold items, three raters each
    rows = contributor_signals(signals)
    assert rows["ann"]["gold_correct"] == rows["bob"]["gold_correct"] == 2
    assert set(rows["rnd"]) >= {"alpha_interval", "alpha_ordinal", "gold_accuracy"}


def test_revision_signals_gain_gold_and_the_leak_rule(session):
    project = repo.create_project(session, "rev", kind="revision", overlap=2)
    repo.add_items(
        session,
        project.id,
        [
            {"prompt": "Name a colour.", "response": "red", "reference": "Red is a colour."},
            {"prompt": "Say hi.", "response": "hi"},
        ],
    )
    ann, _ = repo.create_contributor(session, "ann")
    bob, _ = repo.create_contributor(session, "bob")
    task = repo.next_task(session, project.id, ann.id)
    repo.submit_response(session, task.id, ann.id, revision="Red is a colour.")

    class Length:  # a stand-in scorer: longer is better
        def score(self, texts):
            return np.array([len(t) for t in texts], dtype=float)

    scorer = QualityScorer(scorer=Length())
    # one answer so far: an annotator's view shows nothing of the open item
    closed = project_signals(session, project.id, closed_only=True, scorer=scorer)
    assert closed["revisions"]["n_revisions"] == 0 and closed["gold"]["n_gold"] == 0
    task = repo.next_task(session, project.id, bob.id)
    assert task.item_id == 1  # depth first: the item ann started
    repo.submit_response(session, task.id, bob.id, revision="red")
    signals = project_signals(session, project.id, closed_only=True, scorer=scorer)
    revisions = signals["revisions"]
    assert (revisions["n_revisions"], revisions["unchanged_rate"]) == (2, 0.5)
    gain = len("Red is a colour.") - len("red")  # ann's; bob left it unchanged (gain 0)
    assert revisions["gain"]["mean"] == pytest.approx(gain / 2)
    assert signals["gold"]["n_correct"] == 1  # ann moved to the reference, bob did not
    rows = contributor_signals(signals)
    assert rows["bob"]["unchanged_rate"] == 1.0 and rows["ann"]["gold_accuracy"] == 1.0


def test_without_a_fitted_scorer_the_gain_says_how_to_get_one(session, monkeypatch):
    import crowdtune.curation.scoring as scoring

    monkeypatch.setattr(scoring, "cached_default_scorer", lambda params=None: None)
    project = repo.create_project(session, "rev", kind="revision")
    repo.add_items(session, project.id, [{"prompt": "p", "response": "r"}])
    ann, _ = repo.create_contributor(session, "ann")
    task = repo.next_task(session, project.id, ann.id)
    repo.submit_response(session, task.id, ann.id, revision="r, better")
    signals = project_signals(session, project.id, scorer=QualityScorer())
    assert signals["revisions"]["gain"] is None
    assert signals["revisions"]["gain_reason"] == FIT_SCORER_HINT
    assert project_signals(session, repo.create_project(session, "pw").id) is None
