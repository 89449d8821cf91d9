"""The built-in phantom: determinism, protocol labels, anatomy, exact volumes, files, realism.

Most checks use the default axial acquisition with coarse pixels, or an isotropic 0.5 mm
grid around the lumbosacral cord, to stay fast.
"""

import json

import numpy as np
import pytest

from cordmap.anatomy.phantom import (
    PhantomTruth,
    describe,
    geometry_of,
    make_phantom,
    sagittal_series,
    sample_phantom,
    write_phantom,
)
from cordmap.anatomy.phantom_geometry import SEGMENTS, VERTEBRAE
from cordmap.anatomy.phantom_image import varied_contrast
from cordmap.anatomy.phantom_realism import compare, pam50_proportions, phantom_proportions
from cordmap.anatomy.phantom_sampling import Grid, Tissue
from cordmap.anatomy.validate import validate
from cordmap.errors import CordmapError
from cordmap.io.nifti import read_labels, read_nifti
from cordmap.protocol.schema import default_schema

CORD_IDS = [1, 60] + list(range(117, 131))
FINE_MM = 0.5


@pytest.fixture(scope="module")
def small():
    """The default acquisition (3 mm axial, T9 to sacrum) with 1.6 mm pixels."""
    return make_phantom(1, pixel_mm=1.6, fov_mm=(128.0, 128.0))


def cord_grid(geometry, pixel=FINE_MM) -> Grid:
    """An isotropic axial grid around the lumbosacral cord (L1 segment to below the tip)."""
    s = np.linspace(geometry.segment("L1").superior - 5.0, geometry.tip + 5.0, 200)
    centre = geometry.centre(s)
    low, high = centre.min(0) - (0.0, 7.0, 0.0), centre.max(0) + (0.0, 7.0, 0.0)
    shape = (
        int(24 / pixel),
        int(np.ceil((high[1] - low[1]) / pixel)),
        int(np.ceil((high[2] - low[2]) / pixel)),
    )
    affine = np.diag([pixel, pixel, pixel, 1.0])
    affine[:3, 3] = (-12.0 + pixel / 2, low[1], low[2])
    return Grid(shape, affine)


@pytest.fixture(scope="module", params=[0, 7])
def fine(request):
    """(geometry, labels) of a seed sampled on the fine grid around its lumbosacral cord."""
    geometry = geometry_of(request.param)
    _, labels = sample_phantom(geometry, cord_grid(geometry))
    return geometry, labels


def test_a_seed_gives_one_phantom_and_seeds_differ():
    a, b = (make_phantom(5, pixel_mm=2.0, fov_mm=(100.0, 100.0), n_slices=12) for _ in range(2))
    c = make_phantom(6, pixel_mm=2.0, fov_mm=(100.0, 100.0), n_slices=12)
    assert np.array_equal(a.image.array, b.image.array)
    assert np.array_equal(a.labels.array, b.labels.array)
    assert a.truth == b.truth
    assert a.truth.parameters != c.truth.parameters
    assert a.truth.conus["tip_s_mm"] != c.truth.conus["tip_s_mm"]
    assert not np.array_equal(a.labels.array, c.labels.array)


def test_anatomy_varies_between_seeds():
    truths = [describe(g, cord_grid(g, 4.0)) for g in map(geometry_of, range(8))]
    for measure in (
        lambda t: t.lumbosacral_cord["length_mm"],
        lambda t: t.max_cord_area["s_mm"] - t.segments["L4"]["superior_s_mm"],
        lambda t: t.conus["tip_s_mm"] - t.vertebrae["L1"]["superior_s_mm"],
        lambda t: t.parameters["lordosis_deg"],
    ):
        values = [measure(t) for t in truths]
        assert np.ptp(values) > 0.05 * np.mean(np.abs(values))


def test_slice_thickness_is_drawn_from_the_seed_when_not_fixed():
    drawn = [
        make_phantom(seed, slice_thickness=None, pixel_mm=4.0, fov_mm=(40.0, 40.0), n_slices=2)
        for seed in range(6)
    ]
    for phantom in drawn:
        thickness = phantom.truth.parameters["slice_thickness"]
        assert phantom.image.spacing[2] == pytest.approx(thickness)
        assert thickness in (2.5, 3.0, 3.5, 4.0)
    assert len({p.image.spacing[2] for p in drawn}) > 1


def test_default_acquisition_is_3mm_axial_with_one_grid(small):
    assert small.image.spacing == pytest.approx((1.6, 1.6, 3.0))
    assert small.image.same_grid(small.labels)
    assert small.labels.schema is default_schema()
    assert small.image.array.dtype == np.uint16
    assert small.truth.grid["shape"] == list(small.image.shape)
    np.testing.assert_allclose(small.truth.grid["affine"], small.image.affine, atol=1e-6)


def test_labels_pass_the_protocol_checks(small):
    report = validate(small.labels)
    assert report.errors == [], report.as_text()
    present = set(small.labels.ids())
    vertebrae = {default_schema().find("vertebra", "S" if v == "S" else v).id for v in VERTEBRAE}
    discs = {
        default_schema().find("disc", f"{upper}-{lower}").id  # between the phantom's vertebrae
        for upper, lower in zip(VERTEBRAE, VERTEBRAE[1:])
    }
    assert vertebrae | discs | {2} <= present
    assert {default_schema().find("segment", s).id for s in SEGMENTS[4:]} | {60} <= present
    for structure in ("dorsal_root", "ventral_root"):
        for side in ("left", "right"):
            ids = {default_schema().find(structure, s, side).id for s in SEGMENTS[4:]}
            assert ids <= present, f"{structure} {side} missing {sorted(ids - present)}"


def test_vertebrae_follow_each_other_caudally(small):
    heights = []
    for name in VERTEBRAE:
        label = small.truth.vertebrae[name]["label_id"]
        voxels = np.argwhere(small.labels.array == label)
        heights.append(small.labels.world(voxels)[:, 2].mean())
    assert np.all(np.diff(heights) < 0)
    tops = [small.truth.vertebrae[v]["superior_s_mm"] for v in VERTEBRAE]
    assert np.all(np.diff(tops) > 0)


def test_segments_lie_in_the_analytic_cord_and_roots_outside_it(fine):
    geometry, labels = fine
    voxels = np.argwhere(np.isin(labels.array, CORD_IDS) | (labels.array >= 200))
    ids = labels.array[tuple(voxels.T)]
    world = labels.world(voxels)
    v, s = geometry.curvilinear(world[:, 1], world[:, 2])
    a, b = geometry.cord_semi_axes(s)
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = (world[:, 0] / a) ** 2 + (v / b) ** 2 <= 1.0
    cord = np.isin(ids, CORD_IDS)
    roots = ids >= 200
    assert inside[cord].all()
    assert not inside[roots].any()
    assert roots.sum() > 1000
    for segment in geometry.segments[4:]:
        in_segment = s[ids == segment.label_id]
        assert in_segment.min() >= segment.superior and in_segment.max() <= segment.inferior


def test_cord_is_widest_in_the_l4_to_s1_segments(fine):
    """Cord area per 1 mm of arc length, from the labels, peaks in segments L4..S1."""
    geometry, labels = fine
    voxels = np.argwhere(np.isin(labels.array, CORD_IDS))
    world = labels.world(voxels)
    _, s = geometry.curvilinear(world[:, 1], world[:, 2])
    start = geometry.segment("L1").superior
    counts = np.bincount(np.floor(s[s >= start] - start).astype(int))[:-1]  # whole 1 mm bins
    area = np.convolve(counts, np.ones(3) / 3, mode="same") * labels.voxel_volume
    peak = start + np.argmax(area[1:-1]) + 1.5
    assert geometry.segment_at(peak) in ("L4", "L5", "S1")
    assert area.max() > 1.2 * area[:5].mean()  # an enlargement, not a plateau


def test_curvilinear_coordinates_invert_the_world_mapping():
    geometry = geometry_of(4)
    rng = np.random.default_rng(0)
    u, v = rng.uniform(-40, 40, 500), rng.uniform(-50, 50, 500)
    s = rng.uniform(geometry.model_top - 50, geometry.model_bottom + 20, 500)
    world = geometry.world(u, v, s)
    back_v, back_s = geometry.curvilinear(world[:, 1], world[:, 2])
    np.testing.assert_allclose(back_v, v, atol=1e-6)
    np.testing.assert_allclose(back_s, s, atol=1e-6)
    np.testing.assert_allclose(world[:, 0], u)


def test_a_slice_normal_to_the_cord_cuts_one_segment_in_its_exact_section():
    """An oblique single-slice grid spanned by x and N(s0) holds only points at s0."""
    geometry, pixel, n = geometry_of(4), 0.1, 141
    s0 = geometry.segment("L3").middle
    tangent, normal = geometry.frame(s0)
    affine = np.eye(4)
    affine[:3, :3] = np.column_stack([(pixel, 0.0, 0.0), normal * pixel, tangent * pixel])
    affine[:3, 3] = geometry.centre(s0) - (n // 2) * pixel * (np.array([1.0, 0, 0]) + normal)
    _, labels = sample_phantom(geometry, Grid((n, n, 1), affine))
    cord = np.isin(labels.array, CORD_IDS)
    assert set(labels.array[cord].tolist()) == {geometry.segment("L3").label_id}
    assert cord.sum() * pixel**2 == pytest.approx(float(geometry.cord_area(s0)), rel=0.02)


def test_conus_tip_lies_at_about_l1():
    for seed in range(12):
        geometry = geometry_of(seed)
        assert geometry.level_at(geometry.tip) in ("T12", "T12-L1", "L1", "L1-L2", "L2")


def test_tip_in_the_labels_is_the_analytic_tip(fine):
    geometry, labels = fine
    world = labels.world(np.argwhere(np.isin(labels.array, CORD_IDS)))
    _, s = geometry.curvilinear(world[:, 1], world[:, 2])
    assert s.max() <= geometry.tip
    assert s.max() > geometry.tip - 2 * FINE_MM


def test_label_volumes_equal_the_analytic_volumes(fine):
    """Voxel counts on the 0.5 mm grid match the integral of the cord's area.

    A voxel-centre sample of a smooth solid errs only at its surface, by at most the
    half-voxel shell there and, on a grid unrelated to the surface, by a small fraction
    of it since over- and under-counts cancel. For a segment of length L, area A and
    perimeter P the shell is P L h / 2; the tolerance is a quarter of that bound: 3-7 %
    of the segments' volumes, 10 % of the small conus region (measured on seeds 0, 7, 11
    and 23: at most 1.9 % for segments, 5.4 % for the conus).
    """
    geometry, labels = fine
    truth = describe(geometry, cord_grid(geometry))
    counts = labels.counts()
    for name in SEGMENTS[4:] + ("conus",):
        item = truth.conus if name == "conus" else truth.segments[name]
        top = item["superior_s_mm"]
        bottom = item["tip_s_mm"] if name == "conus" else item["inferior_s_mm"]
        a, b = geometry.cord_semi_axes(np.linspace(top, bottom, 101))
        perimeter = np.pi * (3 * (a + b) - np.sqrt((3 * a + b) * (a + 3 * b)))  # Ramanujan
        shell = perimeter.mean() * (bottom - top) * FINE_MM / 2
        measured = counts.get(item["label_id"], 0) * labels.voxel_volume
        assert abs(measured - item["volume_mm3"]) <= 0.25 * shell, name


def test_image_contrast_is_t2_like(small):
    image, labels = small.image.array, small.labels.array
    csf = np.median(image[labels == 2])
    cord = np.median(image[np.isin(labels, CORD_IDS)])
    bone = np.median(image[np.isin(labels, [29, 30, 31, 32, 41, 42, 43, 44, 45, 50])])
    assert csf > 1.5 * cord > 1.5 * bone


def test_varied_contrast_changes_the_image_not_the_anatomy(small):
    rng = np.random.default_rng(5)
    intensities = varied_contrast(rng)
    varied = make_phantom(1, pixel_mm=1.6, fov_mm=(128.0, 128.0), intensities=intensities)
    assert np.array_equal(varied.labels.array, small.labels.array)
    image, labels = varied.image.array, varied.labels.array
    cord = np.median(image[np.isin(labels, CORD_IDS)])
    csf = np.median(image[labels == 2])
    assert not np.allclose(image, small.image.array)
    ratio = intensities[Tissue.CORD] / intensities[Tissue.CSF]
    assert cord / csf == pytest.approx(ratio, rel=0.15)  # noise and partial volume aside
    assert intensities[Tissue.AIR] == 0.0


def test_sagittal_series_samples_the_same_anatomy(small):
    image, labels = sagittal_series(small, pixel_mm=2.0, n_slices=5)
    assert image.shape[0] == 5 and image.spacing[0] == pytest.approx(3.0)
    assert image.same_grid(labels)
    middle = labels.array[2]
    assert {2, 41, 121} <= set(np.unique(middle).tolist())
    again = sample_phantom(small.truth, small.labels, partial_volume=1)[1]
    assert np.array_equal(again.array, small.labels.array)


def test_thick_slices_average_planes_through_their_thickness(small):
    geometry, grid = small.geometry, Grid(small.labels.shape, small.labels.affine)
    thin_image, thin_labels = sample_phantom(geometry, grid, partial_volume=1)
    assert np.array_equal(thin_labels.array, small.labels.array)
    boundary = small.labels.array != np.roll(small.labels.array, 1, axis=2)
    differs = thin_image.array != small.image.array
    assert differs[boundary].mean() > 5 * differs[~boundary].mean()
    iso = cord_grid(geometry, 4.0)
    assert np.array_equal(
        sample_phantom(geometry, iso, partial_volume=3)[0].array,
        sample_phantom(geometry, iso, partial_volume=1)[0].array,
    )
    with pytest.raises(CordmapError, match="odd"):
        sample_phantom(geometry, iso, partial_volume=2)


def test_truth_round_trips_through_json(small, tmp_path):
    truth = small.truth
    assert PhantomTruth.from_json(truth.to_json()) == truth
    assert truth.enlargement["segments"] == ["L1", "S2"]
    boundaries = [truth.segments[s]["superior_s_mm"] for s in SEGMENTS]
    assert np.all(np.diff(boundaries) > 0)
    assert truth.conus["tip_s_mm"] == truth.lumbosacral_cord["tip_s_mm"]
    path = tmp_path / "truth.json"
    path.write_text(truth.to_json())
    assert PhantomTruth.read(path) == truth
    path.write_text(json.dumps({"seed": 1}))
    with pytest.raises(CordmapError, match="regenerate"):
        PhantomTruth.read(path)


def test_write_phantom_files(tmp_path):
    phantom = make_phantom(2, pixel_mm=4.0, fov_mm=(80.0, 80.0), n_slices=6)
    out = tmp_path / "phantom"
    written = write_phantom(phantom, out)
    assert sorted(p.name for p in written) == sorted(
        [
            "sub-phantom2_T2w.nii.gz",
            "sub-phantom2_T2w_desc-truth_dseg.nii.gz",
            "truth.json",
            "dicom",
        ]
    )
    image = read_nifti(out / "sub-phantom2_T2w.nii.gz")
    labels = read_labels(out / "sub-phantom2_T2w_desc-truth_dseg.nii.gz", default_schema())
    assert np.array_equal(image.array, phantom.image.array)
    assert np.array_equal(labels.array, phantom.labels.array)
    assert PhantomTruth.read(out / "truth.json") == phantom.truth
    import pydicom

    from cordmap.io.dicom import list_series, read_dicom

    series = list_series(out / "dicom")
    assert sorted(s.orientation for s in series) == ["axial", "sagittal"]
    studies = {
        pydicom.dcmread(s.files[0], stop_before_pixels=True).StudyInstanceUID for s in series
    }
    assert len(studies) == 1
    axial = read_dicom(out / "dicom", series=1)
    np.testing.assert_allclose(axial.array, phantom.image.array)
    np.testing.assert_allclose(axial.affine, phantom.image.affine, atol=1e-3)
    write_phantom(phantom, out, dicom=False)  # an earlier phantom folder is replaced
    assert not (out / "dicom").exists()


def test_write_phantom_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    phantom = make_phantom(2, pixel_mm=4.0, fov_mm=(40.0, 40.0), n_slices=2)
    with pytest.raises(CordmapError, match="not a phantom folder"):
        write_phantom(phantom, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_bad_parameters_are_refused():
    with pytest.raises(CordmapError, match="pixel size"):
        make_phantom(0, pixel_mm=0.0)
    with pytest.raises(CordmapError, match="seed"):
        make_phantom(-1)
    with pytest.raises(CordmapError, match="left to right"):
        Grid((2, 2, 2), np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]))


def test_proportions_match_pam50(data_dir):
    """Lengths within 20 % and levels within one vertebra of the PAM50 template."""
    pam50 = pam50_proportions(data_dir / "pam50")
    assert pam50["lumbosacral_length_mm"] == pytest.approx(90.5, abs=1.0)
    assert pam50["enlargement_length_mm"] == pytest.approx(74.5, abs=1.0)
    for seed in range(10):
        phantom = phantom_proportions(geometry_of(seed))
        failures = {k: v for k, v in compare(phantom, pam50).items() if not v[2]}
        assert not failures, f"seed {seed}: {failures} vs PAM50 {pam50}"


def test_cli_writes_a_phantom_and_refuses_bad_options(tmp_path):
    from typer.testing import CliRunner

    from cordmap.cli import app

    out = tmp_path / "p"
    result = CliRunner().invoke(
        app, ["phantom", str(out), "--seed", "3", "--pixel", "4", "--slices", "4", "--no-dicom"]
    )
    assert result.exit_code == 0, result.output
    assert "conus tip at" in result.output
    truth = PhantomTruth.read(out / "truth.json")
    assert truth.seed == 3 and truth.grid["shape"] == [40, 40, 4]
    assert (out / "sub-phantom3_T2w_desc-truth_dseg.nii.gz").is_file()
    bad = CliRunner().invoke(app, ["phantom", str(tmp_path / "q"), "--pixel", "0"])
    assert bad.exit_code == 1 and "pixel size" in bad.output
    assert not (tmp_path / "q").exists()
