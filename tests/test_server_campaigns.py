"""Revision and rating campaigns over HTTP, on SQLite and PostgreSQL: real CaR items imported
as JSON and as uploaded files, three annotators each (overlap 3, a skip picked up by a fourth),
every item complete; each export downloaded and parsed back; and the exports of a SQLite
campaign, loaded with ``datasets.load_dataset("json", ...)``, train one step of TRL's SFT, DPO,
reward and KTO trainers on the tiny model."""

from __future__ import annotations

import copy
import gzip
import io
import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from crowdtune.datasets import revision_items
from crowdtune.datasets.car import load_car_revisions
from crowdtune.datasets.ratings import read_ratings_jsonl
from crowdtune.datasets.revisions import read_revisions_jsonl
from crowdtune.records import Revision
from crowdtune.server import create_app
from crowdtune.server.scorer import FIT_SCORER_HINT, QualityScorer
from crowdtune.store import make_engine, session_factory, upgrade
from crowdtune.store.repository import create_contributor

API = "/api/v1"
#: CaR test pairs a campaign works on, and the overlap (k) of its projects.
N_ITEMS = 24
OVERLAP = 3
ANNOTATORS = ("ann", "bob", "cy")
#: The fourth annotator, who picks up the item cy skipped.
SPARE = "dee"
FORMULA = "=1+2"


def crowd(url: str) -> dict[str, dict[str, str]]:
    """An admin (root), the three annotators and the spare one: auth headers by name."""
    upgrade(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            people = [("root", "admin"), *((name, "annotator") for name in (*ANNOTATORS, SPARE))]
            tokens = {name: create_contributor(session, name, role)[1] for name, role in people}
    finally:
        engine.dispose()
    return {name: {"Authorization": f"Bearer {token}"} for name, token in tokens.items()}


def car_revisions() -> list[Revision]:
    return load_car_revisions("test")[:N_ITEMS]


def new_project(client: TestClient, root: dict[str, str], **body: Any) -> int:
    reply = client.post(f"{API}/projects", json={"overlap": OVERLAP, **body}, headers=root)
    assert reply.status_code == 201, reply.text
    return int(reply.json()["id"])


def gzipped_jsonl(rows: list[dict[str, Any]]) -> bytes:
    stream = io.BytesIO()
    with gzip.GzipFile(fileobj=stream, mode="wb") as out:
        out.write("".join(json.dumps(row) + "\n" for row in rows).encode())
    return stream.getvalue()


Answer = Callable[[str, int, dict[str, Any]], dict[str, Any]]


def work_through(
    client: TestClient,
    project: int,
    auth: dict[str, dict[str, str]],
    answer: Answer,
    names: tuple[str, ...] = ANNOTATORS,
) -> dict[str, list[dict[str, Any]]]:
    """The annotators ``names`` take turns, one task each, until none has any left;
    ``answer(name, n, task)`` gives the body of each one's ``n``-th answer. Returns the tasks
    each was shown."""
    shown: dict[str, list[dict[str, Any]]] = defaultdict(list)
    active = list(names)
    while active:
        for name in list(active):
            reply = client.get(f"{API}/projects/{project}/tasks/next", headers=auth[name])
            if reply.status_code == 204:
                active.remove(name)
                continue
            assert reply.status_code == 200, reply.text
            task = reply.json()
            body = answer(name, len(shown[name]), task)
            headers = {**auth[name], "Idempotency-Key": f"{name}-{task['task_id']}"}
            path = f"{API}/tasks/{task['task_id']}/responses"
            reply = client.post(path, json=body, headers=headers)
            assert reply.status_code == 201, reply.text
            shown[name].append(task)
    return shown


def export(client: TestClient, project: int, root: dict[str, str], fmt: str, **params: Any):
    reply = client.get(
        f"{API}/projects/{project}/export", params={"format": fmt, **params}, headers=root
    )
    assert reply.status_code == 200, (fmt, reply.text)
    return reply


def save(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


# ---------------------------------------------------------------------------------------------
# a revision campaign


def revise(name: str, n: int, task: dict[str, Any]) -> dict[str, Any]:
    """ann adds a summary line, bob keeps every fourth answer as it is and otherwise tidies
    it, cy skips her first task (saying why) and opens the others politely, dee adds one."""
    answer = task["item"]["response"]
    if name == "cy" and n == 0:
        return {"skip": True, "reason": "I do not know this topic well enough"}
    if name == "bob":
        return {"revision": answer if n % 4 == 0 else answer.strip() + "\n\nI hope this helps."}
    opening = {"ann": "In short: see below.\n\n", "cy": "Sure. ", "dee": "Here you go. "}
    return {"revision": opening[name] + answer, "seconds": 12.5}


def run_revision_campaign(client: TestClient, auth: dict[str, Any], tmp_path: Path) -> dict:
    """A revision project on CaR items (a third keep the expert revision as gold), half
    imported as JSON, half as a gzipped JSON Lines upload; worked through to overlap 3; its
    three exports parsed. Returns the exports' paths."""
    root = auth["root"]
    project = new_project(client, root, name="car revisions", kind="revision")
    revisions = car_revisions()
    items = revision_items(revisions)
    for i, item in enumerate(items):
        if i % 3:
            del item["reference"]
    half = N_ITEMS // 2
    reply = client.post(f"{API}/projects/{project}/items", json=items[:half], headers=root)
    assert reply.status_code == 201 and reply.json() == {"created": half}, reply.text
    files = {"file": ("car.jsonl.gz", gzipped_jsonl(items[half:]), "application/gzip")}
    reply = client.post(f"{API}/projects/{project}/items", files=files, headers=root)
    assert reply.status_code == 201 and reply.json() == {"created": N_ITEMS - half}, reply.text

    shown = work_through(client, project, auth, revise)
    # The item cy skipped went back to the pool, for someone who has not seen it.
    shown.update(work_through(client, project, auth, revise, (SPARE,)))
    original = {r.prompt[0]: r.original for r in revisions}
    for tasks in shown.values():
        for task in tasks:
            assert set(task) == {"task_id", "kind", "item", "editor_prefill"}
            assert task["kind"] == "revision" and task["editor_prefill"] is True
            assert task["item"]["response"] == original[task["item"]["prompt"]]
    assert [len(shown[name]) for name in (*ANNOTATORS, SPARE)] == [N_ITEMS, N_ITEMS, N_ITEMS, 1]

    stats = client.get(f"{API}/projects/{project}/stats", headers=root).json()
    assert stats["progress"] == {
        "items": N_ITEMS, "tasks": 3 * N_ITEMS + 1, "responses": 3 * N_ITEMS + 1,
        "open_tasks": 0, "items_complete": N_ITEMS, "overlap": OVERLAP, "skipped": 1,
    }  # fmt: skip
    assert stats["agreement"] is None and "revision" in stats["agreement_reason"]
    signals = stats["signals"]
    assert (signals["kind"], signals["skipped"]) == ("revision", 1)
    assert signals["revisions"]["n_revisions"] == 3 * N_ITEMS
    n_gold_items = len(range(0, N_ITEMS, 3))
    assert signals["gold"]["n_gold"] == 3 * n_gold_items  # every reviser of a referenced item
    if QualityScorer().available() is None:
        assert signals["revisions"]["gain"] is None
        assert signals["revisions"]["gain_reason"] == FIT_SCORER_HINT
    else:
        assert signals["revisions"]["gain"]["n"] == 3 * N_ITEMS
    board = client.get(f"{API}/projects/{project}/leaderboard", headers=root).json()
    rows = {row["contributor"]: row for row in board["contributors"]}
    assert rows["bob"]["unchanged_rate"] == pytest.approx(0.25, abs=0.05)  # every fourth
    assert rows["ann"]["unchanged_rate"] == 0 and rows["ann"]["mean_edit_distance"] > 0
    assert rows[SPARE]["votes"] == 1

    paths = {}
    for fmt, name in (("jsonl", ".jsonl"), ("sft", "-sft.jsonl"), ("trl", "-trl.jsonl")):
        reply = export(client, project, root, fmt)
        assert reply.headers["content-type"].startswith("application/x-ndjson")
        filename = f"car-revisions-revisions{name}"
        assert reply.headers["content-disposition"] == f'attachment; filename="{filename}"'
        paths[fmt] = save(tmp_path, filename, reply.content)
        if fmt == "trl":
            left_out = int(reply.headers["X-Left-Out"])

    stored = read_revisions_jsonl(paths["jsonl"])
    assert len(stored) == 3 * N_ITEMS
    by_item = defaultdict(set)
    for r in stored:
        item, contributor = r.id.split("/")
        by_item[item].add(contributor)
        assert r.contributor == contributor and r.source == "car revisions"
        car = revisions[int(item.removeprefix("car-test-"))]
        assert r.prompt == car.prompt and r.original == car.original
        assert r.reference == (car.revised if int(item.split("-")[-1]) % 3 == 0 else None)
    assert len(by_item) == N_ITEMS
    assert all(len(people) == OVERLAP for people in by_item.values())
    assert sum(SPARE in people for people in by_item.values()) == 1
    assert any(r.revised.startswith("In short:") for r in stored)

    sft = [json.loads(line) for line in paths["sft"].read_text().splitlines()]
    assert len(sft) == len(stored)
    assert [row["messages"][1]["content"] for row in sft] == [r.revised for r in stored]
    assert {m["role"] for row in sft for m in row["messages"]} == {"user", "assistant"}
    trl = [json.loads(line) for line in paths["trl"].read_text().splitlines()]
    unchanged = [r for r in stored if not r.changed]
    assert len(unchanged) == N_ITEMS // 4 and left_out == len(unchanged)
    assert len(trl) == len(stored) - len(unchanged)
    assert all(row["chosen"] != row["rejected"] for row in trl)
    assert {row["rejected"] for row in trl} <= {r.original for r in revisions}
    return paths


# ---------------------------------------------------------------------------------------------
# a rating campaign


def rating_items() -> list[dict[str, Any]]:
    """CaR originals and expert revisions to score (ids ``car-test-<i>/original`` and
    ``.../expert``); some expert revisions have a gold range, an original a gold score; and
    one answer that a spreadsheet would run as a formula."""
    items = []
    for i, r in enumerate(car_revisions()[: N_ITEMS // 2 - 1]):
        expert: dict[str, Any] = {"id": f"car-test-{i}/expert", "prompt": r.prompt[0]}
        items.append({**expert, "response": r.revised, "gold": [4, 7] if i % 4 == 0 else None})
        gold = 2 if i % 4 == 1 else None
        items.append({"id": f"car-test-{i}/original", "prompt": r.prompt[0],
                      "response": r.original, "gold": gold})  # fmt: skip
    items.append({"id": "sum", "prompt": "What is 1+2? As a formula.", "response": FORMULA,
                  "gold": None})  # fmt: skip
    items.append({"id": "plain", "prompt": "Say hello.", "response": "Hello!", "gold": None})
    return items


def score_of(name: str, response: str, experts: set[str]) -> int:
    """Expert revisions get a 6, the rest a 3; bob is one point kinder, cy one point harsher."""
    base = 6 if response in experts else 3
    return base + {"ann": 0, "bob": 1, "cy": -1, "dee": 0}[name]


def run_rating_campaign(client: TestClient, auth: dict[str, Any], tmp_path: Path) -> dict:
    """A rating project (scale 1 to 7 by default) on CaR answers, half imported as JSON, half
    as a CSV upload with gold cells; worked through to overlap 3; its three exports parsed.
    Returns the exports' paths and the scores given."""
    root = auth["root"]
    project = new_project(client, root, name="car ratings", kind="rating")
    items = rating_items()
    half = len(items) // 2
    json_items = [{k: v for k, v in item.items() if v is not None} for item in items[:half]]
    reply = client.post(f"{API}/projects/{project}/items", json=json_items, headers=root)
    assert reply.status_code == 201, reply.text
    frame = pd.DataFrame(items[half:])
    frame["gold"] = [json.dumps(g) if g is not None else "" for g in frame["gold"]]
    files = {"file": ("answers.csv", frame.to_csv(index=False).encode(), "text/csv")}
    reply = client.post(f"{API}/projects/{project}/items", files=files, headers=root)
    assert reply.status_code == 201 and reply.json() == {"created": len(items) - half}, reply.text

    experts = {item["response"] for item in items if item["id"].endswith("/expert")}
    given: dict[tuple[str, str], int] = {}

    def rate(name: str, n: int, task: dict[str, Any]) -> dict[str, Any]:
        assert set(task) == {"task_id", "kind", "item", "scale"} and task["kind"] == "rating"
        assert task["scale"] == {"min": 1, "max": 7}
        response = task["item"]["response"]
        given[(name, response)] = score = score_of(name, response, experts)
        if name == "ann":
            return {"score": score, "aspects": {"clarity": score}, "reason": "clear enough"}
        return {"score": score}

    shown = work_through(client, project, auth, rate)
    assert [len(shown[name]) for name in ANNOTATORS] == [len(items)] * 3 and SPARE not in shown
    progress = client.get(f"{API}/projects/{project}/stats", headers=root).json()["progress"]
    assert progress["items_complete"] == len(items) and progress["responses"] == 3 * len(items)
    stats = client.get(f"{API}/projects/{project}/stats", headers=root).json()
    alpha = stats["agreement"]["krippendorff_alpha_interval"]["estimate"]
    assert alpha > 0.5  # the three raters order the answers alike, one point apart
    assert stats["signals"]["aspects"]["clarity"]["reason"]  # only ann rated clarity
    gold = {row["contributor"]: row for row in stats["signals"]["gold"]["contributors"]}
    in_range = {
        name: sum(
            (4 <= given[name, i["response"]] <= 7)
            if i["gold"] == [4, 7]
            else given[name, i["response"]] == 2
            for i in items
            if i["gold"] is not None
        )
        for name in ANNOTATORS
    }
    assert {name: row["n_correct"] for name, row in gold.items()} == in_range
    for who in ("root", ANNOTATORS[0]):
        board = client.get(f"{API}/projects/{project}/leaderboard", headers=auth[who]).json()
        assert all(row["alpha_interval"] is not None for row in board["contributors"])

    paths = {}
    for fmt, suffix in (("jsonl", ".jsonl"), ("csv", ".csv"), ("kto", "-kto.jsonl")):
        reply = export(client, project, root, fmt)
        filename = f"car-ratings-ratings{suffix}"
        assert reply.headers["content-disposition"] == f'attachment; filename="{filename}"'
        paths[fmt] = save(tmp_path, filename, reply.content)
    assert reply.headers["content-type"].startswith("application/x-ndjson")

    ratings = read_ratings_jsonl(paths["jsonl"])
    assert len(ratings) == 3 * len(items)
    assert {(r.contributor, r.response): r.score for r in ratings} == given
    assert all(r.scale == (1.0, 7.0) for r in ratings)
    assert all((r.aspects == {"clarity": r.score}) == (r.contributor == "ann") for r in ratings)
    assert {r.id for r in ratings} == {f"{i['id']}/{n}" for i in items for n in ANNOTATORS}
    table = pd.read_csv(paths["csv"], keep_default_na=False)
    assert len(table) == len(ratings) and list(table["score"]) == [r.score for r in ratings]
    assert set(table.loc[table["id"].str.startswith("sum/"), "response"]) == {"'" + FORMULA}
    assert not table["response"].str.startswith(("=", "+", "-", "@")).any()
    assert FORMULA in {r.response for r in ratings}  # the JSON Lines keep the exact text
    kto = [json.loads(line) for line in paths["kto"].read_text().splitlines()]
    assert [row["label"] for row in kto] == [r.score > 4 for r in ratings]
    assert {True, False} == {row["label"] for row in kto}
    strict = export(client, project, root, "kto", threshold=6)
    labels = [json.loads(line)["label"] for line in strict.text.splitlines()]
    assert labels == [r.score > 6 for r in ratings] and sum(labels) < sum(r["label"] for r in kto)
    return paths


@pytest.fixture
def campaign(url: str):
    auth = crowd(url)
    with TestClient(create_app(url)) as client:
        yield client, auth


def test_a_revision_campaign_on_car_items_reaches_overlap_k(campaign, tmp_path):
    client, auth = campaign
    run_revision_campaign(client, auth, tmp_path)


def test_a_rating_campaign_reaches_overlap_k(campaign, tmp_path):
    client, auth = campaign
    run_rating_campaign(client, auth, tmp_path)


# ---------------------------------------------------------------------------------------------
# the exports train (SQLite only: the database makes no difference to the files)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The exports of a revision and a rating campaign on SQLite."""
    folder = tmp_path_factory.mktemp("campaigns")
    url = f"sqlite:///{folder / 'campaigns.db'}"
    auth = crowd(url)
    with TestClient(create_app(url)) as client:
        revisions = run_revision_campaign(client, auth, folder)
        ratings = run_rating_campaign(client, auth, folder)
    return {"sft": revisions["sft"], "trl": revisions["trl"], "kto": ratings["kto"]}


@pytest.mark.usefixtures("one_torch_thread")
def test_the_revision_sft_export_trains_with_sft_trainer(exported, tmp_path):
    from trl import SFTConfig, SFTTrainer

    from crowdtune.training.models import load_model
    from test_feedback_training import assert_one_step, load_json, one_step

    data = load_json(exported["sft"], tmp_path)
    assert data.column_names == ["messages"] and len(data) == 3 * N_ITEMS
    model, tokenizer = load_model("tiny", "causal-lm")
    trainer = SFTTrainer(
        model=model,
        args=one_step(SFTConfig, tmp_path / "out", max_length=64),
        train_dataset=data,
        processing_class=tokenizer,
    )
    assert "<|im_start|>assistant" in tokenizer.decode(trainer.train_dataset[0]["input_ids"])
    assert_one_step(trainer)


@pytest.mark.usefixtures("one_torch_thread")
def test_the_revision_pairs_train_with_dpo_and_reward_trainers(exported, tmp_path):
    from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer

    from crowdtune.training.models import load_model
    from test_feedback_training import assert_one_step, load_json, one_step

    data = load_json(exported["trl"], tmp_path)
    assert data.column_names == ["prompt", "chosen", "rejected"] and len(data) > 0
    model, tokenizer = load_model("tiny", "causal-lm")
    dpo = DPOTrainer(
        model=model,
        ref_model=copy.deepcopy(model).eval(),
        args=one_step(DPOConfig, tmp_path / "dpo", max_length=64),
        train_dataset=data,
        processing_class=tokenizer,
    )
    assert_one_step(dpo)
    model, tokenizer = load_model("tiny", "sequence-classification", num_labels=1)
    reward = RewardTrainer(
        model=model,
        args=one_step(RewardConfig, tmp_path / "reward", max_length=64),
        train_dataset=data,
        processing_class=tokenizer,
    )
    assert_one_step(reward)


@pytest.mark.usefixtures("one_torch_thread")
def test_the_rating_kto_export_trains_with_kto_trainer(exported, tmp_path):
    from trl import KTOConfig, KTOTrainer

    from crowdtune.training.models import load_model
    from test_feedback_training import assert_one_step, load_json, one_step

    data = load_json(exported["kto"], tmp_path)
    assert data.column_names == ["prompt", "completion", "label"]
    assert set(data["label"]) == {True, False}
    model, tokenizer = load_model("tiny", "causal-lm")
    trainer = KTOTrainer(
        model=model,
        ref_model=copy.deepcopy(model).eval(),
        args=one_step(KTOConfig, tmp_path / "out", max_length=64),
        train_dataset=data,
        processing_class=tokenizer,
    )
    assert_one_step(trainer)
