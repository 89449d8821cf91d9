"""Cord geometry on synthetic cords with analytic answers: straight, tapered and curved."""

import numpy as np
import pytest

from cordmap.errors import CordmapError
from cordmap.planning.enlargement import (
    PAM50_ROSTRAL_END_ABOVE_TIP_MM,
    csa_peak,
    find_enlargement,
    parse_segment_range,
)
from cordmap.planning.geometry import ArcVolume, measure_cord
from cordmap.planning.synthetic import synthetic_cord
from cordmap.volume import LabelVolume

# segment lengths on 3 mm slice faces, so that a straight grid-aligned cord is exact
SEGMENTS = [
    ("T12", 21.0),
    ("L1", 15.0),
    ("L2", 12.0),
    ("L3", 12.0),
    ("L4", 9.0),
    ("L5", 9.0),
    ("S1", 6.0),
    ("S2", 6.0),
    ("S3", 6.0),
    ("S4", 3.0),
    ("S5", 6.0),
]
ENDS = np.cumsum([length for _, length in SEGMENTS])  # caudal end of each segment
L1_START, S2_END = 21.0, 90.0


def straight(**kwargs):
    options = dict(
        shape=(40, 40, 40), spacing=(0.5, 0.5, 3.0), segments=SEGMENTS, radius=4.0, top_mm=114.0
    )
    options.update(kwargs)
    return synthetic_cord(**options)


def arc(spacing=(0.5, 0.5, 0.5), radius_of_curvature=100.0):
    depth = int(round(120 / spacing[2]))
    return synthetic_cord(
        (40, int(round(130 / spacing[1])), depth),
        spacing,
        SEGMENTS,
        radius=4.0,
        top_mm=117.0,
        curvature_mm=radius_of_curvature,
    )


def test_arc_volume_is_exact_piecewise_linear():
    volume = ArcVolume(np.array([1.0, 4.0]), np.array([0.5, 1.0]), np.array([2.0, 6.0]))
    assert volume.total == 8.0 and (volume.start, volume.end) == (0.5, 5.0)
    np.testing.assert_allclose(
        volume.cumulative([0.0, 0.75, 1.5, 3.5, 4.0, 9.0]), [0.0, 0.5, 2.0, 3.5, 5.0, 8.0]
    )
    np.testing.assert_allclose(volume.between(0.75, 4.0), 4.5)


def test_straight_cord_extents_length_and_area_are_exact():
    labels = straight()
    geometry = measure_cord(labels)
    assert geometry.length == pytest.approx(ENDS[-1], abs=1e-9)
    assert geometry.conus_tip == pytest.approx(ENDS[-1], abs=1e-9)
    assert not geometry.cut_rostral and not geometry.cut_caudal
    starts = np.concatenate([[0.0], ENDS[:-1]])
    for (name, _), start, end in zip(SEGMENTS, starts, ENDS):
        label_id = labels.schema.find("segment", name).id
        assert geometry.extents[label_id] == pytest.approx((start, end), abs=1e-9)
    # the area perpendicular to a straight cord is the voxel area of one axial slice
    area = np.count_nonzero(labels.array[:, :, 20]) * 0.25
    inside = (geometry.csa_s > 2) & (geometry.csa_s < ENDS[-1] - 2)
    np.testing.assert_allclose(geometry.csa[inside], area, rtol=1e-9)
    assert area == pytest.approx(np.pi * 16, rel=0.05)


def test_curved_cord_is_measured_along_its_centreline():
    geometry = measure_cord(arc())
    # the arc spans 105 mm along the cord but only R sin(105/R) = 86.7 mm along S
    assert geometry.length == pytest.approx(ENDS[-1], abs=0.5)
    enlargement = find_enlargement(geometry, arc().schema, "L1..S2")
    assert (enlargement.start, enlargement.end) == pytest.approx((L1_START, S2_END), abs=0.3)
    for (name, _), end in zip(SEGMENTS[1:8], ENDS[1:8]):
        assert enlargement.segment_extents[name][1] == pytest.approx(end, abs=0.3)
    # cross-section perpendicular to the cord: pi r^2 all along, although axial slices of
    # the bent part are up to 1 / cos(60 deg) = 2 times larger
    inside = (geometry.csa_s > 3) & (geometry.csa_s < ENDS[-1] - 3)
    np.testing.assert_allclose(geometry.csa[inside], np.pi * 16, rtol=0.04)


def test_curved_centreline_lies_on_the_true_circle():
    geometry = measure_cord(arc(spacing=(0.5, 0.5, 2.0), radius_of_curvature=150.0))
    points = geometry.centreline.points
    distance = np.hypot(points[:, 1] - 150.0, points[:, 2] - 117.0) - 150.0
    assert np.abs(distance).max() < 0.3


def test_enlargement_estimated_from_the_conus_and_checked_by_the_csa_peak():
    """A cord swelling to its largest radius at s = 60 and tapering from s = 90 to a tip at
    s = 105, without segment labels: the segments lie at their PAM50 distances above the
    tip, and the CSA peak (s = 60) falls inside the estimate."""

    def radius(s):
        swelling = 3.5 + 1.5 * np.exp(-(((s - 60) / 12) ** 2))
        at_90 = 3.5 + 1.5 * np.exp(-((30 / 12) ** 2))
        return np.where(s <= 90, swelling, at_90 - (at_90 - 0.5) * (s - 90) / 15)

    labels = straight(spacing=(0.5, 0.5, 0.5), shape=(40, 40, 240), radius=radius)
    plain = LabelVolume(
        np.where(labels.array > 0, 1, 0).astype(np.uint16), labels.affine, schema=labels.schema
    )
    geometry = measure_cord(plain)
    assert geometry.conus_tip == pytest.approx(105, abs=0.5)
    enlargement = find_enlargement(geometry, plain.schema, "L1..S2")
    assert enlargement.estimated and "estimated" in enlargement.describe()
    tip = geometry.conus_tip
    assert enlargement.start == pytest.approx(tip - PAM50_ROSTRAL_END_ABOVE_TIP_MM["L1"], abs=1e-9)
    assert enlargement.end == pytest.approx(tip - PAM50_ROSTRAL_END_ABOVE_TIP_MM["S3"], abs=1e-9)
    assert enlargement.segment_extents["L2"][0] == pytest.approx(tip - 73.5, abs=1e-9)
    assert enlargement.csa_peak == pytest.approx(60, abs=1.0)
    assert csa_peak(geometry) == enlargement.csa_peak
    assert not enlargement.segment_volumes


def test_estimated_enlargement_needs_the_conus():
    labels = straight()
    plain = np.where(labels.array > 0, 1, 0).astype(np.uint16)
    affine = labels.affine.copy()
    affine[2, 3] += 30.0
    cut = LabelVolume(plain[:, :, 10:], affine, schema=labels.schema)
    with pytest.raises(CordmapError, match="needs the conus"):
        find_enlargement(measure_cord(cut), labels.schema, "L1..S2")


def test_segment_range_parsing():
    assert parse_segment_range("L1..S1") == ("L1", "L2", "L3", "L4", "L5", "S1")
    assert parse_segment_range("l2-l3") == ("L2", "L3")
    for bad in ("L1", "S2..L1", "X1..S2"):
        with pytest.raises(CordmapError):
            parse_segment_range(bad)


def test_no_cord_label_is_refused():
    labels = straight()
    empty = LabelVolume(np.zeros_like(labels.array), labels.affine, schema=labels.schema)
    with pytest.raises(CordmapError, match="no spinal cord label"):
        measure_cord(empty, "case sub-01")


def test_enlargement_cut_by_the_field_of_view_is_refused():
    labels = straight()  # cord from S 114 (s = 0) to S 9 (s = 105)
    affine = labels.affine.copy()
    affine[2, 3] += 30.0  # keep the slices' world positions: the image now starts at S 30
    cut = LabelVolume(labels.array[:, :, 10:], affine, schema=labels.schema)  # cord ends in S1
    geometry = measure_cord(cut)
    assert geometry.cut_caudal and geometry.conus_tip is None
    with pytest.raises(CordmapError, match="S2, S3, S4, S5|S2 of"):
        find_enlargement(geometry, cut.schema, "L1..S2")
    with pytest.raises(CordmapError, match="bottom of the image"):
        find_enlargement(geometry, cut.schema, "L1..S1")
    assert not find_enlargement(geometry, cut.schema, "L1..L5").estimated


def test_labelled_segments_missing_from_the_range_are_named():
    labels = straight()
    array = labels.array.copy()
    array[array == labels.schema.find("segment", "S2").id] = 1
    geometry = measure_cord(LabelVolume(array, labels.affine, schema=labels.schema))
    with pytest.raises(CordmapError, match="S2"):
        find_enlargement(geometry, labels.schema, "L1..S2")


def test_enlargement_cut_at_the_top_of_the_image_is_refused():
    labels = straight()  # cord from S 114 (s = 0): L1 spans S 93..78
    cut = LabelVolume(labels.array[:, :, :29], labels.affine, schema=labels.schema)  # to S 87
    geometry = measure_cord(cut)
    assert geometry.cut_rostral and not geometry.cut_caudal
    with pytest.raises(CordmapError, match="reaches the top of the image"):
        find_enlargement(geometry, cut.schema, "L1..S2")
    assert not find_enlargement(geometry, cut.schema, "L2..S2").estimated


def test_stray_blobs_do_not_move_the_cord_or_the_vertebrae():
    """A segmentation's false positives: a cord blob below the conus and a stray voxel of
    T12 far above it must not change the conus tip or T12's extent."""
    labels = straight(vertebrae=[("T12", 30.0, 57.0)])
    clean = measure_cord(labels)
    array = labels.array.copy()
    array[20:23, 20:23, 0] = labels.schema.find("cord").id  # S 0..3, 6 mm below the tip
    array[20, 34, 35] = labels.schema.find("vertebra", "T12").id  # s = 7.5, 7.25 mm anterior
    noisy = measure_cord(LabelVolume(array, labels.affine, schema=labels.schema))
    assert noisy.conus_tip == pytest.approx(clean.conus_tip, abs=1e-9)
    assert noisy.extents[32] == pytest.approx(clean.extents[32], abs=1e-9) == (30.0, 57.0)
