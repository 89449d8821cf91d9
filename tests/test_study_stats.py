"""Group comparisons against SciPy and hand computation; box plots, HTML report, demo study."""

import base64
import io
import json
import math
import re

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from cordmap.case import Case
from cordmap.errors import CordmapError
from cordmap.planning.planner import Planner
from cordmap.study.demo import build_demo_study
from cordmap.study.figures import box_plots, format_p
from cordmap.study.registry import Registry, init_registry, validate_participant
from cordmap.study.report import study_report
from cordmap.study.stats import cohen_d, compare_cohort, compare_two


def test_mann_whitney_on_separated_groups_has_the_exact_p():
    """No overlap, 5 vs 5: U = 0 and the exact two-sided p is 2 / C(10, 5)."""
    result = compare_two([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert result.statistic == 0.0
    assert result.p_value == pytest.approx(2 / math.comb(10, 5))
    assert result.effect == -1.0
    assert result.difference == -5.0


def test_mann_whitney_with_ties_matches_scipy_and_pair_counting():
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, 10, 30), rng.integers(2, 12, 25)
    result = compare_two(x, y)
    reference = stats.mannwhitneyu(x, y, alternative="two-sided")
    assert result.statistic == reference.statistic
    assert result.p_value == pytest.approx(reference.pvalue)
    greater = np.sum(x[:, None] > y[None, :]) + 0.5 * np.sum(x[:, None] == y[None, :])
    assert result.statistic == greater
    assert result.effect == pytest.approx(
        np.mean(x[:, None] > y[None, :]) - np.mean(x[:, None] < y[None, :])
    )


def test_welch_matches_the_textbook_formulas():
    x = np.array([12.1, 14.3, 11.8, 15.2, 13.9, 12.7, 16.0])
    y = np.array([10.2, 9.8, 13.5, 8.9, 11.1, 10.7, 12.4, 9.5, 10.0])
    result = compare_two(x, y, test="welch", confidence=0.9)
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    t = (x.mean() - y.mean()) / math.sqrt(vx + vy)
    df = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
    assert result.statistic == pytest.approx(t)
    assert result.p_value == pytest.approx(2 * stats.t.sf(abs(t), df))
    half = stats.t.ppf(0.95, df) * math.sqrt(vx + vy)
    assert (result.ci_low, result.ci_high) == pytest.approx(
        (x.mean() - y.mean() - half, x.mean() - y.mean() + half)
    )
    assert result.effect == pytest.approx(cohen_d(x, y))


def test_cohen_d_by_hand():
    # means 4 and 2; variances 4 and 1; pooled (2*4 + 2*1) / 4 = 2.5
    assert cohen_d([2, 4, 6], [1, 2, 3]) == pytest.approx(2 / math.sqrt(2.5))


def test_bootstrap_interval_covers_a_known_shift_and_is_seeded():
    rng = np.random.default_rng(7)
    x, y = rng.normal(60, 5, 400), rng.normal(50, 5, 400)
    result = compare_two(x, y, resamples=2000)
    assert result.ci_low < 10 < result.ci_high
    assert result.ci_low < result.difference < result.ci_high
    assert result.ci_high - result.ci_low < 3
    again = compare_two(x, y, resamples=2000)
    assert (again.ci_low, again.ci_high) == (result.ci_low, result.ci_high)


def rows_of(groups: dict[str, list]) -> list[dict]:
    return [
        {"id": f"{g}{n}", "group": g, "coverage": v}
        for g, values in groups.items()
        for n, v in enumerate(values)
    ]


def test_cohort_comparison_counts_missing_values_and_needs_two_groups():
    rows = rows_of({"a": [80, 85, None, 90], "b": [60, 70, 65]})
    (result,) = compare_cohort(rows, by="group", metrics=["coverage"])
    assert [(g.name, g.n, g.missing) for g in result.groups] == [("a", 3, 1), ("b", 3, 0)]
    assert result.p_value == pytest.approx(stats.mannwhitneyu([80, 85, 90], [60, 70, 65]).pvalue)
    three = rows + rows_of({"c": [1, 2]})
    with pytest.raises(CordmapError, match="3 groups.*`groups`"):
        compare_cohort(three, by="group", metrics=["coverage"])
    (chosen,) = compare_cohort(three, by="group", metrics=["coverage"], groups=("c", "b"))
    assert chosen.groups[0].name == "c"
    with pytest.raises(CordmapError, match="no group 'z'"):
        compare_cohort(three, by="group", metrics=["coverage"], groups=("a", "z"))
    with pytest.raises(CordmapError, match="no participant has a value of 'walking'"):
        compare_cohort(rows, by="group", metrics=["walking"])
    with pytest.raises(CordmapError, match="group 'b' has 1 value"):
        compare_cohort(rows_of({"a": [1, 2], "b": [3, None]}), by="group", metrics=["coverage"])


def test_box_plots_have_one_panel_per_metric():
    result = compare_two([1, 2, 3, 4], [3, 4, 5, 6], metric="coverage", names=("a", "b"))
    values = {"a": [1, 2, 3, 4], "b": [3, 4, 5, 6]}
    one = Image.open(io.BytesIO(box_plots([result], [values])))
    two = Image.open(io.BytesIO(box_plots([result, result], [values, values])))
    assert one.format == "PNG" and one.size[1] == two.size[1]
    assert two.size[0] == 2 * one.size[0]
    assert format_p(0.0004) == "p < 0.001" and format_p(0.0126) == "p = 0.013"


def test_study_report_is_self_contained(tmp_path):
    db = tmp_path / "study.db"
    init_registry(db)
    rng = np.random.default_rng(3)
    with Registry.open(db) as registry:
        registry.add_participants(
            [
                validate_participant(
                    {"id": f"P{n:02d}", "group": "ab"[n % 2], "injury_level": "T4"}
                )
                for n in range(12)
            ]
        )
        for n in range(12):
            registry.record_surgery(
                f"P{n:02d}",
                coverage_pct=float(rng.uniform(50, 100)),
                duration_min=float(rng.uniform(120, 240)),
            )
        comparisons = study_report(registry, tmp_path / "report.html")
        expected = compare_cohort(registry.cohort(), metrics=["coverage", "surgery_time"])
    text = (tmp_path / "report.html").read_text()
    assert "http" not in text and "<img" in text
    png = base64.b64decode(re.search(r'base64,([A-Za-z0-9+/=]+)"', text).group(1))
    assert Image.open(io.BytesIO(png)).format == "PNG"
    saved = json.loads(re.search(r'id="results">(.*?)</script>', text, re.S).group(1))
    assert (
        [c["p_value"] for c in saved]
        == [c.p_value for c in comparisons]
        == [c.p_value for c in expected]
    )
    assert "T4 6" in text  # cohort table: injury levels per group


def test_demo_study_plans_phantoms_and_is_reproducible(tmp_path):
    study = build_demo_study(tmp_path / "demo", participants=4, seed=5)
    with Registry.open(study.database) as registry:
        rows = registry.cohort()
        records = [registry.participant(r["id"]) for r in rows]
    assert len(rows) == 4 == len(study.csv.read_text().splitlines()) - 1
    assert [r["group"] for r in rows] == ["3d-planned", "conventional"] * 2
    for row, record in zip(rows, records):
        (scan,) = record["scans"]
        case = Case.open(scan["case_dir"])
        assert case.subject == f"sub-{row['id']}" and case.label_sources() == ["manual"]
        assert 0 < row["coverage"] <= 100 and row["surgery_time"] >= 60
        if row["group"] == "3d-planned":
            (plan,) = record["plans"]
            best = Planner.prepare(case.labels()).plan(top=1).best
            assert plan["coverage_pct"] == pytest.approx(best.coverage.volume_pct)
            assert plan["rostral_edge"] == best.rostral_edge
            assert row["coverage"] <= plan["coverage_pct"] + 0.5  # the plan is the best
        else:
            assert record["plans"] == []
    redo = compare_cohort(rows, metrics=["coverage", "surgery_time"], seed=5)
    assert [c.p_value for c in redo] == [c.p_value for c in study.comparisons]
    assert "SYNTHETIC" in study.report.read_text()
    with pytest.raises(CordmapError, match="not an empty folder"):
        build_demo_study(tmp_path / "demo")


def test_failed_demo_leaves_nothing(tmp_path, monkeypatch):
    import cordmap.study.demo as demo

    def broken(*args):
        raise CordmapError("planner broke")

    monkeypatch.setattr(demo, "_operate", broken)
    with pytest.raises(CordmapError, match="planner broke"):
        build_demo_study(tmp_path / "demo", participants=4)
    assert not (tmp_path / "demo").exists()


def test_tied_data_falls_back_to_a_percentile_interval_and_says_so():
    result = compare_two([1, 1, 1], [2, 2, 2])
    assert (result.ci_low, result.ci_high) == (-1.0, -1.0)
    assert result.ci_method.startswith("bootstrap percentile")
    assert compare_two([1, 2, 5, 7], [3, 4, 2, 1]).ci_method.startswith("bootstrap BCa")
    with pytest.raises(CordmapError, match="does not vary within either group"):
        compare_two([1, 1, 1], [2, 2, 2], test="welch")
