"""The contact map and the target-root score: against the phantom's analytic anatomy, on
the PAM50 template (cord and CSF labelled) and on sct-t2's manually labelled rootlets."""

import json

import numpy as np
import pytest
from scipy import ndimage

from cordmap.anatomy.phantom import make_phantom
from cordmap.errors import CordmapError
from cordmap.planning.contacts import (
    BESIDE_CORD,
    ENTRY_ZONE_ANGLE_DEG,
    NO_CSF_LABEL,
    entry_zone_lateral,
    entry_zone_points,
)
from cordmap.planning.planner import Planner
from cordmap.planning.targets import Targets, Weights
from cordmap.protocol.levels import SEGMENTS
from cordmap.volume import LabelVolume

#: The phantom acquired as a 3D T2 (0.5 x 0.5 x 1 mm), cropped around the canal.
FINE = dict(pixel_mm=0.5, fov_mm=(64.0, 64.0), n_slices=120, slice_thickness=1.0)


@pytest.fixture(scope="module")
def fine():
    phantom = make_phantom(0, **FINE)
    planner = Planner.prepare(phantom.labels)
    start = planner.enlargement.start
    positions = np.arange(max(start - 20.0, 5.0), planner.enlargement.end - 25.0, 3.7)
    return phantom, planner, positions


def analytic_ray(geometry, base, posterior):
    """The phantom's exact dura and cord crossings (mm behind `base`) of the ray from 30 mm
    behind `base` towards it (None, None when it misses the cord), and whether it grazes
    the cord (passes within 0.3 mm of its lateral edge, where hit or miss and the crossing
    are ill-conditioned)."""
    t = np.arange(30.0, 0.0, -0.002)
    points = base + t[:, None] * posterior
    v, s = geometry.curvilinear(points[:, 1], points[:, 2])
    u = points[:, 0]
    a, b = geometry.cord_semi_axes(s)
    sac_a, sac_b = geometry.sac_semi_axes(s)
    cord = (b > 0) & ((u / np.maximum(a, 1e-9)) ** 2 + (v / np.maximum(b, 1e-9)) ** 2 <= 1)
    sac = (sac_b > 0) & (
        (u / np.maximum(sac_a, 1e-9)) ** 2 + (v / np.maximum(sac_b, 1e-9)) ** 2 <= 1
    )
    grazing = bool(np.abs(np.abs(u) - a).min() < 0.3)
    if not cord.any():
        return None, None, grazing
    return float(t[np.argmax(sac)]), float(t[np.argmax(cord)]), grazing


def test_contact_map_matches_the_phantoms_analytic_anatomy(fine):
    """Segment of every contact (away from a true boundary), entry-zone offset and dCSF
    along the paddle normal within 0.5 mm of the analytic anatomy, on 0.5 x 0.5 x 1 mm."""
    phantom, planner, positions = fine
    truth, centreline = phantom.geometry, planner.geometry.centreline
    angle = np.radians(ENTRY_ZONE_ANGLE_DEG)
    boundaries = np.array([g.superior for g in truth.segments] + [truth.conus.superior])
    dcsf_errors, zone_errors, assigned = [], [], 0
    for rostral in positions:
        for contact in planner.contact_map.contacts(planner.paddle, rostral):
            point = centreline.point(contact.s_mm)[0]
            _, right, posterior = centreline.frame(contact.s_mm)
            s_true = float(truth.curvilinear(point[1], point[2])[1])
            if np.abs(boundaries - s_true).min() > 0.5:
                expected = truth.segment_at(s_true)  # or the conus, or beyond the cord: None
                assert contact.segment == (expected if expected in SEGMENTS else None), contact
                assigned += 1
            half_width = float(truth.cord_semi_axes(s_true)[0])
            expected = abs(contact.lateral_mm) - half_width * np.cos(angle)
            zone_errors.append(contact.entry_zone_offset_mm - expected)
            dura, cord, grazing = analytic_ray(
                truth, point + contact.lateral_mm * right[0], posterior[0]
            )
            if grazing:
                continue
            if cord is None:
                assert contact.dcsf_mm is None and contact.dcsf_note == BESIDE_CORD
            else:
                dcsf_errors.append(contact.dcsf_mm - (dura - cord))
    assert assigned > 100 and len(dcsf_errors) > 100
    assert np.abs(zone_errors).max() < 0.5
    assert np.abs(dcsf_errors).max() < 0.5
    assert abs(np.mean(dcsf_errors)) < 0.1  # no bias: the error is the voxels' quantisation


def test_phantom_dcsf_on_3_mm_slices_stays_within_the_voxel(fine):
    """On the usual 0.8 x 0.8 x 3 mm axial slices the labels cannot place a surface more
    finely than a voxel: dCSF stays within one in-plane pixel plus the slices' tilt."""
    phantom, fine_planner, _ = fine
    coarse = make_phantom(0, fov_mm=(64.0, 64.0))
    planner = Planner.prepare(coarse.labels)
    truth, centreline = coarse.geometry, planner.geometry.centreline
    errors = []
    for rostral in np.arange(planner.enlargement.start - 20, planner.enlargement.end - 25, 5.3):
        for contact in planner.contact_map.contacts(planner.paddle, rostral):
            _, right, posterior = centreline.frame(contact.s_mm)
            base = centreline.point(contact.s_mm)[0] + contact.lateral_mm * right[0]
            dura, cord, grazing = analytic_ray(truth, base, posterior[0])
            if cord is not None and not grazing and contact.dcsf_mm is not None:
                errors.append(contact.dcsf_mm - (dura - cord))
    assert len(errors) > 60
    assert np.abs(errors).max() < 1.0 and np.sqrt(np.mean(np.square(errors))) < 0.4


def test_entry_zones_lie_on_the_phantoms_root_origins(fine):
    """The phantom's dorsal roots leave the cord at the middle of their segment on the
    sulcus the model assumes: the modelled entry zone is within 0.5 mm of each origin."""
    phantom, planner, _ = fine
    truth, centreline = phantom.geometry, planner.geometry.centreline
    offset = planner.enlargement.start - truth.segment("L1").superior
    checked = 0
    for root in truth.roots:
        if root.kind != "dorsal" or root.level not in planner.enlargement.segments:
            continue
        u, v, s = root.points[0]
        origin = truth.world(u, v, s)
        modelled = entry_zone_points(
            planner.geometry, s + offset, 1.0 if root.side == "right" else -1.0
        )[0]
        s_found, _ = centreline.project(modelled)
        assert s_found[0] == pytest.approx(s + offset, abs=0.5)
        assert np.linalg.norm(modelled - origin) < 0.5, root.level
        checked += 1
    assert checked == 2 * len(planner.enlargement.segments)


def test_no_csf_label_makes_dcsf_unavailable_not_zero(fine):
    phantom, planner, _ = fine
    array = phantom.labels.array.copy()
    array[array == 2] = 0
    without = Planner.prepare(
        LabelVolume(array, phantom.labels.affine, schema=phantom.labels.schema)
    )
    plan = without.plan(top=1)
    contacts = plan.best.contacts
    assert len(contacts) == 16 and not plan.dorsal_surface.csf_labelled
    assert all(c.dcsf_mm is None and c.dcsf_note == NO_CSF_LABEL for c in contacts)
    # the rest of the contact map does not depend on the CSF
    with_csf = planner.placement(plan.best.coverage.rostral).contacts
    assert [c.segment for c in contacts] == [c.segment for c in with_csf]


# -- target-root score -------------------------------------------------------------------------


def test_target_score_follows_its_formula_and_weights_file(fine, tmp_path):
    """Reach is 1 for a contact on an entry zone inside a target segment and falls as the
    Gaussians of the weights file; the score is 100 (mean target reach - w mean other)."""
    _, planner, _ = fine
    weights = Weights.load()
    targets = Targets.parse("L3, l4", "both", planner.enlargement, planner.geometry, weights)
    assert targets.segments == ("L3", "L4") and targets.sides == ("left", "right")
    assert targets.others == ("L1", "L2", "L5", "S1", "S2")
    position = planner.enlargement.segment_extents["L3"][0] - 6.25 + 1.0  # row 2 inside L3
    reach = targets.reach(planner.geometry, planner.paddle, [position])
    s = position + 6.25
    zone = float(entry_zone_lateral(planner.geometry, s))
    expected = np.exp(-0.5 * ((4.0 - zone) / weights.lateral_mm) ** 2)
    assert reach["L3 right"][0] >= expected - 1e-9 and reach["L3 left"][0] == reach["L3 right"][0]
    manual = 100 * (
        np.mean([reach[f"{n} {side}"] for n in ("L3", "L4") for side in ("left", "right")])
        - weights.non_target_weight
        * np.mean([reach[f"{n} {side}"] for n in targets.others for side in ("left", "right")])
    )
    assert targets.score(reach)[0] == pytest.approx(manual)
    (tmp_path / "w.json").write_text(
        json.dumps({"rostrocaudal_mm": 2.0, "lateral_mm": 1.5, "non_target_weight": 0.0})
    )
    free = Targets.parse(
        "L3,L4", "both", planner.enlargement, planner.geometry, Weights.load(tmp_path / "w.json")
    )
    assert free.score(reach)[0] == pytest.approx(
        100 * np.mean([reach[f"{n} {side}"] for n in ("L3", "L4") for side in ("left", "right")])
    )


def test_plan_ranks_by_targets_and_compares_the_rankings(fine):
    _, planner, _ = fine
    plan = planner.plan(top=2, targets="L1,L2", sides="right")
    ranked = plan.targets
    assert ranked.segments == ("L1", "L2") and ranked.sides == ("right",)
    best = ranked.best
    assert best.target_score == pytest.approx(plan.curve.target_score.max(), abs=1e-9)
    assert set(best.reach) == {f"{n} right" for n in planner.enlargement.segments}
    # rostral targets pull the array up: the rankings disagree, and the comparison says so
    assert best.coverage.rostral < plan.best.coverage.rostral - 5
    comparison = plan.comparison
    assert not comparison.agree
    assert comparison.by_volume == plan.best and comparison.by_target == best
    assert comparison.distance_mm == pytest.approx(
        plan.best.coverage.rostral - best.coverage.rostral, abs=1e-9
    )
    assert plan.best.coverage.volume_pct >= best.coverage.volume_pct
    assert best.target_score >= plan.best.target_score


@pytest.mark.parametrize(
    "targets, sides, message",
    [
        ("S3", "both", "target S3 is outside the enlargement L1..S2; choose targets among L1..S2"),
        ("L2,X9", "both", "unknown segment X9"),
        (" , ", "both", "names no segment"),
        ("L2", "front", "`sides` must be both, left or right"),
    ],
)
def test_bad_targets_are_refused(fine, targets, sides, message):
    _, planner, _ = fine
    with pytest.raises(CordmapError, match=message.replace("(", r"\(").replace(".", r"\.")):
        planner.plan(top=1, targets=targets, sides=sides)


# -- real data ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pam50(data_dir):
    from cordmap.planning.pam50 import load_pam50_labels

    planner = Planner.prepare(load_pam50_labels(data_dir / "pam50"))
    return planner, planner.plan(top=3, targets="L2,L3,L4,S1")


def test_pam50_dcsf_is_measured_where_the_csf_is_labelled(pam50):
    """PAM50 labels cord and CSF: dCSF is measured under every midline contact; the outer
    contacts, 4 mm out over a cord about 4 mm in half-width, are measured or reported
    beside the cord - never 0."""
    planner, plan = pam50
    assert plan.dorsal_surface.csf_labelled
    beside = 0
    for candidate in plan.candidates + plan.targets.candidates:
        for contact in candidate.contacts:
            if contact.side == "midline":
                assert 2.5 <= contact.dcsf_mm <= 5.5, contact
            elif contact.dcsf_mm is None:
                assert contact.dcsf_note == BESIDE_CORD
                beside += 1
            else:
                assert 2.5 <= contact.dcsf_mm <= 6.0, contact
            assert contact.segment in planner.enlargement.segments
    assert beside > 0


def rootlet_contacts(labels, rootlets, geometry):
    """Arc length, side and RAS+ point of each labelled rootlet voxel touching the cord."""
    cord = np.isin(
        labels.array, [label.id for label in labels.schema.of_class("cord", "segment", "conus")]
    )
    touching = (rootlets.array > 0) & ndimage.binary_dilation(cord) & ~cord
    ijk = np.argwhere(touching)
    xyz = labels.world(ijk)
    s, _ = geometry.centreline.project(xyz)
    _, right, _ = geometry.centreline.frame(s)
    side = np.sign(np.einsum("ij,ij->i", xyz - geometry.centreline.point(s), right))
    return s, side, xyz, rootlets.array[tuple(ijk.T)]


def entry_zone_distances(geometry, s, side, xyz):
    return np.array(
        [
            np.linalg.norm(xyz[i] - entry_zone_points(geometry, s[i], side[i])[0])
            for i in range(len(s))
        ]
    )


def test_pam50_rootlets_enter_their_labelled_segment_near_the_modelled_entry_zone(pam50, data_dir):
    """PAM50's dorsal rootlets (C2..T1) meet the cord inside the segment of their level, a
    few mm lateral to the modelled sulcus (docs/planning.md quotes the distances)."""
    from cordmap.io.nifti import read_nifti

    planner, _ = pam50
    rootlets = read_nifti(data_dir / "pam50" / "PAM50_rootlets.nii.gz")
    s, side, xyz, level = rootlet_contacts(planner.labels, rootlets, planner.geometry)
    assert len(s) > 50
    extents = planner._segments()
    inside = [
        extents[SEGMENTS[n - 1]][0] <= x <= extents[SEGMENTS[n - 1]][1] for x, n in zip(s, level)
    ]
    assert np.mean(inside) == 1.0
    distance = entry_zone_distances(planner.geometry, s, side, xyz)
    assert 2.5 < np.median(distance) < 4.5 and distance.max() < 5.0


def test_sct_t2_rootlets_meet_the_cord_near_the_modelled_entry_zone(data_dir):
    """sct-t2's manually corrected rootlets (C5..C7): distance from where they meet the
    cord to the modelled entry zone at the same arc length and side."""
    from cordmap.io.nifti import read_nifti
    from cordmap.planning.geometry import measure_cord
    from cordmap.protocol.schema import LabelSchema

    folder = data_dir / "sct-t2"
    cord = read_nifti(folder / "t2_seg-manual.nii.gz")
    labels = LabelVolume((cord.array > 0).astype(np.uint16), cord.affine, schema=LabelSchema.load())
    geometry = measure_cord(labels)
    rootlets = read_nifti(folder / "t2_seg-deepseg_rootlets-manual.nii.gz")
    s, side, xyz, level = rootlet_contacts(labels, rootlets, geometry)
    assert len(set(level)) >= 2 and set(level) <= {5, 6, 7} and len(s) >= 10
    distance = entry_zone_distances(geometry, s, side, xyz)
    assert 2.0 < np.median(distance) < 4.0 and distance.max() < 5.0


def test_docs_quote_the_pam50_target_comparison(pam50):
    from pathlib import Path

    _, plan = pam50
    diff = plan.comparison
    text = (Path(__file__).resolve().parents[1] / "docs" / "planning.md").read_text(
        encoding="utf-8"
    )
    assert not diff.agree
    for quoted in (
        f"{diff.by_volume.coverage.volume_pct:.2f} %",
        f"{diff.by_target.coverage.volume_pct:.2f} %",
        f"{diff.distance_mm:.1f} mm",
        f"s = {diff.by_target.coverage.rostral:.1f} mm",
    ):
        assert quoted in text, f"docs/planning.md should quote {quoted!r}"
