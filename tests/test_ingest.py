import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cordmap.case import Case, sha256
from cordmap.cli import app
from cordmap.errors import CordmapError
from cordmap.io.nifti import write_nifti
from cordmap.pipeline.imports import import_case
from cordmap.protocol.schema import LabelSchema
from cordmap.volume import LabelVolume, Volume


@pytest.fixture
def sources(tmp_path):
    affine = np.diag([0.8, 0.8, 3.0, 1.0])
    image = Volume(np.arange(10 * 12 * 5, dtype=np.uint16).reshape(10, 12, 5), affine)
    labels = np.zeros((10, 12, 5), np.uint16)
    labels[4:6, 5:7, :] = 121  # cord segment L1
    labels[3:7, 4:8, 0] = 2  # CSF
    src = tmp_path / "src"
    write_nifti(image, src / "t2.nii.gz")
    write_nifti(LabelVolume(labels, affine, schema=LabelSchema.load()), src / "seg.nii.gz")
    return src


def test_import_writes_bids_case_with_manifest(tmp_path, sources):
    before = {p.name: sha256(p) for p in sources.iterdir()}
    result = import_case(
        sources / "t2.nii.gz",
        tmp_path / "case",
        labels_source=sources / "seg.nii.gz",
        subject="sub-07",
    )
    case = result.case
    assert not result.up_to_date
    assert case.image_path.name == "sub-07_T2w.nii.gz"
    assert case.labels_path("manual").name == "sub-07_T2w_desc-manual_dseg.nii.gz"
    manifest = json.loads((tmp_path / "case" / "case.json").read_text())
    stage = manifest["stages"]["import"]
    assert stage["inputs"][0] == {"path": "t2.nii.gz", "sha256": before["t2.nii.gz"]}
    assert str(sources) not in json.dumps(manifest)  # no folder names (often a patient's) kept
    assert {o["path"] for o in stage["outputs"]} >= {"sub-07_T2w.nii.gz", "protocol.json"}
    reopened = Case.open(tmp_path / "case")
    assert reopened.labels().counts() == {121: 2 * 2 * 4, 2: 4 * 4}  # CSF drawn over slice 0
    np.testing.assert_allclose(reopened.image().affine, np.diag([0.8, 0.8, 3.0, 1.0]))
    assert {p.name: sha256(p) for p in sources.iterdir()} == before  # inputs untouched


def test_reimport_is_up_to_date_and_keeps_other_stages(tmp_path, sources):
    out = tmp_path / "case"
    case = import_case(sources / "t2.nii.gz", out, labels_source=sources / "seg.nii.gz").case
    case.record("mesh", inputs=[case.labels_path("manual")], parameters={"reduction": 0.9})
    again = import_case(sources / "t2.nii.gz", out, labels_source=sources / "seg.nii.gz")
    assert again.up_to_date
    changed = import_case(sources / "t2.nii.gz", out)  # labels dropped: re-imported
    assert not changed.up_to_date
    assert "mesh" in Case.open(out).manifest["stages"]
    assert Case.open(out).label_sources() == []
    assert not Case.open(out).is_up_to_date(
        "mesh", inputs=[case.labels_path("manual")], parameters={"reduction": 0.9}
    )


def test_mismatched_labels_leave_nothing(tmp_path, sources):
    other = Volume(np.zeros((9, 12, 5), np.uint16), np.diag([0.8, 0.8, 3.0, 1.0]))
    write_nifti(other, sources / "wrong.nii.gz")
    with pytest.raises(CordmapError, match="do not match the image grid"):
        import_case(
            sources / "t2.nii.gz", tmp_path / "case", labels_source=sources / "wrong.nii.gz"
        )
    assert not (tmp_path / "case").exists()


def test_unknown_label_id_is_refused(tmp_path, sources):
    bad = np.zeros((10, 12, 5), np.uint16)
    bad[0, 0, 0] = 999
    write_nifti(Volume(bad, np.diag([0.8, 0.8, 3.0, 1.0])), sources / "bad.nii.gz")
    with pytest.raises(CordmapError, match=r"label ids \[999\]"):
        import_case(sources / "t2.nii.gz", tmp_path / "case", labels_source=sources / "bad.nii.gz")
    assert not (tmp_path / "case").exists()


def test_foreign_folder_is_not_overwritten(tmp_path, sources):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(CordmapError, match="not a cordmap case"):
        import_case(sources / "t2.nii.gz", tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_cli_reports_errors_in_one_line_with_nonzero_exit(tmp_path, sources):
    runner = CliRunner()
    truncated = sources / "cut.nii.gz"
    truncated.write_bytes((sources / "t2.nii.gz").read_bytes()[:200])
    result = runner.invoke(app, ["import", str(truncated), str(tmp_path / "case")])
    assert result.exit_code == 1
    assert "error:" in result.output and "cut.nii.gz" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "case").exists()
    ok = runner.invoke(
        app,
        [
            "import",
            str(sources / "t2.nii.gz"),
            str(tmp_path / "case"),
            "--labels",
            str(sources / "seg.nii.gz"),
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "cord segment L1" in ok.output
    info = runner.invoke(app, ["info", str(tmp_path / "case")])
    assert info.exit_code == 0 and "import" in info.output


def test_case_from_real_subject(tmp_path, data_dir):
    case = import_case(
        data_dir / "sct-t2" / "t2.nii.gz",
        tmp_path / "case",
        labels_source=data_dir / "sct-t2" / "t2_seg-manual.nii.gz",
    ).case
    summary = case.summary()
    assert summary["image"]["shape"] == [52, 60, 55]  # P-S-R on disk, R-A-S here
    cord = summary["labels"]["manual"]["spinal cord (unassigned segment)"]
    assert cord["volume_mm3"] == pytest.approx(cord["voxels"] * 1.0)
