"""Tests for crowdtune.reports: the HTML building blocks and the grouping-simulation sections."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.decomposition import PCA

import crowdtune
from crowdtune.crowd.simulation.trace import RunTrace
from crowdtune.reports import (
    Section,
    figure_to_img,
    grouping_sections,
    render_report,
    table_html,
)
from crowdtune.reports.grouping import TITLES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVIL = "<script>alert(1)</script>"


def simulate(
    strategy: str,
    seed: int,
    *,
    n_users: int = 12,
    n_dims: int = 4,
    n_rounds: int = 6,
    n_groups: int = 3,
    step: float = 0.5,
) -> RunTrace:
    """A tiny stand-in for the grouping simulation: groups move the model toward their centroid."""
    rng = np.random.default_rng(seed)
    users = rng.normal(size=(n_users, n_dims)) * 3
    expert = users.mean(axis=0) + rng.normal(size=n_dims)
    path, groups, chosen = [users.mean(axis=0) + 8.0], [], []
    points = [np.zeros(n_users)]
    for _ in range(n_rounds):
        group = rng.permutation(np.arange(n_users) % n_groups)
        model = path[-1]
        candidates = np.array(
            [model + step * (users[group == g].mean(axis=0) - model) for g in range(n_groups)]
        )
        distances = np.linalg.norm(candidates - expert, axis=1)
        best = int(distances.argmin())
        moved = distances[best] < np.linalg.norm(model - expert)
        path.append(candidates[best] if moved else model)
        chosen.append(best if moved else -1)
        groups.append(group)
        points.append(points[-1] + (group == best) * moved)
    return RunTrace(
        strategy=strategy,
        metric="l2",
        users=users,
        expert=expert,
        model_path=np.array(path),
        groups=np.array(groups),
        chosen=np.array(chosen),
        points=np.array(points),
    )


def ci(values: np.ndarray) -> dict[str, float]:
    mean = float(np.mean(values))
    half = 1.96 * float(np.std(values, ddof=1)) / np.sqrt(len(values)) if len(values) > 1 else 0
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half}


def make_data(strategies: list[str], n_runs: int = 5, threshold: float = 5.0, **sizes: int):
    bands, runs, points, summary, traces = [], [], [], {}, {}
    for s_index, strategy in enumerate(strategies):
        trials = [simulate(strategy, 100 * s_index + r, **sizes) for r in range(n_runs)]
        traces[strategy] = trials[0]
        distances = np.array([np.linalg.norm(t.model_path - t.expert, axis=1) for t in trials])
        for rnd in range(distances.shape[1]):
            bands.append({"strategy": strategy, "round": rnd, **ci(distances[:, rnd])})
        for run, (trace, dist) in enumerate(zip(trials, distances, strict=True)):
            below = np.flatnonzero(dist <= threshold)
            runs.append(
                {
                    "strategy": strategy,
                    "metric": trace.metric,
                    "run": run,
                    "start_distance": dist[0],
                    "final_distance": dist[-1],
                    "rounds_to_threshold": int(below[0]) if len(below) else pd.NA,
                    "improving_rounds": int((trace.chosen >= 0).sum()),
                }
            )
            points += [
                {"strategy": strategy, "run": run, "user": u, "points": p}
                for u, p in enumerate(trace.points[-1])
            ]
        reached = [
            int(np.flatnonzero(d <= threshold)[0]) for d in distances if (d <= threshold).any()
        ]
        summary[strategy] = {
            "start_distance": ci(distances[:, 0]),
            "final_distance": ci(distances[:, -1]),
            "rounds_to_threshold": {
                **(
                    ci(np.array(reached))
                    if reached
                    else {"mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
                ),
                "reached": len(reached),
            },
            "runs": n_runs,
        }
    summary["settings"] = {"n_runs": n_runs, "threshold": threshold, "strategies": strategies}
    runs_df = pd.DataFrame(runs).astype({"rounds_to_threshold": "Int64"})
    return dict(
        bands=pd.DataFrame(bands),
        runs=runs_df,
        points=pd.DataFrame(points),
        traces=traces,
        summary=summary,
    )


STRATEGIES = ["random", "epsilon-greedy", "interleaved"]


@pytest.fixture(scope="module")
def data() -> dict:
    return make_data(STRATEGIES)


@pytest.fixture(scope="module")
def sections(data: dict) -> list[Section]:
    return grouping_sections(**data)


@pytest.fixture(scope="module")
def report(sections: list[Section], tmp_path_factory: pytest.TempPathFactory) -> str:
    path = render_report(
        tmp_path_factory.mktemp("out") / "nested" / "index.html",
        title="Grouping & <co>",
        sections=sections,
        intro="First.\n\nSecond.",
    )
    assert path.is_file()
    return path.read_text(encoding="utf-8")


def png_payloads(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_report_is_self_contained(report: str) -> None:
    assert 'src="http' not in report and "<link" not in report and "<script" not in report
    images = re.findall(r"<img [^>]*>", report)
    assert len(images) == 3 + len(STRATEGIES)  # distance, final, points + one PCA per strategy
    assert all('src="data:image/png;base64,' in tag for tag in images)
    assert all(payload.startswith(PNG_MAGIC) for payload in png_payloads(report))


def test_report_lists_sections_strategies_and_provenance(report: str) -> None:
    for title in TITLES.values():
        assert report.count(html.escape(title)) >= 2  # heading and table of contents
    for strategy in STRATEGIES:
        assert strategy in report
    assert f"crowdtune {crowdtune.__version__}" in report
    assert "Grouping &amp; &lt;co&gt;" in report and "<co>" not in report
    assert "<p>First.</p>" in report and "<p>Second.</p>" in report
    anchors = re.findall(r'<section id="([^"]+)">', report)
    assert len(anchors) == len(TITLES) and all(f'href="#{a}"' in report for a in anchors)
    assert "Run settings" in report and "random, epsilon-greedy, interleaved" in report


def test_summary_shows_cis_and_share_reaching_threshold(
    data: dict, sections: list[Section]
) -> None:
    summary_html = sections[0].html
    stats = data["summary"]["random"]["final_distance"]
    assert f"{stats['mean']:.2f} [{stats['ci_low']:.2f}, {stats['ci_high']:.2f}]" in summary_html
    runs = data["runs"]
    for strategy in STRATEGIES:
        reached = int(runs.loc[runs.strategy == strategy, "rounds_to_threshold"].notna().sum())
        assert f"{reached} of 5 ({reached / 5:.0%})" in summary_html


def test_strategy_never_reaching_threshold_is_reported() -> None:
    far = make_data(["far"], threshold=-1.0)
    summary_html = grouping_sections(**far, threshold=-1.0)[0].html
    assert "never reached" in summary_html and "0 of 5 (0%)" in summary_html


def test_malicious_strategy_name_is_escaped(tmp_path: Path) -> None:
    bad = make_data(["random", EVIL])
    sections = grouping_sections(**bad)
    page = render_report(tmp_path / "r.html", title=EVIL, sections=sections).read_text()
    assert EVIL not in page
    assert html.escape(EVIL) in page
    assert all(p.startswith(PNG_MAGIC) for p in png_payloads(page))


def test_pca_variance_share_matches_sklearn(data: dict, sections: list[Section]) -> None:
    pca_html = sections[-1].html
    for trace in data["traces"].values():
        reference = PCA(n_components=2).fit(np.vstack([trace.users, trace.expert]))
        ratio = 100 * reference.explained_variance_ratio_
        assert f"explain {ratio.sum():.1f}% of the variance" in pca_html
        assert f"(PC1 {ratio[0]:.1f}%, PC2 {ratio[1]:.1f}%)" in pca_html


def test_pca_rounds_override_and_validation(data: dict) -> None:
    pca_html = grouping_sections(**data, pca_rounds=[2, 6])[-1].html
    assert "after rounds 2, 6" in pca_html
    with pytest.raises(ValueError, match="pca_rounds must be round numbers from 1 to 6"):
        grouping_sections(**data, pca_rounds=[0])
    with pytest.raises(ValueError, match="pca_rounds"):
        grouping_sections(**data, pca_rounds=[7])


def test_bad_inputs_raise_clear_errors(data: dict) -> None:
    with pytest.raises(ValueError, match=r"runs lacks column\(s\) \['final_distance'\]"):
        grouping_sections(**{**data, "runs": data["runs"].drop(columns="final_distance")})
    trace = data["traces"]["random"]
    broken = RunTrace(**{**vars(trace), "chosen": trace.chosen[:-1]})
    with pytest.raises(ValueError, match="trace 'random': chosen has shape"):
        grouping_sections(**{**data, "traces": {"random": broken}})


def test_runs_without_points_are_left_out_with_a_note(data: dict) -> None:
    points = data["points"].copy()
    points.loc[(points.strategy == "random") & (points.run == 0), "points"] = 0.0
    points_html = grouping_sections(**{**data, "points": points})[3].html
    assert "1 run(s) handed out no points" in points_html
    assert "percentage of their run&#x27;s total" in points_html


def test_table_html_escapes_and_formats() -> None:
    df = pd.DataFrame(
        {
            "<b>name</b>": [EVIL, "plain"],
            "x": [1.23456, float("nan")],
            "n": pd.array([3, pd.NA], dtype="Int64"),
        }
    )
    table = table_html(df, float_format="{:.2f}")
    assert EVIL not in table and "<b>" not in table
    assert html.escape(EVIL) in table and "&lt;b&gt;name&lt;/b&gt;" in table
    assert '<td class="num">1.23</td>' in table and '<td class="num">3</td>' in table
    assert table.count("&ndash;") == 2
    indexed = table_html(df.set_index("n"), index=True)
    assert '<th scope="col">n</th>' in indexed and '<th scope="row">3</th>' in indexed


def test_figure_to_img_embeds_png_and_escapes_alt() -> None:
    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    tag = figure_to_img(fig, alt='a "quoted" <line>')
    assert tag.startswith('<img src="data:image/png;base64,')
    assert 'alt="a &quot;quoted&quot; &lt;line&gt;"' in tag
    assert png_payloads(tag)[0].startswith(PNG_MAGIC)
    assert not fig.axes  # the figure was cleared


def test_render_report_escapes_title_keeps_trusted_html(tmp_path: Path) -> None:
    sections = [Section("A & B", "<p><em>trusted</em></p>"), Section("A & B", "<p>again</p>")]
    page = render_report(tmp_path / "deep" / "er" / "x.html", title="T", sections=sections)
    text = page.read_text()
    assert "<em>trusted</em>" in text and "A &amp; B" in text
    assert 'id="a-b"' in text and 'id="a-b-2"' in text


def test_empty_runs_and_points_give_notes_not_crashes(data: dict) -> None:
    empty = {**data, "runs": data["runs"].iloc[:0], "points": data["points"].iloc[:0]}
    sections = grouping_sections(**empty)
    assert "No runs with a final distance to show." in sections[2].html
    assert "No run handed out any points." in sections[3].html


def test_preference_sections_show_cv_calibration_and_leaderboard(tmp_path):
    from crowdtune.preference import DifferenceBucketModel, LengthModel
    from crowdtune.preference.bradley_terry import synthetic_battles
    from crowdtune.preference.cv import compare_models
    from crowdtune.preference.leaderboard import bradley_terry
    from crowdtune.reports import render_report
    from crowdtune.reports.preference import preference_sections

    rng = np.random.default_rng(0)
    n = 240
    lengths = rng.integers(1, 60, size=(n, 2))
    frame = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "prompt": [f"prompt <{i % 40}>" for i in range(n)],
            "response_a": ["x " * a for a in lengths[:, 0]],
            "response_b": ["x " * b for b in lengths[:, 1]],
            "label": np.where(
                abs(lengths[:, 0] - lengths[:, 1]) < 5,
                2,
                (lengths[:, 1] > lengths[:, 0]).astype(int),
            ),
            "source": np.where(np.arange(n) < 120, "first", "second"),
        }
    )
    models = {"length": LengthModel(), "difference-bucket": DifferenceBucketModel(n_buckets=10)}
    table, preds = compare_models(models, frame, n_splits=3)
    board = bradley_terry(
        synthetic_battles(n_models=5, n_battles=500, seed=1).battles, n_bootstrap=50
    )
    sections = preference_sections(
        table, n=n, sources="toy <data>", labels=frame["label"].to_numpy(),
        calibrated_proba=preds[("grouped", "length")], calibrated_name="length",
        leaderboard=board, leaderboard_title="toy battles",
    )  # fmt: skip
    assert [s.title for s in sections] == [
        "Preferences: predicting A / B / tie",
        "Preferences: calibration",
        "Leaderboard: toy battles",
    ]
    page = render_report(tmp_path / "r.html", title="t", sections=sections).read_text()
    assert "toy &lt;data&gt;" in page and "toy <data>" not in page  # data text is escaped
    assert page.count("data:image/png;base64,") == 2
    assert "leave-one-dataset-out" in page and "difference-bucket" in page
