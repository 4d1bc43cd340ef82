"""The records of revision and rating campaigns: Revision, Rating, their checks and frames."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from crowdtune.records import (
    DEFAULT_SCALE,
    RATING_COLUMNS,
    REVISION_COLUMNS,
    TURN_SEPARATOR,
    Rating,
    Revision,
    check_scale,
    check_score,
    ratings_frame,
    revisions_frame,
)

# ------------------------------------------------------------------------------------ Revision


def test_revision_normalises_its_fields() -> None:
    revision = Revision(7, "Say hi.", "hi", "Hello!")  # type: ignore[arg-type]
    assert revision.id == "7" and revision.prompt == ("Say hi.",)
    assert Revision("r", ["a", "b"], "x", "y").prompt == ("a", "b")  # type: ignore[arg-type]


def test_revision_changed_ignores_surrounding_whitespace_only() -> None:
    assert not Revision("r", "p", "An answer.", "  An answer.\n").changed
    assert Revision("r", "p", "An answer.", "An answer!").changed
    assert Revision("r", "p", "a b", "a  b").changed


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prompt": ()}, "prompt must be a string or a non-empty list"),
        ({"prompt": ["ok", 3]}, "prompt must be a string or a non-empty list"),
        ({"original": None}, "original must be a string, got NoneType"),
        ({"revised": 5}, "revised must be a string, got int"),
        ({"contributor": 1}, "contributor must be a string, got int"),
        ({"reference": ["x"]}, "reference must be a string, got list"),
    ],
)
def test_revision_refuses_bad_fields_naming_them(fields: dict, message: str) -> None:
    values = {"id": "r1", "prompt": "p", "original": "o", "revised": "r", **fields}
    with pytest.raises(TypeError, match=f"revision 'r1': {message}"):
        Revision(**values)


def test_revision_round_trips_through_json() -> None:
    revision = Revision(
        "item-1/ann", ("Hi", "Grüß dich"), "o\n", 'He said "yes"', "ann", "proj", "ref"
    )
    data = revision.to_dict()
    assert data == {
        "id": "item-1/ann",
        "prompt": ["Hi", "Grüß dich"],
        "original": "o\n",
        "revised": 'He said "yes"',
        "contributor": "ann",
        "source": "proj",
        "reference": "ref",
    }
    assert Revision.from_dict(json.loads(json.dumps(data))) == revision
    with pytest.raises(TypeError, match="unexpected keyword argument 'score'"):
        Revision.from_dict({**data, "score": 3})


# ------------------------------------------------------------------------------------ scales


def test_check_scale_accepts_two_increasing_numbers() -> None:
    assert check_scale([0, 1]) == (0.0, 1.0)
    assert check_scale((-2.5, 2.5)) == (-2.5, 2.5)
    assert all(isinstance(v, float) for v in check_scale((1, 7)))


@pytest.mark.parametrize(
    "scale",
    [(7, 1), (3, 3), (1,), (1, 2, 3), "1-7", (1, math.nan), (1, math.inf), (True, 5), None],
)
def test_check_scale_refuses_anything_else(scale: object) -> None:
    with pytest.raises(ValueError, match=r"project scale: a scale is two finite numbers"):
        check_scale(scale, "project scale")


def test_check_score_within_the_scale_inclusive() -> None:
    assert check_score(1, (1.0, 7.0)) == 1.0 and check_score(7.0, (1.0, 7.0)) == 7.0
    assert check_score(2.5, (1.0, 7.0)) == 2.5


@pytest.mark.parametrize("score", [0, 7.01, math.nan, math.inf, "5", True, None])
def test_check_score_names_what_and_the_scale(score: object) -> None:
    with pytest.raises(ValueError, match=r"^the score must be a number from 1 to 7, got"):
        check_score(score, (1.0, 7.0), "the score")


# ------------------------------------------------------------------------------------ Rating


def test_rating_defaults_and_normalises() -> None:
    rating = Rating(3, "How?", "Like this.", 5)  # type: ignore[arg-type]
    assert rating.id == "3" and rating.prompt == ("How?",)
    assert rating.scale == DEFAULT_SCALE == (1.0, 7.0)
    assert rating.score == 5.0 and isinstance(rating.score, float)
    assert rating.aspects is None
    assert Rating("r", "p", "a", 0.5, scale=[0, 1]).scale == (0.0, 1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"score": 8}, ValueError, r"rating 'r1': score must be a number from 1 to 7, got 8"),
        ({"score": "5"}, ValueError, r"score must be a number from 1 to 7, got '5'"),
        ({"score": math.nan}, ValueError, r"score must be a number from 1 to 7"),
        ({"scale": (5, 1)}, ValueError, r"rating 'r1': a scale is two finite numbers"),
        ({"score": 0.5, "scale": (0, 1), "aspects": {"clarity": 2}}, ValueError,
         r"rating 'r1': aspect 'clarity' must be a number from 0 to 1, got 2"),
        ({"aspects": [("clarity", 2)]}, TypeError, r"aspects must be a mapping"),
        ({"response": None}, TypeError, r"response must be a string"),
        ({"source": 3}, TypeError, r"source must be a string"),
    ],
)  # fmt: skip
def test_rating_refuses_bad_fields_naming_them(fields: dict, error: type, message: str) -> None:
    values = {"id": "r1", "prompt": "p", "response": "a", "score": 4, **fields}
    with pytest.raises(error, match=message):
        Rating(**values)


def test_rating_aspects_become_floats_and_do_not_affect_equality() -> None:
    rating = Rating("r", "p", "a", 4, aspects={"helpfulness": 5, "safety": 7.0})
    assert rating.aspects == {"helpfulness": 5.0, "safety": 7.0}
    assert all(isinstance(v, float) for v in rating.aspects.values())
    assert rating == Rating("r", "p", "a", 4)  # aspects are compare=False


def test_rating_round_trips_through_json() -> None:
    rating = Rating("item-2/bo", ("Hi", "more?"), "yes", 0.25, (0, 1), {"clarity": 1}, "bo", "proj")
    data = rating.to_dict()
    assert data == {
        "id": "item-2/bo",
        "prompt": ["Hi", "more?"],
        "response": "yes",
        "score": 0.25,
        "scale": [0.0, 1.0],
        "aspects": {"clarity": 1.0},
        "contributor": "bo",
        "source": "proj",
    }
    back = Rating.from_dict(json.loads(json.dumps(data)))
    assert back == rating and back.scale == (0.0, 1.0) and back.aspects == {"clarity": 1.0}
    assert Rating.from_dict(Rating("x", "p", "a", 2).to_dict()).aspects is None
    with pytest.raises(TypeError, match="unexpected keyword argument 'label'"):
        Rating.from_dict({**data, "label": True})


# ------------------------------------------------------------------------------------ frames


def test_revisions_frame_columns_and_joined_prompt() -> None:
    revisions = [
        Revision("1", ("first", "second"), "o1", "r1", "ann", "s", "ref"),
        Revision("2", "only", "o2", "o2"),
    ]
    frame = revisions_frame(revisions)
    assert list(frame.columns) == list(REVISION_COLUMNS) == [
        "id", "prompt", "original", "revised", "reference", "contributor", "source",
    ]  # fmt: skip
    assert frame.loc[0, "prompt"] == f"first{TURN_SEPARATOR}second"
    assert frame.loc[0].tolist() == ["1", "first\n\nsecond", "o1", "r1", "ref", "ann", "s"]
    assert frame.loc[1, ["reference", "contributor", "source"]].isna().all()
    assert list(revisions_frame([]).columns) == list(REVISION_COLUMNS)


def test_ratings_frame_columns_scale_and_aspects() -> None:
    ratings = [
        Rating("1", ("a", "b"), "x", 5, aspects={"safety": 6, "clarity": 2}, contributor="c1"),
        Rating("2", "q", "y", 0.5, scale=(0, 1), aspects={"clarity": 1}),
        Rating("3", "q", "z", 3, source="proj"),
    ]
    frame = ratings_frame(ratings)
    assert list(frame.columns) == [*RATING_COLUMNS, "aspect_clarity", "aspect_safety"]
    assert frame["prompt"].tolist() == ["a\n\nb", "q", "q"]
    assert frame["score"].dtype == "float64" and frame["score"].tolist() == [5.0, 0.5, 3.0]
    assert frame[["scale_min", "scale_max"]].values.tolist() == [[1, 7], [0, 1], [1, 7]]
    assert frame["aspect_clarity"].iloc[:2].tolist() == [2.0, 1.0]
    assert math.isnan(frame.loc[2, "aspect_clarity"])
    assert frame["aspect_safety"].iloc[0] == 6.0 and frame["aspect_safety"].iloc[1:].isna().all()
    assert frame.loc[0, "contributor"] == "c1" and frame.loc[2, "source"] == "proj"
    empty = ratings_frame([])
    assert list(empty.columns) == list(RATING_COLUMNS) and len(empty) == 0
    assert isinstance(empty, pd.DataFrame)
