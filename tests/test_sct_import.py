"""Spinal Cord Toolbox outputs imported as-is: the real subject of ../shared/data/sct-t2 (cord
and rootlets by spinal level) and PAM50 become cases of the shipped protocol that validate,
mesh and show in the viewer; bad SCT files leave no case behind."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from cordmap.anatomy.validate import validate
from cordmap.case import Case, sha256
from cordmap.cli import app
from cordmap.errors import CordmapError
from cordmap.ingest import read_sct_annotations
from cordmap.io.nifti import read_labels, read_nifti
from cordmap.pipeline.imports import import_case
from cordmap.protocol.levels import segment_name
from cordmap.protocol.schema import LabelSchema
from cordmap.volume import Volume

CONNECTED = np.ones((3, 3, 3), bool)
ROOTLETS = "t2_seg-deepseg_rootlets-manual.nii.gz"


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def sct_case(data_dir, tmp_path_factory):
    """sct-t2 imported with its manual cord mask and manually corrected rootlets."""
    folder = data_dir / "sct-t2"
    out = tmp_path_factory.mktemp("sct") / "case"
    before = {name: sha256(folder / name) for name in ("t2_seg-manual.nii.gz", ROOTLETS)}
    result = _run(
        "import",
        folder / "t2.nii.gz",
        out,
        "--labels",
        folder / "t2_seg-manual.nii.gz",
        "--rootlets",
        folder / ROOTLETS,
    )
    assert result.exit_code == 0, result.output
    assert {name: sha256(folder / name) for name in before} == before  # inputs untouched
    return folder, Case.open(out)


def _raw_world(path, values):
    """World RAS+ mm of the voxels of `path` holding one of `values`, read straight from the
    file with nibabel (its own orientation and affine, not cordmap's canonical grid)."""
    image = nib.load(path)
    ijk = np.argwhere(np.isin(np.asarray(image.dataobj), values))
    return nib.affines.apply_affine(image.affine, ijk)


def test_sct_t2_rootlets_become_dorsal_roots_by_level_and_side(sct_case):
    folder, case = sct_case
    labels = case.labels()
    schema = labels.schema
    cord = labels.array == schema.find("cord").id
    assert cord.sum() == (read_nifti(folder / "t2_seg-manual.nii.gz").array > 0).sum()
    rootlets = read_nifti(folder / ROOTLETS).array
    roots = {label.id: label for label in schema.of_class("dorsal_root") if label.level}
    for value in np.unique(rootlets[rootlets > 0]):
        imported = {int(i) for i in np.unique(labels.array[rootlets == value])}
        assert {roots[i].level for i in imported} == {segment_name(int(value))}
    present = {roots[i].name for i in labels.ids() if i in roots}
    assert {
        "dorsal root C5 left",
        "dorsal root C5 right",
        "dorsal root C6 left",
        "dorsal root C6 right",
    } <= present
    assert (np.isin(labels.array, list(roots)) == (rootlets > 0)).all()

    # each side's rootlets lie on that side of the cord on every axial plane they cross:
    # the cord's centre is taken from the raw file, the roots' positions from the case
    cord_world = _raw_world(folder / "t2_seg-manual.nii.gz", [1])
    for label_id in set(labels.ids()) & set(roots):
        xyz = labels.world(np.argwhere(labels.array == label_id))
        for z in np.unique(np.round(xyz[:, 2], 3)):
            on_plane = np.abs(cord_world[:, 2] - z) < 0.5
            centre_r = cord_world[on_plane, 0].mean()
            root_r = xyz[np.abs(xyz[:, 2] - z) < 0.5, 0]
            side = roots[label_id].side
            assert (root_r > centre_r).all() if side == "right" else (root_r < centre_r).all(), (
                roots[label_id].name,
                z,
            )


def test_sct_t2_case_validates_and_records_its_sources(sct_case):
    folder, case = sct_case
    labels = case.labels()
    assert validate(labels, partial=True).findings == []  # roots outside the cord, sides agree
    # the full protocol asks for what these SCT files do not hold, and nothing else
    report = validate(labels)
    assert [(f.code, f.message.split("'")[1]) for f in report.findings] == [
        ("required-missing", "CSF"),
        ("required-missing", "vertebrae"),
    ]
    path = case.labels_path("manual")
    result = _run("validate", path, "--partial")
    assert result.exit_code == 0 and "OK (0 errors, 0 warnings)" in result.output, result.output
    assert "dorsal root C6 right" in result.output
    result = _run("validate", path)
    assert result.exit_code == 1 and "FAILED (2 errors, 0 warnings)" in result.output
    stage = case.manifest["stages"]["import"]
    assert [e["path"] for e in stage["inputs"]] == ["t2.nii.gz", "t2_seg-manual.nii.gz", ROOTLETS]
    assert stage["inputs"][2]["sha256"] == sha256(folder / ROOTLETS)
    assert (
        stage["parameters"]["rootlets"] == ROOTLETS and "spinal_levels" not in stage["parameters"]
    )
    again = import_case(
        folder / "t2.nii.gz",
        case.root,
        labels_source=folder / "t2_seg-manual.nii.gz",
        rootlets=folder / ROOTLETS,
    )
    assert again.up_to_date


def test_sct_t2_cord_and_rootlets_mesh_as_connected_pieces(sct_case):
    from cordmap.mesh import mesh_labels, mesh_stats

    _, case = sct_case
    labels = case.labels()
    meshes = mesh_labels(labels)
    stats = mesh_stats(meshes)
    cord_id = labels.schema.find("cord").id
    assert stats[cord_id].watertight
    cord_mm3 = (labels.array == cord_id).sum() * labels.voxel_volume
    assert stats[cord_id].volume_mm3 == pytest.approx(cord_mm3, rel=0.02)
    roots = [i for i in labels.ids() if labels.schema[i].structure == "dorsal_root"]
    assert len(roots) == 5
    for label_id in roots:
        pieces = ndimage.label(labels.array == label_id, structure=CONNECTED)[1]
        assert len(meshes[label_id].split(only_watertight=False)) == pieces
        assert stats[label_id].watertight
        voxels = (labels.array == label_id).sum()
        assert stats[label_id].volume_mm3 > 0
        if voxels >= 10:  # a tube through a few voxels is thinner than their cubes
            assert stats[label_id].volume_mm3 > 0.5 * voxels * labels.voxel_volume


def test_sct_t2_mesh_command_and_static_viewer_name_the_roots(sct_case, tmp_path):
    _, case = sct_case
    result = _run("mesh", case.root, "--format", "glb")
    assert result.exit_code == 0, result.output
    assert (
        "6 structures meshed" in result.output
        and (case.root / "mesh" / "sub-01_mesh.glb").is_file()
    )
    summary = json.loads((case.root / "mesh" / "sub-01_mesh.json").read_text())
    assert {row["name"] for row in summary["structures"]} == {
        case.schema[i].name for i in case.labels().ids()
    }
    assert all(row["watertight"] for row in summary["structures"])

    site = tmp_path / "site"
    result = _run("view", case.root, "--static", site)
    assert result.exit_code == 0, result.output
    infos = [json.loads(p.read_text()) for p in site.rglob("segment_properties/info")]
    assert len(infos) == 1
    inline = infos[0]["inline"]
    names = dict(
        zip(inline["ids"], next(p for p in inline["properties"] if p["id"] == "label")["values"])
    )
    schema = case.schema
    assert names == {str(i): schema[i].name for i in case.labels().ids()}
    assert "dorsal root C6 right" in names.values()


def test_pam50_cord_levels_and_rootlets_import_and_validate(data_dir):
    folder = data_dir / "pam50"
    schema = LabelSchema.load()
    cord = read_labels(folder / "PAM50_cord.nii.gz", schema)
    labels = read_sct_annotations(
        cord,
        cord,
        schema,
        spinal_levels=folder / "PAM50_spinal_levels.nii.gz",
        rootlets=folder / "PAM50_rootlets.nii.gz",
    )
    report = validate(labels, partial=True)
    assert report.findings == [], report.as_text()
    levels = read_nifti(folder / "PAM50_spinal_levels.nii.gz").array
    assert all((labels.array[levels == n] == 100 + n).all() for n in range(1, 31))
    rootlets = read_nifti(folder / "PAM50_rootlets.nii.gz").array
    r_cord = labels.world(np.argwhere(levels > 0))[:, 0].mean()
    for n in np.unique(rootlets[rootlets > 0]):
        left = schema.find("dorsal_root", segment_name(int(n)), "left").id
        right = schema.find("dorsal_root", segment_name(int(n)), "right").id
        assert set(np.unique(labels.array[rootlets == n])) == {left, right}
        r_left, r_right = (
            labels.world(np.argwhere(labels.array == i))[:, 0].mean() for i in (left, right)
        )
        assert r_left < r_cord < r_right


# -- exact geometry and bad input -------------------------------------------------------------

SHAPE = (20, 16, 12)


def _write(volume: Volume, path):
    image = nib.Nifti1Image(volume.array, volume.affine)
    nib.save(image, path)
    return path


@pytest.fixture
def synthetic(tmp_path):
    """A cord along the third axis of a volume stored in LPS order (first axis = patient's
    left, as DICOM-derived files often are): rootlets of C6 at both sides, of C7 at one."""
    affine = np.diag([-1.0, -1.0, 2.0, 1.0])  # i runs to the patient's left, j posterior
    affine[:3, 3] = [10.0, 8.0, -5.0]
    cord = np.zeros(SHAPE, np.uint8)
    cord[8:12, 6:10, :] = 1
    rootlets = np.zeros(SHAPE, np.uint8)
    rootlets[2:5, 8, 6:9] = 6  # low i: the patient's right
    rootlets[15:18, 8, 6:9] = 6  # high i: the patient's left
    rootlets[15:18, 8, 1:3] = 7
    paths = {
        name: _write(Volume(array, affine), tmp_path / f"{name}.nii.gz")
        for name, array in (
            ("t2", np.ones(SHAPE, np.float32)),
            ("cord", cord),
            ("rootlets", rootlets),
        )
    }
    return paths, affine


def test_sides_follow_world_coordinates_in_any_stored_orientation(tmp_path, synthetic):
    paths, _ = synthetic
    case = import_case(
        paths["t2"], tmp_path / "case", labels_source=paths["cord"], rootlets=paths["rootlets"]
    ).case
    labels = case.labels()
    schema = labels.schema
    counts = {schema[i].name: n for i, n in labels.counts().items()}
    assert counts == {
        "spinal cord (unassigned segment)": 4 * 4 * 12,
        "dorsal root C6 left": 9,
        "dorsal root C6 right": 9,
        "dorsal root C7 left": 6,
    }
    cord_r = labels.world(np.argwhere(labels.array == 1))[:, 0].mean()
    right = labels.world(np.argwhere(labels.array == schema.find("dorsal_root", "C6", "right").id))
    assert (right[:, 0] > cord_r).all()


def test_spinal_levels_label_the_cord_by_segment(tmp_path, synthetic):
    paths, affine = synthetic
    levels = np.zeros(SHAPE, np.uint8)
    levels[8:12, 6:10, 6:] = 5
    levels[8:12, 6:10, :6] = 6
    _write(Volume(levels, affine), tmp_path / "levels.nii.gz")
    labels = import_case(
        paths["t2"],
        tmp_path / "case",
        spinal_levels=tmp_path / "levels.nii.gz",
        rootlets=paths["rootlets"],
    ).case.labels()
    schema = labels.schema
    assert {schema[i].name: n for i, n in labels.counts().items()} == {
        "cord segment C5": 96,
        "cord segment C6": 96,
        "dorsal root C6 left": 9,
        "dorsal root C6 right": 9,
        "dorsal root C7 left": 6,
    }
    c5 = labels.world(np.argwhere(labels.array == schema.find("segment", "C5").id))[:, 2]
    c6 = labels.world(np.argwhere(labels.array == schema.find("segment", "C6").id))[:, 2]
    assert c5.min() > c6.max()  # C5 above C6 in the world, as its file said
    assert validate(labels, partial=True).findings == []


def _bad(tmp_path, synthetic, what):
    """Import options that replace the good ones of `synthetic` with one kind of bad file."""
    paths, affine = synthetic
    rootlets = read_nifti(paths["rootlets"])  # canonical RAS+ array and affine
    canonical = rootlets.affine
    if what == "grid":
        return {
            "rootlets": _write(Volume(np.zeros((5, 5, 5), np.uint8), affine), tmp_path / "r.nii.gz")
        }
    if what == "value":
        bad = rootlets.array.copy()
        bad[bad == 7] = 31
        return {"rootlets": _write(Volume(bad, canonical), tmp_path / "r.nii.gz")}
    if what == "fraction":
        return {
            "rootlets": _write(
                Volume(rootlets.array * np.float32(0.5), canonical), tmp_path / "r.nii.gz"
            )
        }
    if what == "inside":
        bad = rootlets.array.copy()
        bad[9, 7, 3] = 6  # in the cord
        return {"rootlets": _write(Volume(bad, canonical), tmp_path / "r.nii.gz")}
    if what == "enclosed":
        cord = read_nifti(paths["cord"]).array.copy()
        cord[9, 7, 3] = 0  # a hole in the cord, holding a rootlet
        bad = rootlets.array.copy()
        bad[9, 7, 3] = 6
        return {
            "labels_source": _write(Volume(cord, canonical), tmp_path / "cord.nii.gz"),
            "rootlets": _write(Volume(bad, canonical), tmp_path / "r.nii.gz"),
        }
    if what == "no-cord":
        return {"labels_source": None}
    if what == "levels-on-csf":
        csf = np.zeros(SHAPE, np.uint16)
        csf[15:18, 8, 6:9] = 2
        levels = (csf > 0).astype(np.uint8) * 6
        return {
            "labels_source": _write(Volume(csf, canonical), tmp_path / "csf.nii.gz"),
            "spinal_levels": _write(Volume(levels, canonical), tmp_path / "l.nii.gz"),
            "rootlets": None,
        }
    raise AssertionError(what)


@pytest.mark.parametrize(
    "what, message",
    [
        ("grid", r"the rootlets r\.nii\.gz do not match the image grid.*resample"),
        ("value", r"rootlets .*r\.nii\.gz hold the values 31, outside SCT's convention"),
        ("fraction", r"r\.nii\.gz hold the values 3\.5, outside SCT's convention"),
        ("inside", r"rootlets r\.nii\.gz have 1 voxels inside the cord"),
        ("enclosed", r"rootlets r\.nii\.gz have 1 voxels inside the cord"),
        ("no-cord", r"rootlets rootlets\.nii\.gz need the cord .* `labels`"),
        ("levels-on-csf", r"spinal levels l\.nii\.gz cover 9 voxels of CSF"),
    ],
)
def test_bad_sct_files_leave_no_case(tmp_path, synthetic, what, message):
    paths, _ = synthetic
    options = {"labels_source": paths["cord"], "rootlets": paths["rootlets"]} | _bad(
        tmp_path, synthetic, what
    )
    with pytest.raises(CordmapError, match=message):
        import_case(paths["t2"], tmp_path / "case", **options)
    assert not (tmp_path / "case").exists()


def test_cli_bad_rootlets_one_line_error(tmp_path, synthetic):
    paths, _ = synthetic
    result = _run("import", paths["t2"], tmp_path / "case", "--rootlets", paths["rootlets"])
    assert result.exit_code == 1
    assert "need the cord" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "case").exists()
