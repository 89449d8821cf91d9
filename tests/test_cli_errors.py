"""Failed file operations, over-long names, broken geometry, NaN voxels and devices end in
one line and exit status 1, with no traceback and nothing half-made."""

import numpy as np
import pytest
from typer.testing import CliRunner

from cordmap.cli import app
from cordmap.io.nifti import write_nifti
from cordmap.volume import Volume

runner = CliRunner()


def _image(tmp_path):
    volume = Volume(np.random.default_rng(0).normal(size=(8, 8, 6)).astype(np.float32), np.eye(4))
    return write_nifti(volume, tmp_path / "image.nii.gz")


def test_an_output_under_a_file_is_one_line(tmp_path):
    image = _image(tmp_path)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    result = runner.invoke(app, ["import", str(image), str(blocker / "case")])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "error:" in result.output
    assert "not-a-folder" in result.output


def test_an_over_long_subject_is_refused_before_anything_is_written(tmp_path):
    image = _image(tmp_path)
    result = runner.invoke(
        app, ["import", str(image), str(tmp_path / "case"), "--subject", "sub-" + "a" * 300]
    )
    assert result.exit_code == 1 and "at most 64" in result.output
    assert not (tmp_path / "case").exists()


def _raw_nifti(path, array, srow, gz=False):
    """A NIfTI file with the sform rows written as given (nibabel would refuse to make it)."""
    import gzip

    import nibabel as nib

    header = nib.Nifti1Image(array, np.eye(4)).header
    for axis, row in zip("xyz", srow):
        header[f"srow_{axis}"] = row
    header["sform_code"], header["qform_code"], header["vox_offset"] = 1, 0, 352
    data = header.binaryblock + b"\0" * 4 + array.tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize(
    "srow, message",
    [
        ([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]], "singular"),
        ([[2e12, 0, 0, 0], [0, 2e12, 0, 0], [0, 0, 2e12, 0]], "not plausible"),
        ([[1, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], "not perpendicular"),
    ],
)
@pytest.mark.parametrize("command", ["import", "validate", "plan", "mesh"])
def test_broken_geometry_is_one_line_naming_the_file(tmp_path, srow, message, command):
    labels = np.zeros((10, 10, 10), np.uint16)
    labels[4:6, 4:6, :] = 1
    path = _raw_nifti(tmp_path / "broken.nii.gz", labels, srow, gz=True)
    args = {
        "import": [str(path), str(tmp_path / "case")],
        "validate": [str(path)],
        "plan": [str(path), "--out", str(tmp_path / "plan.json")],
        "mesh": [str(path), "--out", str(tmp_path / "mesh")],
    }[command]
    result = runner.invoke(app, [command, *args])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "broken.nii.gz" in result.output and message in result.output
    assert not (tmp_path / "case").exists() and not (tmp_path / "plan.json").exists()


@pytest.mark.parametrize("values", [[np.nan], [np.inf, 1.0], "all"])
def test_nan_or_infinite_voxels_are_refused(tmp_path, values):
    array = np.ones((8, 8, 8), np.float32)
    if values == "all":
        array[:] = np.nan
    else:
        array.flat[: len(values)] = values
    path = _raw_nifti(tmp_path / "nan.nii.gz", array, np.eye(4)[:3], gz=True)
    result = runner.invoke(app, ["import", str(path), str(tmp_path / "case")])
    assert result.exit_code == 1 and "NaN or infinite voxels" in result.output
    assert not (tmp_path / "case").exists()


def test_a_device_or_pipe_is_not_an_image(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe")
    for source in ("/dev/null", tmp_path / "pipe"):
        result = runner.invoke(app, ["import", str(source), str(tmp_path / "case")])
        assert result.exit_code == 1 and "device or pipe" in result.output


def test_re_importing_another_subject_into_a_case_is_refused(tmp_path):
    image = _image(tmp_path)
    assert runner.invoke(app, ["import", str(image), str(tmp_path / "case")]).exit_code == 0
    result = runner.invoke(
        app, ["import", str(image), str(tmp_path / "case"), "--subject", "sub-02"]
    )
    assert result.exit_code == 1 and "holds subject sub-01" in result.output
    assert sorted(p.name for p in (tmp_path / "case").iterdir()) == [
        "case.json",
        "protocol.json",
        "sub-01_T2w.nii.gz",
    ]


def test_dicom_pixel_spacing_zero_is_one_line(tmp_path):
    import pydicom

    from cordmap.io.dicom import write_dicom_series

    volume = Volume(
        np.random.default_rng(1).integers(0, 900, (8, 8, 5)).astype(np.uint16),
        np.diag([0.8, 0.8, 3.0, 1.0]),
    )
    write_dicom_series(volume, tmp_path / "dicom", series_description="T2")
    for path in (tmp_path / "dicom").iterdir():
        dataset = pydicom.dcmread(path)
        dataset.PixelSpacing = [0, 0]
        dataset.save_as(path)
    for command in (
        ["import", str(tmp_path / "dicom"), str(tmp_path / "case")],
        ["series", str(tmp_path / "dicom")],
    ):
        result = runner.invoke(app, command)
        assert "Traceback" not in result.output
    result = runner.invoke(app, ["import", str(tmp_path / "dicom"), str(tmp_path / "case")])
    assert result.exit_code == 1 and not (tmp_path / "case").exists()


def test_the_library_names_parameters_and_the_cli_shows_their_options(tmp_path):
    from cordmap.cli.common import as_options
    from cordmap.errors import CordmapError
    from cordmap.planning.search import best_positions

    with pytest.raises(CordmapError, match="^`top` must be at least 1") as caught:
        best_positions(None, 0)
    assert as_options(str(caught.value)).startswith("--top must be at least 1")
    assert as_options("pass `paddles_file` or `keep_largest`, not `stage`") == (
        "pass --paddles or --keep-largest, not `stage`"
    )
    result = runner.invoke(app, ["phantom", str(tmp_path / "out"), "--pixel", "0"])
    assert result.exit_code == 1 and "pixel size (--pixel, mm) must be positive" in result.output
    assert not (tmp_path / "out").exists()
