"""Failed file operations and over-long names end in one line and exit status 1, with no
traceback and nothing half-made."""

import numpy as np
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
    result = runner.invoke(app, ["import", str(image), str(tmp_path / "case"),
                                 "--subject", "sub-" + "a" * 300])
    assert result.exit_code == 1 and "at most 64" in result.output
    assert not (tmp_path / "case").exists()
