"""The worked example on the PAM50 template (../shared/data/pam50) and the PAM50 distances
of the estimated-enlargement rule."""

from pathlib import Path

import numpy as np
import pytest

from cordmap.planning.enlargement import PAM50_ROSTRAL_END_ABOVE_TIP_MM
from cordmap.planning.pam50 import load_pam50_labels
from cordmap.planning.planner import Planner

DOC = Path(__file__).resolve().parents[1] / "docs" / "planning.md"


@pytest.fixture(scope="module")
def pam50(data_dir):
    planner = Planner.prepare(load_pam50_labels(data_dir / "pam50"))
    return planner, planner.plan(top=3)


def test_enlargement_lies_over_the_t11_to_l1_vertebrae(pam50):
    planner, plan = pam50
    enlargement, vertebrae = planner.enlargement, planner.vertebral.vertebrae
    assert not enlargement.estimated and enlargement.segments[0] == "L1"
    assert vertebrae["T11"][0] <= enlargement.start <= vertebrae["T11"][1]
    assert vertebrae["L1"][0] <= enlargement.end <= vertebrae["L1"][1]
    assert plan.cord.conus_tip == pytest.approx(planner.geometry.length, abs=1e-9)


def test_best_placement_agrees_with_the_literature_and_the_docs(pam50):
    planner, plan = pam50
    best = plan.best
    assert best.coverage.volume_pct == pytest.approx(max(plan.curve.volume_pct), abs=1e-6)
    assert "T11" in best.rostral_edge
    assert "T12" in best.caudal_edge or "L1" in best.caudal_edge
    # the answer computed without the planner: PAM50's cord is straight along S, so each
    # enlargement voxel sits at its S; the 46.5 mm window slid over them in 0.1 mm steps
    labels = planner.labels
    ids = [labels.schema.find("segment", name).id for name in planner.enlargement.segments]
    z = np.sort(labels.world(np.argwhere(np.isin(labels.array, ids)))[:, 2])
    length = planner.paddle.array_length_mm
    tops = np.arange(z.min(), z.max() + length, 0.1)
    share = 100.0 * (np.searchsorted(z, tops) - np.searchsorted(z, tops - length)) / len(z)
    assert best.coverage.volume_pct == pytest.approx(share.max(), abs=0.1)
    # the worked example in docs/planning.md quotes these numbers
    text = DOC.read_text(encoding="utf-8")
    for quoted in (
        f"{best.coverage.volume_pct:.1f} %",
        best.rostral_edge,
        best.caudal_edge,
        f"{best.slice_count_pct:.1f} %",
    ):
        assert quoted in text, f"docs/planning.md should quote {quoted!r}"


def test_pam50_constants_of_the_estimated_enlargement(pam50):
    planner, _ = pam50
    geometry, schema = planner.geometry, planner.labels.schema
    tip = geometry.conus_tip
    for name, distance in PAM50_ROSTRAL_END_ABOVE_TIP_MM.items():
        label = schema.find("segment", name).id
        rostral_end = geometry.extents[label][0]
        assert tip - rostral_end == pytest.approx(distance, abs=0.05), name


def test_the_conus_tip_lies_within_a_third_of_a_vertebra_of_the_cord_s_end(data_dir):
    """Issue 11's bar on PAM50 (labels only: no image to segment): the numbering's conus tip
    (`numbering.conus_tip`) against the template cord's lowest point, within a third of
    the L1 level's height (measured: 0 mm against 10.8)."""
    from cordmap.anatomy.numbering import conus_tip
    from cordmap.protocol.schema import CORD_CLASSES

    labels = load_pam50_labels(data_dir / "pam50")
    array = np.asarray(labels.array)
    cord = np.isin(array, [label.id for label in labels.schema.of_class(*CORD_CLASSES)])
    truth = labels.world(np.argwhere(cord))[:, 2].min()
    l1 = labels.world(np.argwhere(array == labels.schema.find("vertebra", "L1").id))[:, 2]
    tip = conus_tip(labels)
    assert tip is not None and abs(tip[2] - truth) <= np.ptp(l1) / 3
    assert l1.min() <= tip[2] <= l1.max()  # in the L1 level, where PAM50's cord ends
