"""`validate` catches each kind of protocol error on deliberately broken label volumes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cordmap.anatomy.validate import validate
from cordmap.cli import app
from cordmap.io.nifti import read_labels, write_nifti
from cordmap.protocol.schema import LabelSchema
from cordmap.volume import LabelVolume

SHAPE = (24, 24, 60)
CENTRE = (12, 12)


@pytest.fixture(scope="module")
def schema() -> LabelSchema:
    return LabelSchema.load()


def ids(schema: LabelSchema) -> dict[str, int]:
    return {
        "cord": schema.find("cord").id,
        "csf": schema.find("csf").id,
        "conus": schema.find("conus").id,
        **{f"seg {lv}": schema.find("segment", lv).id for lv in ("L1", "L2", "L3", "L4")},
        **{f"vert {lv}": schema.find("vertebra", lv).id for lv in ("T12", "L1", "L2")},
        "disc T12-L1": schema.find("disc", "T12-L1").id,
        "disc L1-L2": schema.find("disc", "L1-L2").id,
        "root": schema.find("dorsal_root", "L2", "left").id,
    }


def correct_labels(schema: LabelSchema) -> np.ndarray:
    """A small, anatomically ordered spine: cord segments L1..L4 over a conus, CSF around
    them, a dorsal root in the CSF, vertebrae T12, L1, L2 with their discs in front."""
    n = ids(schema)
    i, j = np.meshgrid(np.arange(SHAPE[0]), np.arange(SHAPE[1]), indexing="ij")
    radius = np.hypot(i - CENTRE[0], j - CENTRE[1])
    array = np.zeros(SHAPE, np.uint16)
    array[radius <= 4.5, 5:58] = n["csf"]
    cord = radius <= 2.5
    for name, (k0, k1) in {
        "conus": (8, 14),
        "seg L4": (14, 22),
        "seg L3": (22, 32),
        "seg L2": (32, 42),
        "seg L1": (42, 52),
        "cord": (52, 58),
    }.items():
        array[cord, k0:k1] = n[name]
    array[CENTRE[0] - 4, CENTRE[1] + 1, 20:40] = n["root"]  # left (lower i), in the CSF
    body = (np.abs(i - CENTRE[0]) <= 4) & (j >= 18) & (j <= 22)  # anterior to the canal
    for name, (k0, k1) in {
        "vert L2": (6, 24),
        "disc L1-L2": (24, 28),
        "vert L1": (28, 44),
        "disc T12-L1": (44, 48),
        "vert T12": (48, 58),
    }.items():
        array[body, k0:k1] = n[name]
    return array


def labelled(array: np.ndarray, schema: LabelSchema) -> LabelVolume:
    return LabelVolume(array, np.diag([0.8, 0.8, 1.5, 1.0]), schema=schema)


def test_a_correct_volume_passes_with_a_summary(schema):
    array = correct_labels(schema)
    report = validate(labelled(array, schema))
    assert report.ok, report.as_text()
    assert report.findings == []
    n = ids(schema)
    summary = {s.id: s for s in report.labels}
    assert set(summary) == set(n.values())
    expected_voxels = int((array == n["seg L2"]).sum())
    assert summary[n["seg L2"]].voxels == expected_voxels
    assert summary[n["seg L2"]].volume_mm3 == pytest.approx(expected_voxels * 0.8 * 0.8 * 1.5)
    assert summary[n["seg L2"]].slices == (32, 41)
    assert "OK" in report.as_text() and "cord segment L2" in report.as_text()


def broken(schema, what: str) -> np.ndarray:
    n = ids(schema)
    array = correct_labels(schema)
    if what == "unknown-id":
        array[2:4, 2:4, 30] = 999
    elif what == "required-missing":
        array[array == n["csf"]] = 0
    elif what == "segment-outside-cord":
        array[3:5, 3:5, 36:38] = n["seg L2"]  # in the corner, far from the cord
    elif what == "cord-island":
        array[3:5, 3:5, 50] = n["cord"]
    elif what == "segment-order":
        l1, l3 = array == n["seg L1"], array == n["seg L3"]
        array[l1], array[l3] = n["seg L3"], n["seg L1"]
    elif what == "root-inside-cord":
        array[CENTRE[0], CENTRE[1], 33:35] = n["root"]  # surrounded by cord segment L2
    elif what == "vertebra-order":
        v1, v2 = array == n["vert L1"], array == n["vert L2"]
        array[v1], array[v2] = n["vert L2"], n["vert L1"]
        array[np.isin(array, [n["disc T12-L1"], n["disc L1-L2"]])] = 0  # discs would follow
    elif what == "root-side":
        root = array == n["root"]
        array[root] = n["csf"]
        array[np.roll(root, 8, axis=0)] = n["root"]  # to the patient's right
    elif what == "disc-position":
        d1, d2 = array == n["disc T12-L1"], array == n["disc L1-L2"]
        array[d1], array[d2] = n["disc L1-L2"], n["disc T12-L1"]
    return array


@pytest.mark.parametrize(
    "code, severity, names, slices",
    [
        ("unknown-id", "error", [999], (30,)),
        ("required-missing", "error", [], ()),
        ("segment-outside-cord", "error", ["seg L2"], (36, 37)),
        ("cord-island", "warning", ["cord"], (50,)),
        ("segment-order", "error", None, None),
        ("root-inside-cord", "error", ["root"], (33, 34)),
        ("root-side", "warning", ["root"], tuple(range(20, 40))),
        ("vertebra-order", "error", None, None),
        ("disc-position", "error", None, None),
    ],
)
def test_each_kind_of_error_is_caught(schema, code, severity, names, slices):
    array = broken(schema, code)
    before = array.copy()
    report = validate(labelled(array, schema))
    assert np.array_equal(array, before)  # the input is not modified
    assert report.codes() == {code}, report.as_text()
    assert report.ok == (severity == "warning")
    finding = report.findings[0]
    assert finding.severity == severity
    if names is not None:
        n = ids(schema)
        assert list(finding.label_ids) == [n.get(x, x) for x in names]
    if slices is not None:
        assert finding.slices == slices
    assert code in report.as_text()


def test_partial_labels_skip_only_the_required_structures(schema):
    """partial=True: missing CSF and vertebrae are not asked for; a root in the cord still is."""
    n = ids(schema)
    array = broken(schema, "root-inside-cord")
    array[
        np.isin(
            array,
            [
                n["csf"],
                n["vert T12"],
                n["vert L1"],
                n["vert L2"],
                n["disc T12-L1"],
                n["disc L1-L2"],
            ],
        )
    ] = 0
    assert validate(labelled(array, schema)).codes() == {"required-missing", "root-inside-cord"}
    report = validate(labelled(array, schema), partial=True)
    assert report.codes() == {"root-inside-cord"} and not report.ok
    assert (
        validate(labelled(broken(schema, "required-missing"), schema), partial=True).findings == []
    )


def test_negative_and_many_unknown_values_make_one_finding(schema):
    array = correct_labels(schema).astype(np.int32)
    array[0, 0, 3] = -3
    array[0, 1:13, 4] = np.arange(1000, 1012)
    report = validate(labelled(array, schema))
    assert [f.code for f in report.findings] == ["unknown-id"]
    finding = report.findings[0]
    assert finding.label_ids == (-3, *range(1000, 1012)) and finding.slices == (3, 4)
    assert "is this an image rather than labels?" in finding.message
    assert "skipped" not in finding.message  # most voxels are protocol labels: all checks ran


def test_an_image_passed_as_labels_gives_one_clear_error(schema):
    image = np.random.default_rng(5).integers(0, 3000, SHAPE).astype(np.uint16)
    report = validate(labelled(image, schema))
    assert [f.code for f in report.findings] == ["unknown-id"]
    assert "is this an image rather than labels?" in report.findings[0].message
    assert "the other checks were skipped" in report.findings[0].message
    present = set(np.unique(image)) - {0}
    assert {s.id for s in report.labels} == present
    assert sum(s.voxels for s in report.labels) == int((image > 0).sum())


def test_order_findings_name_both_structures(schema):
    n = ids(schema)
    segments = validate(labelled(broken(schema, "segment-order"), schema)).errors
    assert {i for f in segments for i in f.label_ids} <= {n["seg L1"], n["seg L2"], n["seg L3"]}
    assert any(set(f.label_ids) == {n["seg L1"], n["seg L2"]} for f in segments)
    discs = validate(labelled(broken(schema, "disc-position"), schema)).errors
    assert {f.label_ids[0] for f in discs} == {n["disc T12-L1"], n["disc L1-L2"]}
    assert "is not between vertebra T12" in " ".join(f.message for f in discs)


def test_real_manual_cord_of_sct_t2(data_dir, schema):
    labels = read_labels(data_dir / "sct-t2" / "t2_seg-manual.nii.gz", schema)
    report = validate(labels)
    # a real cord is one piece: only the structures it lacks are reported
    assert [f.code for f in report.findings] == ["required-missing", "required-missing"]
    assert "CSF" in report.findings[0].message and "vertebrae" in report.findings[1].message
    assert report.labels[0].voxels == int((labels.array == 1).sum())

    # break it: a root in the middle of the cord on one axial slice
    array = labels.array.astype(np.uint16)
    k = labels.shape[2] // 2
    i, j = np.argwhere(array[:, :, k] == 1).mean(axis=0).round().astype(int)
    array[i, j, k] = schema.find("ventral_root", "L1", "right").id
    found = validate(LabelVolume(array, labels.affine, schema=schema))
    inside = [f for f in found.findings if f.code == "root-inside-cord"]
    assert len(inside) == 1 and inside[0].slices == (k,)

    # segments painted on the real cord: caudal order passes, a reversed order fails
    def painted(order):
        array = labels.array.astype(np.uint16)
        ks = np.flatnonzero((array == 1).any(axis=(0, 1)))
        for level, part in zip(order, np.array_split(ks, 3)):  # inferior slices first
            block = array[:, :, part[0] : part[-1] + 1]
            block[block == 1] = schema.find("segment", level).id
        return validate(LabelVolume(array, labels.affine, schema=schema))

    caudal = painted(("L3", "L2", "L1"))
    assert {s.name for s in caudal.labels} == {
        "cord segment L1",
        "cord segment L2",
        "cord segment L3",
    }
    assert not caudal.codes() & {"segment-order", "segment-outside-cord", "cord-island"}
    reversed_order = painted(("L1", "L2", "L3"))
    assert [f.code for f in reversed_order.errors if f.code == "segment-order"] == [
        "segment-order"
    ] * 2


def test_pam50_spinal_segments_are_in_order(data_dir, schema):
    """The PAM50 cord labelled by spinal segment (T8..S5 mapped to the protocol) passes the
    cord checks; swapping two segments is caught."""
    levels = read_labels(data_dir / "pam50" / "PAM50_spinal_levels.nii.gz", schema)
    crop = levels.array[:, :, :480]  # S5 .. above T8
    array = np.where(crop >= 16, crop.astype(np.uint16) + 100, np.where(crop > 0, 1, 0))
    array = array.astype(np.uint16)
    report = validate(LabelVolume(array, levels.affine, schema=schema))
    cord_codes = {"segment-outside-cord", "cord-island", "segment-order"}
    assert not report.codes() & cord_codes, report.as_text()
    assert [s.id for s in report.labels] == [1, *range(116, 131)]

    l3, l5 = array == 123, array == 125
    array[l3], array[l5] = 125, 123
    errors = validate(LabelVolume(array, levels.affine, schema=schema)).errors
    order = [f for f in errors if f.code == "segment-order"]
    assert order and all(set(f.label_ids) & {123, 125} for f in order)


def test_report_to_dict_is_json(schema):
    report = validate(labelled(broken(schema, "unknown-id"), schema))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is False and data["errors"] == 1
    assert data["findings"][0] == {
        "severity": "error",
        "code": "unknown-id",
        "message": report.findings[0].message,
        "label_ids": [999],
        "slices": [30],
    }
    assert {row["id"] for row in data["labels"]} == {999, *ids(schema).values()}


def test_cli_validate_exit_codes_and_json(schema, tmp_path):
    good = write_nifti(labelled(correct_labels(schema), schema), tmp_path / "good.nii.gz")
    bad = write_nifti(labelled(broken(schema, "root-inside-cord"), schema), tmp_path / "bad.nii.gz")
    runner = CliRunner()
    result = runner.invoke(app, ["validate", str(good)])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output

    out = tmp_path / "report" / "bad.json"
    result = runner.invoke(app, ["validate", str(bad), "--json", str(out)])
    assert result.exit_code == 1
    assert "root-inside-cord" in result.output
    assert json.loads(out.read_text())["findings"][0]["code"] == "root-inside-cord"

    result = runner.invoke(app, ["validate", str(tmp_path / "missing.nii.gz")])
    assert result.exit_code == 1 and "does not exist" in result.output


def test_disc_order_is_not_judged_on_structures_cut_by_the_field_of_view(schema):
    """A sliver of T12 at the image's top edge, level with the T12/L1 disc beside it: the
    centres of cut structures say nothing, so no disc-position error; the same labels one
    slice away from the edge are an error."""
    n = ids(schema)
    array = correct_labels(schema)[:, :, :47]
    body = np.isin(array[:, :, 44], [n["disc T12-L1"], n["vert L1"]])
    array[:, :, 44][body] = n["vert L1"]
    array[:, :, 45:47][body] = n["disc T12-L1"]
    half = body & (np.arange(SHAPE[0])[:, None] >= CENTRE[0])
    array[:, :, 45:47][half] = n["vert T12"]  # T12's centre level with the disc's

    def disc_errors(a):
        return [f for f in validate(labelled(a, schema)).errors if f.code == "disc-position"]

    assert disc_errors(array) == []
    away = np.concatenate([array, np.zeros(SHAPE[:2] + (1,), array.dtype)], axis=2)
    assert [f.label_ids for f in disc_errors(away)] == [
        (n["disc T12-L1"], n["vert T12"], n["vert L1"])
    ]
