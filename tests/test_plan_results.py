"""`plan.results`: full-precision records, plan.json's format, and reading it back."""

import json

import numpy as np
import pytest

from cordmap.anatomy.phantom import make_phantom
from cordmap.planning.planner import Planner
from cordmap.planning.results import Assessment, Plan

# plan.json and assessment.json as written before the typed results (keys in file order)
MEASURED = [
    "cordmap_version",
    "labels",
    "units",
    "paddle",
    "enlargement",
    "cord",
    "levels",
    "dorsal_surface",
]
PLACEMENT = [
    "rostral_edge",
    "caudal_edge",
    "rostral_mm",
    "caudal_mm",
    "volume_pct",
    "length_pct",
    "segments",
    "slice_count_pct",
    "contacts",
]
SCHEMA = {
    "plan": MEASURED + ["search", "candidates", "curve", "targets"],
    "paddle": ["name", "manufacturer", "array_length_mm", "width_mm", "contacts", "rows"],
    "row": ["row", "offset_mm", "lateral_mm", "contact_length_mm", "contact_width_mm"],
    "enlargement": [
        "segments",
        "estimated",
        "extent_mm",
        "length_mm",
        "volume_mm3",
        "segment_extents_mm",
    ],
    "cord": ["length_mm", "conus_tip_mm", "segments_mm", "csa_mm2"],
    "csa": ["s_mm", "area"],
    "levels": ["vertebrae", "discs"],
    "dorsal_surface": [
        "s_mm",
        "cord_half_width_mm",
        "entry_zone_mm",
        "csf_labelled",
        "segments_mm",
    ],
    "search": ["step_mm", "separation_mm", "top"],
    "curve": ["rostral_mm", "volume_pct", "length_pct", "target_score"],
    "candidate": ["rank"] + PLACEMENT + ["target_score", "reach"],
    "segment": ["segment", "extent_mm", "covered_pct", "contact_rows"],
    "contact": [
        "contact",
        "row",
        "lateral_mm",
        "s_mm",
        "segment",
        "side",
        "entry_zone_offset_mm",
        "dcsf_mm",
        "dcsf_note",
    ],
    "targets": ["segments", "sides", "others", "weights", "candidates", "comparison"],
    "weights": ["rostrocaudal_mm", "lateral_mm", "non_target_weight"],
    "comparison": ["agree", "distance_mm", "volume_pct", "target_score"],
    "by": ["by_volume", "by_target"],
    "assessment": MEASURED + ["landmark", "placement", "compared"],
    "landmark": ["rostral", "caudal"],
    "compared": ["landmark", "placement", "distance_mm"],
    "placement": PLACEMENT,
}


@pytest.fixture(scope="module")
def planner():
    return Planner.prepare(make_phantom(0).labels)


@pytest.fixture(scope="module")
def plan(planner):
    return planner.plan(top=3, targets="L2,L3,L4,S1")


@pytest.fixture(scope="module")
def assessment(planner):
    return planner.assess(rostral="T11 upper endplate", compare="T12 middle")


def as_file(result) -> dict:
    """`to_json()` as written to plan.json and read back."""
    return json.loads(json.dumps(result.to_json(), indent=1))


def test_plan_json_keeps_its_keys(plan):
    data = plan.to_json()
    candidate, targets = data["candidates"][0], data["targets"]
    found = {
        "plan": data,
        "paddle": data["paddle"],
        "row": data["paddle"]["rows"][0],
        "enlargement": data["enlargement"],
        "cord": data["cord"],
        "csa": data["cord"]["csa_mm2"],
        "levels": data["levels"],
        "dorsal_surface": data["dorsal_surface"],
        "search": data["search"],
        "curve": data["curve"],
        "candidate": candidate,
        "segment": candidate["segments"][0],
        "contact": candidate["contacts"][0],
        "targets": targets,
        "weights": targets["weights"],
        "comparison": targets["comparison"],
        "by": targets["comparison"]["volume_pct"],
    }
    for name, record in found.items():
        assert list(record) == SCHEMA[name], name
    assert list(targets["comparison"]["target_score"]) == SCHEMA["by"]
    assert list(targets["candidates"][0]) == SCHEMA["candidate"]
    sides = ("left", "right")
    assert set(candidate["reach"]) == {f"{n} {s}" for n in plan.enlargement.segments for s in sides}


def test_assessment_json_keeps_its_keys(assessment):
    data = assessment.to_json()
    for name, record in {
        "assessment": data,
        "landmark": data["landmark"],
        "compared": data["compared"],
        "placement": data["placement"],
    }.items():
        assert list(record) == SCHEMA[name], name
    assert list(data["compared"]["placement"]) == SCHEMA["placement"]


def test_plan_holds_full_precision_and_rounds_only_in_json(plan):
    best = plan.best.coverage
    values = [best.volume_pct, best.length_pct, plan.best.slice_count_pct, plan.best.target_score]
    values += [c.entry_zone_offset_mm for c in plan.best.contacts]
    assert any(round(v, 2) != v for v in values)
    data = plan.to_json()["candidates"][0]
    assert data["volume_pct"] == round(best.volume_pct, 2)
    assert data["slice_count_pct"] == round(plan.best.slice_count_pct, 2)
    assert data["contacts"][0]["s_mm"] == round(plan.best.contacts[0].s_mm, 2)


def test_plan_round_trips_through_json(plan):
    data = as_file(plan)
    back = Plan.from_json(data)
    assert back.to_json() == data
    assert back.best.coverage.volume_pct == pytest.approx(plan.best.coverage.volume_pct, abs=0.005)
    assert back.best.coverage.rostral == pytest.approx(plan.best.coverage.rostral, abs=0.005)
    assert back.best.coverage.segments[0].rows == plan.best.coverage.segments[0].rows
    assert back.best.contacts[5].segment == plan.best.contacts[5].segment
    assert back.best.reach.keys() == plan.best.reach.keys()
    assert back.paddle.rows == plan.paddle.rows and back.paddle.name == plan.paddle.name
    assert back.levels.vertebrae.keys() == plan.levels.vertebrae.keys()
    assert back.enlargement.segments == plan.enlargement.segments
    assert back.enlargement.length == pytest.approx(plan.enlargement.length, abs=0.01)
    assert back.targets.weights == plan.targets.weights
    assert back.comparison.agree == plan.comparison.agree
    assert back.comparison.distance_mm == pytest.approx(plan.comparison.distance_mm, abs=0.01)
    np.testing.assert_allclose(back.curve.target_score, plan.curve.target_score, atol=0.005)


def test_assessment_round_trips_through_json(assessment):
    data = as_file(assessment)
    back = Assessment.from_json(data)
    assert back.to_json() == data
    assert back.rostral == "T11 upper endplate" and back.caudal is None
    assert back.compared.landmark == "T12 middle"
    assert back.distance_mm == pytest.approx(assessment.distance_mm, abs=0.01)
    assert back.placement.coverage.volume_pct == pytest.approx(
        assessment.placement.coverage.volume_pct, abs=0.005
    )


def test_estimated_enlargement_round_trips_with_its_csa_peak(planner):
    labels = planner.labels
    array = labels.array.copy()
    array[(array >= 116) & (array <= 130) | (array == 60)] = 1  # segments unlabelled
    estimated = Planner.prepare(type(labels)(array, labels.affine, schema=labels.schema))
    plan = estimated.plan(top=1)
    data = as_file(plan)
    assert list(data["enlargement"]) == SCHEMA["enlargement"] + ["csa_peak_mm", "csa_peak_inside"]
    back = Plan.from_json(data)
    assert back.enlargement.estimated and back.to_json() == data
    assert back.enlargement.csa_peak == pytest.approx(plan.enlargement.csa_peak, abs=0.005)
