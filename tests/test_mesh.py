"""Meshes of label volumes: volumes, closure, world alignment, thin roots, exports."""

import numpy as np
import pytest
import trimesh
from scipy import ndimage

from cordmap.errors import CordmapError
from cordmap.io.nifti import read_nifti
from cordmap.mesh import export_meshes, mesh_labels, mesh_stats
from cordmap.mesh.exports import GLB_ROOT, GLTF_FROM_RAS_MM
from cordmap.mesh.refine import close_decimated
from cordmap.protocol.schema import LabelSchema
from cordmap.volume import LabelVolume

#: Mesh volume vs voxel volume (and vs the analytic solid) for solids >= 6 voxels across
#: or of >= 1000 voxels; structures of 100-1000 voxels (a cord tip) within 8%. Below
#: 100 voxels marching cubes' cut corners can take 15% of a blob: not asserted.
VOLUME_TOLERANCE = 0.02
SMALL_VOLUME_TOLERANCE = 0.08

SCHEMA = LabelSchema.load()
CORD, CSF, CONUS, ROOT = 1, 2, 60, 221

# 0.8 x 0.8 x 1.6 mm voxels, rotated 17 degrees about S, shifted: nothing axis-aligned
_TURN = 0.3
AFFINE = np.eye(4)
AFFINE[:3, :3] = np.array(
    [[np.cos(_TURN), -np.sin(_TURN), 0], [np.sin(_TURN), np.cos(_TURN), 0], [0, 0, 1]]
) @ np.diag([0.8, 0.8, 1.6])
AFFINE[:3, 3] = [-12.0, 30.0, -100.0]
VOXEL_MM3 = 0.8 * 0.8 * 1.6
SHAPE = (40, 40, 40)
GRID = np.indices(SHAPE).astype(float)
CENTRE = 20.0


def _sphere(radius_mm):
    mm = (GRID - CENTRE) * np.array([0.8, 0.8, 1.6])[:, None, None, None]
    return (mm**2).sum(axis=0) <= radius_mm**2, 4 / 3 * np.pi * radius_mm**3


def _box():
    mask = np.zeros(SHAPE, bool)
    mask[5:30, 8:20, 10:25] = True
    return mask, 25 * 12 * 15 * VOXEL_MM3


def _cylinder(radius_mm):
    mm = (GRID[:2] - CENTRE) * 0.8
    mask = ((mm**2).sum(axis=0) <= radius_mm**2) & (GRID[2] >= 5) & (GRID[2] < 35)
    return mask, np.pi * radius_mm**2 * 30 * 1.6


def _labels(array, affine=AFFINE, schema=SCHEMA):
    return LabelVolume(np.asarray(array, dtype=np.uint16), affine, schema=schema)


@pytest.mark.parametrize(
    "solid", [_sphere(10.0), _box(), _cylinder(7.0)], ids=["sphere", "box", "cylinder"]
)
@pytest.mark.parametrize("smoothing, reduction", [(0, 0.0), (10, 0.9)])
def test_solid_volume_matches_voxels_and_analytic(solid, smoothing, reduction):
    mask, analytic_mm3 = solid
    meshes = mesh_labels(_labels(mask * CORD), smoothing=smoothing, reduction=reduction)
    stats = mesh_stats(meshes)[CORD]
    voxel_mm3 = mask.sum() * VOXEL_MM3
    assert stats.watertight
    assert stats.volume_mm3 == pytest.approx(voxel_mm3, rel=VOLUME_TOLERANCE)
    assert stats.volume_mm3 == pytest.approx(analytic_mm3, rel=VOLUME_TOLERANCE)
    assert meshes[CORD].is_winding_consistent and meshes[CORD].volume > 0  # outward faces
    if reduction:
        unreduced = mesh_labels(_labels(mask * CORD), smoothing=smoothing, reduction=0)
        assert stats.triangles <= 0.11 * len(unreduced[CORD].faces)


def test_sphere_area_close_to_analytic():
    mask, _ = _sphere(10.0)
    stats = mesh_stats(mesh_labels(_labels(mask * CORD), smoothing=10, reduction=0))[CORD]
    assert stats.area_mm2 == pytest.approx(4 * np.pi * 10.0**2, rel=0.05)


def test_multi_label_touching_solids_each_closed():
    array = np.zeros(SHAPE, np.uint16)
    array[5:20, 5:30, 5:30] = CSF
    array[20:35, 5:30, 5:30] = CONUS  # shares a face with the CSF block
    stats = mesh_stats(mesh_labels(_labels(array)))
    assert sorted(stats) == [CSF, CONUS]
    for label_id, entry in stats.items():
        assert entry.watertight
        expected = (array == label_id).sum() * VOXEL_MM3
        assert entry.volume_mm3 == pytest.approx(expected, rel=VOLUME_TOLERANCE)


@pytest.mark.parametrize("thin_upsample", [0, 1, 2, 3])
def test_one_voxel_mesh_centred_at_affine_of_its_index(thin_upsample):
    ijk = (7, 23, 31)
    array = np.zeros(SHAPE, np.uint16)
    array[ijk] = CORD
    mesh = mesh_labels(_labels(array), smoothing=0, reduction=0, thin_upsample=thin_upsample)[CORD]
    expected = AFFINE @ [*ijk, 1]
    np.testing.assert_allclose(mesh.center_mass, expected[:3], atol=1e-6)
    np.testing.assert_allclose(mesh.bounds.mean(axis=0), expected[:3], atol=1e-6)


def test_label_at_the_volume_edge_is_closed_and_in_place():
    array = np.zeros(SHAPE, np.uint16)
    array[:6, :6, :6] = CORD  # touches three faces of the volume
    mesh = mesh_labels(_labels(array), smoothing=0, reduction=0)[CORD]
    assert mesh.is_watertight
    corner = np.array([-0.5, -0.5, -0.5, 1.0])  # the outer corner of voxel (0, 0, 0)
    lowest = AFFINE @ corner
    assert np.min(np.linalg.norm(mesh.vertices - lowest[:3], axis=1)) < 0.8  # chamfer only


def _diagonal_line(length=20):
    array = np.zeros(SHAPE, np.uint16)
    for step in range(length):  # voxels touch their neighbours at a corner only
        array[5 + step, 5 + step, 30 - step] = ROOT
    return array


@pytest.mark.parametrize("thin_upsample", [1, 2, 3])
def test_thin_diagonal_root_is_one_connected_tube(thin_upsample):
    array = _diagonal_line()
    meshes = mesh_labels(_labels(array), smoothing=10, reduction=0.9, thin_upsample=thin_upsample)
    tube = meshes[ROOT]
    assert len(tube.split(only_watertight=False)) == 1
    assert tube.is_watertight
    step = AFFINE[:3, :3] @ [1, 1, -1]  # world vector from one voxel of the line to the next
    extent = np.ptp(tube.vertices @ (step / np.linalg.norm(step)))
    centre_to_centre = 19 * np.linalg.norm(step)
    assert centre_to_centre < extent < centre_to_centre + np.linalg.norm(step)  # end to end


def test_without_bridges_the_diagonal_root_falls_to_dust():
    meshes = mesh_labels(_labels(_diagonal_line()), smoothing=0, reduction=0, thin_upsample=0)
    assert len(meshes[ROOT].split(only_watertight=False)) == 20


def test_close_decimated_splits_a_pinched_edge_and_drops_fins():
    first = trimesh.creation.box(bounds=[[0, 0, 0], [1, 1, 1]])
    second = trimesh.creation.box(bounds=[[1, 1, 0], [2, 2, 1]])  # shares the edge x=y=1
    pinched = trimesh.util.concatenate([first, second])
    pinched.merge_vertices()
    fin = np.array([[0, 1, 2], [0, 2, 1]]) + len(pinched.vertices)
    vertices = np.vstack([pinched.vertices, [[5, 5, 5], [6, 5, 5], [5, 6, 5]]])
    broken = trimesh.Trimesh(vertices, np.vstack([pinched.faces, fin]), process=False)
    assert not broken.is_watertight
    repaired = close_decimated(broken)
    assert repaired.is_watertight and repaired.is_winding_consistent
    assert repaired.volume == pytest.approx(2.0, abs=1e-2)  # pinch copies moved by 1 um
    reloaded = trimesh.Trimesh(repaired.vertices, repaired.faces)  # merges coincident vertices
    assert reloaded.is_watertight


def test_ids_selects_labels():
    array = np.zeros(SHAPE, np.uint16)
    array[5:15, 5:15, 5:15] = CSF
    array[20:30, 20:30, 20:30] = CONUS
    meshes = mesh_labels(_labels(array), ids=[CONUS])
    assert list(meshes) == [CONUS]
    centre = AFFINE @ [24.5, 24.5, 24.5, 1]
    np.testing.assert_allclose(meshes[CONUS].center_mass, centre[:3], atol=0.05)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: mesh_labels(_labels(np.zeros(SHAPE))), "empty"),
        (lambda: mesh_labels(_labels(np.full(SHAPE, 7))), "not in the annotation protocol"),
        (lambda: mesh_labels(_labels(_box()[0] * CORD), ids=[CSF]), "do not occur"),
        (lambda: mesh_labels(_labels(_box()[0] * CORD), reduction=1.0), "reduction"),
        (lambda: mesh_labels(_labels(_box()[0] * CORD), smoothing=-1), "smoothing"),
        (lambda: mesh_labels(_labels(_box()[0] * CORD), thin_upsample=-1), "thin_upsample"),
    ],
)
def test_bad_input_is_a_clear_error(make, message):
    with pytest.raises(CordmapError, match=message):
        make()


# -- exports -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_meshes():
    array = np.zeros(SHAPE, np.uint16)
    array[5:15, 5:15, 5:15] = 121  # cord segment L1
    array[20:30, 20:30, 20:30] = 41  # vertebra L1
    return mesh_labels(_labels(array))


def test_glb_round_trip_names_colours_and_coordinates(tmp_path, two_meshes):
    path = tmp_path / "case.glb"
    assert export_meshes(two_meshes, SCHEMA, path) == [path]
    scene = trimesh.load(path)
    assert set(scene.graph.nodes_geometry) == {"cord segment L1", "vertebra L1"}
    for label_id, mesh in two_meshes.items():
        label = SCHEMA[label_id]
        transform, geometry = scene.graph[label.name]
        loaded = scene.geometry[geometry]
        assert tuple(loaded.visual.material.baseColorFactor[:3]) == label.colour
        assert scene.graph.transforms.parents[label.name] == GLB_ROOT
        np.testing.assert_allclose(transform, GLTF_FROM_RAS_MM, atol=1e-12)
        ras = trimesh.transform_points(loaded.vertices, np.linalg.inv(GLTF_FROM_RAS_MM) @ transform)
        np.testing.assert_allclose(np.sort(ras, axis=0), np.sort(mesh.vertices, axis=0), atol=1e-3)
        assert loaded.volume == pytest.approx(mesh.volume, rel=1e-4)


def test_glb_puts_superior_up_in_gltf(tmp_path, two_meshes):
    path = export_meshes(two_meshes, SCHEMA, tmp_path / "case.glb")[0]
    scene = trimesh.load(path)
    higher = scene.graph["vertebra L1"]  # the vertebra block lies more superior (k 20..30)
    lower = scene.graph["cord segment L1"]
    up = [
        trimesh.transform_points(scene.geometry[g].vertices, t)[:, 1].mean()
        for t, g in (higher, lower)
    ]
    assert up[0] > up[1]


@pytest.mark.parametrize("suffix", [".ply", ".stl", ".obj"])
def test_other_formats_hold_every_triangle(tmp_path, two_meshes, suffix):
    written = export_meshes(two_meshes, SCHEMA, tmp_path / f"case{suffix}")
    loaded = trimesh.load(written[0], force="mesh")
    assert len(loaded.faces) == sum(len(m.faces) for m in two_meshes.values())
    total = sum(m.volume for m in two_meshes.values())
    assert loaded.volume == pytest.approx(total, rel=1e-4)
    if suffix == ".obj":
        assert written[1].suffix == ".mtl" and "cord_segment_L1" in written[1].read_text()
    if suffix == ".ply":
        colours = {tuple(c[:3]) for c in loaded.visual.vertex_colors}
        assert colours == {SCHEMA[121].colour, SCHEMA[41].colour}


def test_export_errors_leave_nothing(tmp_path, two_meshes):
    with pytest.raises(CordmapError, match="extension"):
        export_meshes(two_meshes, SCHEMA, tmp_path / "case.fbx")
    with pytest.raises(CordmapError, match="no meshes"):
        export_meshes({}, SCHEMA, tmp_path / "case.glb")
    with pytest.raises(CordmapError, match="not in the annotation protocol"):
        export_meshes({999: two_meshes[41]}, SCHEMA, tmp_path / "case.glb")
    assert list(tmp_path.iterdir()) == []


# -- real data -------------------------------------------------------------------------------


def _pam50_cord_segments(data_dir, slices):
    """PAM50 cord (id 1) with the T8..S5 spinal segments (ids 116..130), k in `slices`."""
    levels = read_nifti(data_dir / "pam50" / "PAM50_spinal_levels.nii.gz")
    cord = read_nifti(data_dir / "pam50" / "PAM50_cord.nii.gz")
    array = np.where(cord.array[:, :, slices] > 0, CORD, 0).astype(np.uint16)
    segment = levels.array[:, :, slices]
    lumbosacral = segment >= 16
    array[lumbosacral] = 100 + segment[lumbosacral]
    affine = levels.affine.copy()
    affine[:3, 3] = levels.world([0, 0, slices.start])
    return _labels(array, affine)


def test_pam50_lumbosacral_cord_meshes_match_voxel_volumes(data_dir):
    labels = _pam50_cord_segments(data_dir, slice(40, 260))
    meshes = mesh_labels(labels)
    stats = mesh_stats(meshes)
    counts = labels.counts()
    assert sorted(stats) == sorted(counts) and len(counts) > 5
    for label_id, entry in stats.items():
        assert entry.watertight, label_id
        expected = counts[label_id] * labels.voxel_volume
        if counts[label_id] >= 100:
            tolerance = VOLUME_TOLERANCE if counts[label_id] >= 1000 else SMALL_VOLUME_TOLERANCE
            assert entry.volume_mm3 == pytest.approx(expected, rel=tolerance), label_id
    # segments stack along S inside the cord's world extent, in order
    centres = [meshes[i].center_mass[2] for i in sorted(stats) if i >= 116]
    assert centres == sorted(centres, reverse=True)  # caudal segments lie lower


# -- files and the command line ---------------------------------------------------------------


def _case_inputs(folder):
    """A small image and label pair on disk: a cord block and a thin diagonal root."""
    from cordmap.io.nifti import write_nifti
    from cordmap.volume import Volume

    array = _diagonal_line()
    array[8:20, 8:20, 5:25] = CORD
    image = write_nifti(
        Volume(np.random.default_rng(0).random(SHAPE, dtype=np.float32), AFFINE),
        folder / "t2.nii.gz",
    )
    labels = write_nifti(_labels(array), folder / "labels.nii.gz")
    return image, labels, array


def _run(*args):
    from typer.testing import CliRunner

    from cordmap.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_mesh_workers_give_the_same_files(tmp_path, monkeypatch):
    from cordmap.mesh import parallel

    _, labels, _ = _case_inputs(tmp_path)
    monkeypatch.setitem(parallel.MIN_WORK, "fork", 0)
    monkeypatch.setitem(parallel.MIN_WORK, "forkserver", 0)
    written = {}
    for workers in (1, 2):
        out = tmp_path / f"mesh-{workers}"
        result = _run("mesh", labels, "--out", out, "--format", "ply", "--workers", workers)
        assert result.exit_code == 0, result.output
        written[workers] = {p.name: p.read_bytes() for p in out.iterdir()}
    assert written[1] == written[2] and len(written[1]) == 3  # ply, json, npz
    result = _run("mesh", labels, "--out", tmp_path / "none", "--workers", 0)
    assert result.exit_code != 0 and "workers must be" in result.output
    assert not (tmp_path / "none").exists()


def test_cli_mesh_case_writes_exports_and_records_the_stage(tmp_path):
    from cordmap.case import Case
    from cordmap.pipeline.imports import import_case

    image, labels, array = _case_inputs(tmp_path)
    case_dir = tmp_path / "case"
    import_case(image, case_dir, labels_source=labels)
    result = _run("mesh", case_dir, "--format", "glb,stl", "--reduction", "0.5", "--smoothing", "5")
    assert result.exit_code == 0, result.output
    assert "2 structures meshed" in result.output
    folder = case_dir / "mesh"
    assert sorted(p.name for p in folder.iterdir()) == [
        "sub-01_mesh.glb",
        "sub-01_mesh.json",
        "sub-01_mesh.npz",
        "sub-01_mesh.stl",
    ]
    stage = Case.open(case_dir).manifest["stages"]["mesh"]
    import json

    assert stage["parameters"] == {
        "formats": ["glb", "stl"],
        "smoothing": 5,
        "reduction": 0.5,
        "thin_upsample": 1,
    }
    assert [e["path"] for e in stage["outputs"]] == [
        "mesh/sub-01_mesh.glb",
        "mesh/sub-01_mesh.stl",
        "mesh/sub-01_mesh.json",
        "mesh/sub-01_mesh.npz",
    ]
    summary = json.loads((folder / "sub-01_mesh.json").read_text())
    assert [s["name"] for s in summary["structures"]] == [SCHEMA[CORD].name, SCHEMA[ROOT].name]
    cord = next(s for s in summary["structures"] if s["id"] == CORD)
    assert cord["voxel_volume_mm3"] == pytest.approx((array == CORD).sum() * VOXEL_MM3, rel=1e-3)
    assert cord["watertight"] and cord["volume_mm3"] == pytest.approx(
        cord["voxel_volume_mm3"], rel=VOLUME_TOLERANCE
    )


def test_cli_mesh_case_rerun_is_up_to_date_until_options_change(tmp_path):
    from cordmap.pipeline.imports import import_case

    image, labels, _ = _case_inputs(tmp_path)
    case_dir = tmp_path / "case"
    import_case(image, case_dir, labels_source=labels)
    assert _run("mesh", case_dir).exit_code == 0
    glb = case_dir / "mesh" / "sub-01_mesh.glb"
    written = glb.stat().st_mtime_ns
    again = _run("mesh", case_dir)
    assert again.exit_code == 0 and "up to date" in again.output
    assert "2 structures meshed" in again.output and glb.stat().st_mtime_ns == written
    changed = _run("mesh", case_dir, "--smoothing", "3")
    assert changed.exit_code == 0 and "up to date" not in changed.output
    assert glb.stat().st_mtime_ns != written


def test_cli_mesh_label_file_writes_beside_it(tmp_path):
    _, labels, _ = _case_inputs(tmp_path)
    result = _run("mesh", labels, "--format", "ply,obj")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "labels_mesh"
    assert sorted(p.name for p in folder.iterdir()) == [
        "labels_mesh.json",
        "labels_mesh.mtl",
        "labels_mesh.npz",
        "labels_mesh.obj",
        "labels_mesh.ply",
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "fbx"], "unknown mesh format"),
        (["--reduction", "1.5"], "reduction"),
    ],
)
def test_cli_mesh_bad_options_write_nothing(tmp_path, args, message):
    _, labels, _ = _case_inputs(tmp_path)
    result = _run("mesh", labels, *args)
    assert result.exit_code == 1 and message in result.output
    assert not (tmp_path / "labels_mesh").exists()


def test_cli_mesh_case_without_labels_is_a_clear_error(tmp_path):
    from cordmap.pipeline.imports import import_case

    image, _, _ = _case_inputs(tmp_path)
    import_case(image, tmp_path / "case")
    result = _run("mesh", tmp_path / "case")
    assert result.exit_code == 1 and "has no labels" in result.output
    assert not (tmp_path / "case" / "mesh").exists()


def test_is_closed_agrees_with_trimesh_and_checks_orientation():
    from cordmap.mesh.refine import is_closed

    box = trimesh.creation.box()
    assert is_closed(box.faces) and box.is_watertight
    assert not is_closed(box.faces[1:])  # a hole
    flipped = box.faces.copy()
    flipped[0] = flipped[0, ::-1]  # still watertight for trimesh, but one face inside out
    assert trimesh.Trimesh(box.vertices, flipped).is_watertight and not is_closed(flipped)


def test_phantom_every_structure_closed_volumes_agree_roots_connected():
    from cordmap.anatomy.phantom import make_phantom

    labels = make_phantom(0, n_slices=48).labels  # 0.8 x 0.8 x 3 mm, 48 axial slices
    meshes = mesh_labels(labels)
    stats = mesh_stats(meshes)
    counts = labels.counts()
    assert sorted(stats) == sorted(counts)
    roots = [i for i in counts if SCHEMA[i].structure in ("dorsal_root", "ventral_root")]
    assert len(roots) > 20
    for label_id, entry in stats.items():
        assert entry.watertight, label_id
        expected = counts[label_id] * labels.voxel_volume
        structure = SCHEMA[label_id].structure
        if structure in ("vertebra", "disc", "segment") and counts[label_id] >= 1000:
            assert entry.volume_mm3 == pytest.approx(expected, rel=0.03), label_id
        if structure == "csf":  # a sheet one or two voxels thick: cut corners weigh more
            assert entry.volume_mm3 == pytest.approx(expected, rel=0.08)
    for label_id in roots:
        pieces = ndimage.label(labels.array == label_id, structure=np.ones((3, 3, 3)))[1]
        assert len(meshes[label_id].split(only_watertight=False)) == pieces, label_id


def test_close_decimated_keeps_the_odd_one_of_three_coincident_triangles():
    box = trimesh.creation.box()
    face = box.faces[0]
    # the decimator left face 0 three times: twice as it was, once inside out
    faces = np.vstack([box.faces, [face], [face[::-1]]])
    broken = trimesh.Trimesh(box.vertices, faces, process=False)
    assert not broken.is_watertight
    repaired = close_decimated(broken)
    assert repaired.is_watertight and repaired.is_winding_consistent
    assert len(repaired.faces) == len(box.faces)
    assert repaired.volume == pytest.approx(box.volume)


def test_smooth_is_trimesh_taubin_filter():
    from trimesh.smoothing import filter_taubin

    from cordmap.mesh.refine import TAUBIN_LAMBDA, TAUBIN_MU, smooth

    sphere = trimesh.creation.icosphere(subdivisions=3)
    noisy = sphere.vertices + np.random.default_rng(0).normal(0, 0.02, sphere.vertices.shape)
    expected = filter_taubin(
        trimesh.Trimesh(noisy, sphere.faces, process=False),
        lamb=TAUBIN_LAMBDA,
        nu=-TAUBIN_MU,
        iterations=7,
    )
    ours = smooth(trimesh.Trimesh(noisy, sphere.faces, process=False), 7)
    np.testing.assert_allclose(ours.vertices, expected.vertices, atol=1e-12)
    assert not np.allclose(ours.vertices, noisy)


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_meshing_over_worker_processes_gives_the_same_meshes(monkeypatch, method):
    from cordmap.mesh import parallel

    array = np.zeros(SHAPE, np.uint16)
    array[_sphere(10.0)[0]] = CSF
    array[_box()[0]] = CORD
    array[_diagonal_line() == ROOT] = ROOT
    labels = _labels(array)
    serial = mesh_labels(labels, workers=1)
    monkeypatch.setitem(parallel.MIN_WORK, method, 0)  # a pool even for small work
    monkeypatch.setattr(parallel, "start_method", lambda: method)
    pooled = mesh_labels(labels, workers=2)
    assert list(pooled) == list(serial) == [CORD, CSF, ROOT]
    for label_id, mesh in serial.items():
        np.testing.assert_array_equal(pooled[label_id].faces, mesh.faces)
        np.testing.assert_array_equal(pooled[label_id].vertices, mesh.vertices)
        assert pooled[label_id].is_watertight
    assert len(pooled[ROOT].split(only_watertight=False)) == 1  # bridged before the pool


def test_the_pool_does_labels_and_the_results_keep_the_order_of_the_work(monkeypatch):
    import os

    from cordmap.mesh import parallel

    monkeypatch.setitem(parallel.MIN_WORK, "fork", 0)
    monkeypatch.setattr(parallel, "start_method", lambda: "fork")
    work = {label_id: label_id % 7 for label_id in range(1, 31)}
    made = parallel.map_labels(lambda label_id: (label_id,), _pid_after_a_moment, work, workers=3)
    assert list(made) == list(work)
    assert len({pid for pid, _ in made.values()} - {os.getpid()}) >= 1
    assert all(label_id == echoed for label_id, (_, echoed) in made.items())


def test_one_label_holding_most_of_the_work_is_done_without_a_pool(monkeypatch):
    import os

    from cordmap.mesh import parallel

    monkeypatch.setitem(parallel.MIN_WORK, "fork", 0)
    monkeypatch.setattr(parallel, "start_method", lambda: "fork")
    work = {1: 80.0, **{label_id: 1.0 for label_id in range(2, 22)}}  # label 1: 80 %
    made = parallel.map_labels(lambda label_id: (label_id,), _pid_after_a_moment, work, workers=3)
    assert {pid for pid, _ in made.values()} == {os.getpid()}
    work[1] = 60.0  # 75 %: the others can save a quarter of the time
    made = parallel.map_labels(lambda label_id: (label_id,), _pid_after_a_moment, work, workers=3)
    assert {pid for pid, _ in made.values()} - {os.getpid()}


def _pid_after_a_moment(label_id):
    """run for map_labels: which process did the label."""
    import os
    import time

    time.sleep(0.01)
    return os.getpid(), label_id


def _fails_in_a_worker(label_id, parent, how):
    """run for map_labels: a pool process fails (`how`); this process is slow."""
    import os
    import time

    if os.getpid() == parent:
        time.sleep(0.05)
        return label_id
    if how == "raises":
        raise CordmapError(f"label {label_id} cannot be meshed")
    os._exit(3)  # dies without a word


@pytest.mark.parametrize(
    "how, message", [("raises", "cannot be meshed"), ("dies", "ended without its results")]
)
def test_a_failing_worker_process_is_a_clear_error(monkeypatch, how, message):
    import os

    from cordmap.mesh import parallel

    monkeypatch.setitem(parallel.MIN_WORK, "fork", 0)
    monkeypatch.setattr(parallel, "start_method", lambda: "fork")
    parent = os.getpid()
    with pytest.raises(CordmapError, match=message):
        parallel.map_labels(
            lambda label_id: (label_id, parent, how),
            _fails_in_a_worker,
            dict.fromkeys(range(1, 21), 1),
            workers=2,
        )


def _interrupted_here(label_id, parent):
    """run for map_labels: Ctrl-C in this process at its second label; a pool process is
    slow."""
    import os
    import time

    if os.getpid() != parent:
        time.sleep(0.1)
        return label_id
    _interrupted_here.calls = getattr(_interrupted_here, "calls", 0) + 1
    if _interrupted_here.calls == 2:
        raise KeyboardInterrupt
    return label_id


def test_ctrl_c_stops_the_pool_after_the_labels_it_holds(monkeypatch):
    import os
    import time

    from cordmap.mesh import parallel

    monkeypatch.setitem(parallel.MIN_WORK, "fork", 0)
    monkeypatch.setattr(parallel, "start_method", lambda: "fork")
    monkeypatch.setattr(_interrupted_here, "calls", 0, raising=False)
    parent = os.getpid()
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        parallel.map_labels(
            lambda label_id: (label_id, parent),
            _interrupted_here,
            dict.fromkeys(range(1, 41), 1),  # 4 s of work for the pool process alone
            workers=2,
        )
    assert time.perf_counter() - start < 2.0
    assert parallel._inherited is None


@pytest.mark.parametrize("workers", [0, -1, 1.5])
def test_workers_must_be_a_whole_number_of_processes(workers):
    array = np.zeros(SHAPE, np.uint16)
    array[_box()[0]] = CORD
    with pytest.raises(CordmapError, match="workers must be"):
        mesh_labels(_labels(array), workers=workers)


def test_default_workers_are_the_cores_this_process_may_use(monkeypatch):
    import os

    from cordmap.mesh import parallel

    monkeypatch.delattr(parallel.os, "process_cpu_count", raising=False)
    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)
    assert parallel.default_workers() == 3
    monkeypatch.setattr(parallel.os, "process_cpu_count", lambda: 7, raising=False)
    assert parallel.default_workers() == 7
    monkeypatch.undo()
    assert 1 <= parallel.default_workers() <= (os.cpu_count() or 1)


def test_fork_only_without_other_threads_or_torch(monkeypatch):
    import sys
    import threading
    import types

    from cordmap.mesh import parallel

    if "fork" not in parallel.multiprocessing.get_all_start_methods():
        pytest.skip("no fork here")
    safe = "forkserver"
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert parallel.start_method() == "fork"
    monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))
    assert parallel.start_method() == safe
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    assert parallel.start_method() == safe


def test_surface_voxels_of_a_box_are_all_but_its_core():
    from cordmap.mesh.thin import surface_voxels

    padded = np.zeros((7, 8, 9), np.uint16)
    padded[1:4, 1:5, 1:6] = CSF  # 3 x 4 x 5 voxels, a core of 1 x 2 x 3
    padded[4:6, 1:5, 1:6] = CORD  # a neighbour is outside the label too
    points = np.flatnonzero(padded.ravel() == CSF)
    assert surface_voxels(padded, points, CSF) == 60 - 6


def test_march_labels_gives_the_unrefined_surfaces_of_mesh_labels():
    from cordmap.mesh import march_labels

    array = _diagonal_line()
    array[_box()[0]] = CORD
    raw = march_labels(_labels(array))
    unrefined = mesh_labels(_labels(array), smoothing=0, reduction=0)
    assert list(raw) == list(unrefined) == [CORD, ROOT]
    for label_id, mesh in raw.items():
        np.testing.assert_array_equal(mesh.vertices, unrefined[label_id].vertices)
        np.testing.assert_array_equal(mesh.faces, unrefined[label_id].faces)
        assert mesh.is_watertight


def test_the_viewer_reads_the_mesh_stage_s_meshes_instead_of_meshing_again(tmp_path, monkeypatch):
    from cordmap.mesh import files, mesh_labels, read_meshes
    from cordmap.pipeline.imports import import_case
    from cordmap.pipeline.mesh import mesh_case
    from cordmap.pipeline.view import case_site

    image, labels, _ = _case_inputs(tmp_path)
    case_dir = tmp_path / "case"
    case = import_case(image, case_dir, labels_source=labels).case
    calls = []
    monkeypatch.setattr(
        files, "mesh_labels", lambda *a, **k: calls.append(1) or mesh_labels(*a, **k)
    )
    mesh_case(case_dir, smoothing=5)
    case_site(case_dir)
    assert len(calls) == 1  # the viewer read the mesh stage's meshes (the report: test_demo)
    stored = read_meshes(case_dir / "mesh/sub-01_mesh.npz")
    fresh = mesh_labels(case.labels(), smoothing=5, workers=1)
    assert sorted(stored) == sorted(fresh)
    for i, mesh in fresh.items():
        assert np.array_equal(stored[i].vertices, mesh.vertices)
        assert np.array_equal(stored[i].faces, mesh.faces)
