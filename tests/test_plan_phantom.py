"""Planning on the lumbosacral phantom (curved canal, 3 mm slices) against its exact truth."""

import numpy as np
import pytest

from cordmap.anatomy.phantom import make_phantom, sagittal_series
from cordmap.planning.coverage import coverage_at
from cordmap.planning.planner import Planner
from cordmap.volume import LabelVolume


@pytest.fixture(scope="module")
def phantom():
    phantom = make_phantom(0)
    return phantom, Planner.prepare(phantom.labels)


def test_segments_and_enlargement_match_the_truth(phantom):
    phantom, planner = phantom
    truth = phantom.truth
    enlargement = planner.enlargement
    # arc lengths of the truth start at T9's upper endplate, ours at the top of the cord
    offset = enlargement.start - truth.segments["L1"]["superior_s_mm"]
    for name, (start, end) in enlargement.segment_extents.items():
        assert start - offset == pytest.approx(truth.segments[name]["superior_s_mm"], abs=1.0)
        assert end - offset == pytest.approx(truth.segments[name]["inferior_s_mm"], abs=1.0)
    assert enlargement.length == pytest.approx(truth.enlargement["length_mm"], abs=0.6)
    assert planner.geometry.conus_tip - offset == pytest.approx(truth.conus["tip_s_mm"], abs=1.5)


def test_vertebral_bodies_match_the_truth(phantom):
    phantom, planner = phantom
    truth = phantom.truth
    offset = planner.enlargement.start - truth.segments["L1"]["superior_s_mm"]
    for name in ("T10", "T11", "T12", "L1"):
        start, end = planner.vertebral.vertebrae[name]
        assert start - offset == pytest.approx(truth.vertebrae[name]["superior_s_mm"], abs=1.0)
        assert end - offset == pytest.approx(truth.vertebrae[name]["inferior_s_mm"], abs=1.0)


def test_best_placement_matches_an_independent_brute_force(phantom):
    """The answer computed without the planner: each enlargement voxel placed at the arc
    length of its nearest point on the phantom's true centreline (1 mm steps), the 46.5 mm
    window slid over it; the planner's best position and coverage agree."""
    from scipy.spatial import cKDTree

    phantom, planner = phantom
    plan = planner.plan(top=3)
    best = plan.best.coverage
    truth = phantom.truth
    labels = phantom.labels
    ids = [truth.segments[name]["label_id"] for name in planner.enlargement.segment_extents]
    ijk = np.argwhere(np.isin(labels.array, ids))
    centre = truth.centreline
    fine = np.arange(centre["s_mm"][0], centre["s_mm"][-1], 0.1)
    points = np.stack(
        [np.interp(fine, centre["s_mm"], np.array(centre["ras_mm"])[:, axis]) for axis in range(3)],
        axis=1,
    )
    s = fine[cKDTree(points).query(labels.world(ijk))[1]]
    length = planner.paddle.array_length_mm
    starts = np.arange(s.min() - length, s.max(), 0.1)
    covered = np.searchsorted(np.sort(s), starts + length) - np.searchsorted(np.sort(s), starts)
    share = 100.0 * covered / len(s)
    offset = planner.enlargement.start - truth.segments["L1"]["superior_s_mm"]
    assert best.volume_pct == pytest.approx(share.max(), abs=1.0)
    best_truth = starts[share >= share.max() - 0.05]  # a plateau: the positions within 0.05 %
    assert best_truth.min() - 1.0 <= best.rostral - offset <= best_truth.max() + 1.0
    assert best == coverage_at(planner.enlargement, planner.paddle, best.rostral)


def test_estimated_enlargement_without_segment_labels(phantom):
    """Segments unlabelled: the enlargement placed from the conus lies within a few mm of
    the labelled one, and the array it proposes covers nearly as much of the true one."""
    phantom, planner = phantom
    array = phantom.labels.array.copy()
    array[(array >= 116) & (array <= 130) | (array == 60)] = 1
    estimated = Planner.prepare(
        LabelVolume(array, phantom.labels.affine, schema=phantom.labels.schema)
    )
    assert estimated.enlargement.estimated
    assert estimated.enlargement.start == pytest.approx(planner.enlargement.start, abs=8.0)
    assert estimated.enlargement.end == pytest.approx(planner.enlargement.end, abs=8.0)
    assert planner.enlargement.start <= estimated.enlargement.csa_peak <= planner.enlargement.end
    proposed = estimated.plan(top=1).best.coverage.rostral
    best = planner.plan(top=1).best.coverage.volume_pct
    achieved = coverage_at(planner.enlargement, planner.paddle, proposed).volume_pct
    assert best - 3.0 <= achieved <= best + 1e-9


def test_no_enlargement_is_estimated_from_a_cord_ending_below_l3(phantom):
    """The cauda equina taken for cord down to L4 (as the model does on some real T1 scans):
    an enlargement estimated from that end would put the paddle over the sacrum, so the
    planner refuses (NoPlan, which `auto` and `report` turn into a report without a plan)."""
    from cordmap.errors import NoPlan

    phantom, _ = phantom
    labels = phantom.labels
    schema = labels.schema
    array = labels.array.copy()
    array[(array >= 116) & (array <= 130) | (array == 60)] = 1  # segments: plain cord
    csf = array == schema.find("csf").id
    tip = int(np.argwhere(array == 1)[:, 2].min())
    l4 = int(np.argwhere(array == schema.find("vertebra", "L4").id)[:, 2].mean())
    for k in range(l4, tip):  # a 2 mm-wide "cord" down the middle of the thecal sac
        where = np.argwhere(csf[..., k])
        if len(where):
            offset = (where - where.mean(axis=0)) * np.asarray(labels.spacing[:2])
            near = np.hypot(*offset.T)
            array[tuple(where[near < 2.0].T) + (k,)] = 1
    with pytest.raises(NoPlan, match="ends below the L3 vertebra"):
        Planner.prepare(LabelVolume(array, labels.affine, schema=schema))


def test_no_enlargement_is_estimated_over_a_cord_the_segmentation_lost(phantom):
    """As the bundled model on a real T1 scan (vb3-27): a little cord at the top of the image
    and its conus, none between. The estimate would lie over the gap, and its coverages
    would be of nothing (they were NaN %): the planner refuses."""
    from cordmap.errors import NoPlan

    phantom, planner = phantom
    labels = phantom.labels
    array = labels.array.copy()
    array[(array >= 116) & (array <= 130) | (array == 60)] = 1  # segments: plain cord
    cord = np.argwhere(array == 1)
    top, tip = cord[:, 2].max(), cord[:, 2].min()
    gap = cord[(cord[:, 2] < top - 5) & (cord[:, 2] > tip + 3)]  # 3 mm slices: keep 9 mm
    array[tuple(gap.T)] = labels.schema.find("csf").id
    with pytest.raises(NoPlan, match="missing over most of the estimated enlargement"):
        Planner.prepare(LabelVolume(array, labels.affine, schema=labels.schema))


def test_sagittal_acquisition_gives_the_same_plan(phantom):
    """The same anatomy acquired as 3 mm sagittal slices: boundaries match the truth more
    closely still (0.8 mm along the cord), and the plan agrees with the axial one."""
    phantom, axial = phantom
    _, labels = sagittal_series(phantom)
    sagittal = Planner.prepare(labels)
    truth = phantom.truth
    offset = sagittal.enlargement.start - truth.segments["L1"]["superior_s_mm"]
    for name, (_, end) in sagittal.enlargement.segment_extents.items():
        assert end - offset == pytest.approx(truth.segments[name]["inferior_s_mm"], abs=0.5)
    axial_offset = axial.enlargement.start - truth.segments["L1"]["superior_s_mm"]
    best_axial = axial.plan(top=1).best.coverage
    best_sagittal = sagittal.plan(top=1).best.coverage
    assert best_sagittal.rostral - offset == pytest.approx(
        best_axial.rostral - axial_offset, abs=3.0
    )
    assert best_sagittal.volume_pct == pytest.approx(best_axial.volume_pct, abs=2.0)
