"""Vertebral landmarks along the cord and the assessment of a placement read from X-ray."""

import numpy as np
import pytest
from test_plan_geometry import straight

from cordmap.errors import CordmapError
from cordmap.planning.coverage import coverage_at
from cordmap.planning.planner import Planner
from cordmap.volume import LabelVolume

# stand-in vertebral bodies on 3 mm slice faces with 3 mm discs (unlabelled) between them
VERTEBRAE = [("T11", 0.0, 27.0), ("T12", 30.0, 57.0), ("L1", 60.0, 87.0)]


@pytest.fixture(scope="module")
def planner():
    return Planner.prepare(straight(vertebrae=VERTEBRAE))


def test_vertebrae_and_discs_along_the_cord(planner):
    vertebral = planner.vertebral
    for name, first, last in VERTEBRAE:
        assert vertebral.vertebrae[name] == pytest.approx((first, last), abs=1e-9)
    assert vertebral.discs["T11/T12"] == pytest.approx((27.0, 30.0), abs=1e-9)
    assert vertebral.discs["T12/L1"] == pytest.approx((57.0, 60.0), abs=1e-9)


@pytest.mark.parametrize(
    "landmark, expected",
    [
        ("T12 upper endplate", 30.0),
        ("T12 lower endplate", 57.0),
        ("T12 middle", 43.5),
        ("T12 upper third", 34.5),
        ("t12  lower third", 52.5),
        ("T11/T12 disc", 28.5),
        ("T12-L1 disc", 58.5),
        ("L1 upper endplate", 60.0),
    ],
)
def test_landmarks_are_located_on_the_cord(planner, landmark, expected):
    assert planner.vertebral.locate(landmark) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    "s, words",
    [
        (28.5, "T11/T12 disc"),
        (30.5, "T12 upper endplate"),
        (35.0, "upper third of T12 body"),
        (45.0, "middle third of T12 body"),
        (55.0, "lower third of T12 body"),
        (56.5, "T12 lower endplate"),
        (95.0, "8 mm below L1 (below the labelled vertebrae)"),
    ],
)
def test_positions_are_described_in_vertebral_terms(planner, s, words):
    assert planner.vertebral.describe(s) == words


@pytest.mark.parametrize(
    "landmark, message",
    [
        ("L3 middle", "names vertebra L3, which is not in the labels .*T11, T12, L1"),
        ("T10/T11 disc", "vertebra T10, which is not in the labels"),
        ("T12/L2 disc", "not adjacent"),
        ("somewhere near T12", "cannot read the landmark"),
    ],
)
def test_bad_landmarks_are_refused(planner, landmark, message):
    with pytest.raises(CordmapError, match=message):
        planner.assess(rostral=landmark)


def test_assessment_reports_achieved_coverage_and_distance(planner):
    result = planner.assess(rostral="T12 upper endplate", compare="T12 middle")
    placement = result.placement
    assert placement.coverage == coverage_at(planner.enlargement, planner.paddle, 30.0)
    assert placement.coverage.rostral == 30.0 and placement.coverage.caudal == 76.5
    assert placement.rostral_edge == "T12 upper endplate"
    assert result.compared.landmark == "T12 middle"
    assert result.distance_mm == pytest.approx(13.5, abs=1e-9)
    by_caudal = planner.assess(caudal="L1 lower endplate").placement.coverage
    assert (by_caudal.rostral, by_caudal.caudal) == pytest.approx((40.5, 87.0), abs=1e-9)


def test_assessment_needs_exactly_one_end_and_labelled_vertebrae(planner):
    with pytest.raises(CordmapError, match="exactly one end"):
        planner.assess(rostral="T12 middle", caudal="L1 middle")
    with pytest.raises(CordmapError, match="exactly one end"):
        planner.assess()
    bare = Planner.prepare(straight())
    with pytest.raises(CordmapError, match="no vertebrae"):
        bare.assess(rostral="T12 middle")
    assert "no vertebrae labelled" in bare.plan(top=1).best.rostral_edge


def test_posterior_elements_are_ignored_and_labelled_discs_used():
    """A spinous process of T12 sloping down behind the cord to s = 66 must not move the T12
    body's lower endplate (s = 57); labelled discs fill the gaps between the bodies."""
    labels = straight(vertebrae=VERTEBRAE)
    array = labels.array.copy()
    i, j, k = np.meshgrid(*(np.arange(n) for n in array.shape), indexing="ij")
    x, y, z = labels.world(np.stack([i, j, k], axis=-1).reshape(-1, 3)).T.reshape((3, *array.shape))
    s = 114.0 - z
    array[(np.abs(x) <= 2) & (y >= -14) & (y <= -8) & (s >= 45) & (s <= 66)] = 32  # T12 spine
    for upper, lower, first in (("T11", "T12", 27.0), ("T12", "L1", 57.0)):
        disc = labels.schema.find("disc", f"{upper}-{lower}").id
        array[(np.abs(x) <= 6) & (y >= 8) & (y <= 14) & (s > first) & (s < first + 3)] = disc
    planner = Planner.prepare(LabelVolume(array, labels.affine, schema=labels.schema))
    assert planner.vertebral.vertebrae["T12"] == pytest.approx((30.0, 57.0), abs=1e-9)
    assert planner.vertebral.discs["T12/L1"] == pytest.approx((57.0, 60.0), abs=1e-9)
    assert planner.vertebral.locate("T12/L1 disc") == pytest.approx(58.5)
