"""The Python API: `help(cordmap)` shows it, `import cordmap` stays light, the README's
example runs and the API reference builds from the docstrings (without the extras:
tests/test_extras.py)."""

import contextlib
import io
import pydoc
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cordmap

ROOT = Path(__file__).resolve().parents[1]


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("```python\n", text.index("<!-- python-example")) + len("```python\n")
    return text[start : text.index("```", start)]


def test_help_shows_every_function_and_object_of_the_api():
    text = pydoc.render_doc(cordmap, renderer=pydoc.plaintext)
    for name in cordmap.__all__:
        assert name in text, name
    assert "Parameters" in text and "Returns" in text
    assert set(dir(cordmap)) >= set(cordmap.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        cordmap.nothing  # noqa: B018


def test_import_cordmap_loads_no_heavy_module():
    heavy = ["numpy", "scipy", "nibabel", "trimesh", "torch", "matplotlib"]
    code = f"import cordmap, sys; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_readme_example_runs_and_the_automatic_plan_is_near_the_exact_one():
    out = io.StringIO()
    namespace: dict = {}
    with contextlib.redirect_stdout(out), pytest.warns(cordmap.SegmentationWarning):
        exec(compile(_readme_example(), "README.md", "exec"), namespace)
    lines = out.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == ["automatic", "exact"]
    phantom, labels = namespace["phantom"], namespace["labels"]
    assert labels.shape == phantom.image.shape
    assert np.array_equal(labels.affine, phantom.image.affine)
    truth = phantom.labels.schema
    named = {truth[i].name for i in labels.ids()}
    assert {"vertebra L1", "disc T12-L1", "CSF"} <= named  # levels numbered
    plans = namespace["plan"], namespace["exact"]
    edges = [p.best.rostral_edge for p in plans]
    assert all(edge for edge in edges)


def test_load_reads_what_import_reads_and_refuses_a_missing_path(tmp_path):
    from cordmap.io.nifti import write_nifti

    phantom = cordmap.make_phantom(seed=0, pixel_mm=2.0)
    write_nifti(phantom.image, tmp_path / "image.nii.gz")
    write_nifti(phantom.labels, tmp_path / "labels.nii.gz")
    image = cordmap.load(tmp_path / "image.nii.gz")
    assert np.allclose(image.affine, phantom.image.affine)
    assert np.allclose(np.asarray(image.array), np.asarray(phantom.image.array), atol=1e-3)
    labels = cordmap.load_labels(tmp_path / "labels.nii.gz", image)
    assert np.array_equal(np.asarray(labels.array), np.asarray(phantom.labels.array))
    with pytest.raises(cordmap.CordmapError, match="does not exist"):
        cordmap.load(tmp_path / "missing")


def test_the_api_reference_builds_from_the_docstrings(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", ROOT / "docs/api", tmp_path],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    page = (tmp_path / "index.html").read_text()
    for name in cordmap.__all__:
        assert f'id="cordmap.{name}"' in page, name
    assert page.count("Parameters") >= 5
