"""Coverage, best placements and the paddle catalogue, against analytic answers."""

import json

import numpy as np
import pytest
from test_plan_geometry import L1_START, S2_END, SEGMENTS, arc, straight

from cordmap.errors import CordmapError
from cordmap.planning.coverage import coverage_at, coverage_curve, slice_count_coverage
from cordmap.planning.enlargement import find_enlargement
from cordmap.planning.geometry import measure_cord
from cordmap.planning.paddles import get_paddle, load_catalogue
from cordmap.planning.planner import Planner
from cordmap.planning.search import best_positions, search_positions

SPECIFY = get_paddle()
LENGTH = S2_END - L1_START  # 69 mm of L1..S2


def overlap(a, b, c, d):
    return max(min(b, d) - max(a, c), 0.0)


def custom_paddle(tmp_path, length, name="Test"):
    path = tmp_path / "paddles.json"
    path.write_text(
        json.dumps(
            {
                "models": [
                    {
                        "name": name,
                        "array_length_mm": length,
                        "width_mm": 8,
                        "rows": [
                            {
                                "offset_mm": length / 2,
                                "lateral_mm": [0],
                                "contact_length_mm": 3,
                                "contact_width_mm": 2,
                            }
                        ],
                    }
                ]
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def cylinder():
    labels = straight()
    geometry = measure_cord(labels)
    return labels, geometry, find_enlargement(geometry, labels.schema, "L1..S2")


def test_specify_565_catalogue_entry():
    assert SPECIFY.array_length_mm == 46.5 and SPECIFY.contacts == 16
    columns = {}
    for row in SPECIFY.rows:
        assert 0 <= row.span[0] and row.span[1] <= SPECIFY.array_length_mm
        for x in row.lateral_mm:
            columns[x] = columns.get(x, 0) + 1
    assert sorted(columns.values()) == [5, 5, 6]  # 5-6-5, the 6 in the middle column
    assert columns[0.0] == 6
    assert get_paddle("SPECIFY 565").name == get_paddle("39565").name == "Specify 5-6-5"


def test_user_paddle_file_adds_models_and_bad_files_are_refused(tmp_path):
    path = custom_paddle(tmp_path, 30.0, name="Lab 1x8")
    assert get_paddle("lab-1x8", path).array_length_mm == 30.0
    assert "specify565" in load_catalogue(path)  # the shipped ones stay
    with pytest.raises(CordmapError, match="unknown paddle model 'Penta'.*Specify 5-6-5"):
        get_paddle("Penta", path)
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "models": [
                    {
                        "name": "X",
                        "array_length_mm": 10,
                        "width_mm": 8,
                        "rows": [
                            {
                                "offset_mm": 12,
                                "lateral_mm": [0],
                                "contact_length_mm": 3,
                                "contact_width_mm": 2,
                            }
                        ],
                    }
                ]
            }
        )
    )
    with pytest.raises(CordmapError, match="bad.json.*outside"):
        get_paddle("X", bad)
    bad.write_text(
        json.dumps({"models": [{"name": "X", "array_length_mm": 10, "width_mm": 0, "rows": []}]})
    )
    with pytest.raises(CordmapError, match="bad.json.*positive"):
        get_paddle("X", bad)
    bad.write_text(json.dumps({"models": [{"name": "X", "array_length_mm": 10, "width_mm": 8}]}))
    with pytest.raises(
        CordmapError,
        match="bad.json.*'X' has no contact geometry.*rows of contacts \\(offset_mm, lateral_mm",
    ):
        get_paddle("X", bad)
    bad.write_text(
        json.dumps(
            {
                "models": [
                    {
                        "name": "X",
                        "array_length_mm": 10,
                        "width_mm": 8,
                        "rows": [
                            {
                                "offset_mm": 5,
                                "lateral_mm": [-4, 4],
                                "contact_length_mm": 3,
                                "contact_width_mm": 2,
                            }
                        ],
                    }
                ]
            }
        )
    )
    with pytest.raises(CordmapError, match="bad.json.*beyond its 8.0 mm width"):
        get_paddle("X", bad)
    bad.write_text("{not json")
    with pytest.raises(CordmapError, match="bad.json is not valid JSON"):
        get_paddle("X", bad)
    bad.write_text(
        '{"models": [{"name": "X", "array_length_mm": NaN, "width_mm": 8, "rows": '
        '[{"offset_mm": 1, "lateral_mm": [0], "contact_length_mm": 3, '
        '"contact_width_mm": 2}]}]}'
    )
    with pytest.raises(CordmapError, match="bad.json is malformed.*not a finite number"):
        get_paddle("X", bad)


def test_volume_and_length_coverage_exact_on_a_straight_cylinder(cylinder):
    _, _, enlargement = cylinder
    positions = np.array([0.0, 7.3, 21.0, 30.1, 43.5, 50.0, 57.2])
    volume, length = coverage_curve(enlargement, SPECIFY, positions)
    expected = [100 * overlap(s, s + 46.5, L1_START, S2_END) / LENGTH for s in positions]
    np.testing.assert_allclose(volume, expected, atol=1e-9)  # constant cross-section
    np.testing.assert_allclose(length, expected, atol=1e-9)


def test_per_segment_coverage_and_contact_rows(cylinder):
    _, _, enlargement = cylinder
    s = 30.1
    result = coverage_at(enlargement, SPECIFY, s)
    starts = np.cumsum([0.0] + [length for _, length in SEGMENTS])
    for segment in result.segments:
        index = [name for name, _ in SEGMENTS].index(segment.segment)
        a, b = starts[index], starts[index + 1]
        assert segment.extent == pytest.approx((a, b), abs=1e-9)
        assert segment.covered_pct == pytest.approx(
            100 * overlap(s, s + 46.5, a, b) / (b - a), abs=1e-9
        )
        rows = tuple(
            i + 1
            for i, row in enumerate(SPECIFY.rows)
            if overlap(s + row.span[0], s + row.span[1], a, b) > 0
        )
        assert segment.rows == rows
    by_name = {seg.segment: seg for seg in result.segments}
    assert (
        by_name["L1"].rows[0] == 1
        and by_name["S1"].rows == ()
        and by_name["L3"].covered_pct == pytest.approx(100)
    )


def test_coverage_of_a_cone_matches_the_integral_of_its_area():
    def radius(s):
        return 5.0 - 3.0 * s / 105

    labels = straight(spacing=(0.5, 0.5, 0.5), shape=(40, 40, 240), radius=radius)
    geometry = measure_cord(labels)
    enlargement = find_enlargement(geometry, labels.schema, "L1..S2")

    def volume(a, b):  # pi * integral of r(s)^2
        primitive = lambda s: -(105 / 9.0) * (5.0 - 3.0 * s / 105) ** 3  # noqa: E731
        return np.pi * (primitive(b) - primitive(a))

    for s in (10.0, 21.0, 33.3, 50.0):
        a, b = max(s, L1_START), min(s + 46.5, S2_END)
        got = coverage_at(enlargement, SPECIFY, s).volume_pct
        assert got == pytest.approx(100 * volume(a, b) / volume(L1_START, S2_END), abs=0.5)
    # the cord thins caudally, so the best array starts at the top of the enlargement
    curve = search_positions(geometry, SPECIFY, enlargement)
    assert best_positions(curve, top=1)[0] == pytest.approx(L1_START, abs=0.5)


def test_coverage_on_a_curved_cord_is_proportional_to_arc_length():
    labels = arc()
    geometry = measure_cord(labels)
    enlargement = find_enlargement(geometry, labels.schema, "L1..S2")
    for s in (10.0, 21.0, 40.0, 55.0):
        expected = 100 * overlap(s, s + 46.5, L1_START, S2_END) / LENGTH
        result = coverage_at(enlargement, SPECIFY, s)
        assert result.volume_pct == pytest.approx(expected, abs=0.6)
        assert result.length_pct == pytest.approx(expected, abs=0.6)


def test_best_placements_centre_on_the_plateau_and_stay_apart(cylinder):
    _, geometry, enlargement = cylinder
    curve = search_positions(geometry, SPECIFY, enlargement, step=0.5)
    assert curve.positions[0] == 0 and curve.positions[-1] <= geometry.length - 46.5
    best = best_positions(curve, top=3, separation=5.0)
    # constant area: every array inside the enlargement covers 46.5 / 69 of it, from
    # s = 21 to s = 90 - 46.5; the middle of that run is proposed first
    assert best[0] == pytest.approx((L1_START + S2_END - 46.5) / 2, abs=0.25)
    assert len(best) == 3
    assert min(abs(a - b) for i, a in enumerate(best) for b in best[i + 1 :]) >= 5.0
    volume, _ = coverage_curve(enlargement, SPECIFY, best)
    np.testing.assert_allclose(volume, 100 * 46.5 / LENGTH, atol=1e-9)


def test_an_enlargement_shorter_than_the_array_is_covered_fully_with_equal_margins(cylinder):
    labels, geometry, _ = cylinder
    short = find_enlargement(geometry, labels.schema, "L2..L4")  # s 36..69, 33 mm
    curve = search_positions(geometry, SPECIFY, short)
    best = best_positions(curve, top=1)[0]
    assert best == pytest.approx((36 + 69 - 46.5) / 2, abs=0.25)
    assert coverage_at(short, SPECIFY, best).volume_pct == pytest.approx(100, abs=1e-9)


def test_paddle_longer_than_the_cord_is_refused(tmp_path, cylinder):
    labels, _, _ = cylinder
    with pytest.raises(CordmapError, match="longer than the 105.0 mm of cord"):
        Planner.prepare(labels, paddle="Test", paddles_file=custom_paddle(tmp_path, 150.0)).plan()


def test_slice_count_method_equals_arc_length_on_an_aligned_straight_cord(tmp_path, cylinder):
    labels, _, _ = cylinder
    planner = Planner.prepare(labels, paddle="Test", paddles_file=custom_paddle(tmp_path, 45.0))
    for s in (21.0, 33.0, 48.0):  # the array's rostral end on a slice face
        arc_pct = coverage_at(planner.enlargement, planner.paddle, s).volume_pct
        assert planner.slice_count(s) == pytest.approx(arc_pct, abs=1e-9)
    mask = np.zeros((2, 2, 10), dtype=bool)
    mask[0, 0, :] = True
    slice_s = np.arange(10) * 3.0 + 1.5  # slices [0, 3], [3, 6], ... [27, 30]
    assert slice_count_coverage(mask, slice_s, top_s=30.0, slices=2) == pytest.approx(20.0)
    assert slice_count_coverage(mask, slice_s, top_s=28.0, slices=15) == pytest.approx(100.0)
