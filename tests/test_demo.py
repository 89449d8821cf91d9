"""The built-in example end to end: phantom -> DICOM -> case -> validate -> mesh -> plan ->
viewer with the candidate paddles -> case report."""

import base64
import io
import json
import re

import numpy as np
import pytest
import trimesh
from PIL import Image
from typer.testing import CliRunner

from cordmap.anatomy.phantom import PhantomTruth
from cordmap.case import Case
from cordmap.cli import app
from cordmap.io.nifti import read_labels
from cordmap.planning.files import read_result

MARCHED = []  # labels marched (meshed) by the demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from cordmap.mesh import surfaces

    out = tmp_path_factory.mktemp("demo") / "run"
    marched = surfaces._MarchedLabels.__init__

    def counted(self, *args, **kwargs):
        MARCHED.append(1)
        marched(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(surfaces._MarchedLabels, "__init__", counted)
        result = CliRunner().invoke(app, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_the_demo_meshes_once_for_the_exports_the_viewer_and_the_report(demo):
    assert len(MARCHED) == 1


def test_demo_case_reproduces_the_phantom_through_dicom(demo):
    out, _ = demo
    case = Case.open(out / "case")
    truth_labels = read_labels(
        next((out / "phantom").glob("*_desc-truth_dseg.nii.gz")), case.schema
    )
    labels = case.labels()
    assert labels.same_grid(truth_labels)  # geometry survived the DICOM round trip
    np.testing.assert_array_equal(labels.array, truth_labels.array)
    assert case.manifest["stages"].keys() >= {"import", "mesh", "view", "plan", "report"}


def test_demo_plan_matches_phantom_truth(demo):
    out, output = demo
    truth = PhantomTruth.read(out / "phantom" / "truth.json")
    plan = read_result(out / "case" / "plan" / "plan.json")
    # lengths along the curved cord, measured from 3 mm slices, agree with the analytic anatomy
    assert plan.enlargement.length == pytest.approx(truth.enlargement["length_mm"], abs=2.0)
    best = plan.best.coverage
    assert 0 < best.volume_pct <= 100
    assert f"{best.volume_pct:.1f} %" in output


def test_demo_meshes_carry_the_protocol_names(demo):
    out, _ = demo
    scene = trimesh.load(next((out / "case" / "mesh").glob("*.glb")))
    names = set(scene.geometry)
    assert any("cord segment L1" in n for n in names)
    assert any("vertebra L1" in n for n in names)
    state = json.loads((out / "case" / "viewer" / "state.json").read_text())
    assert "layers" in state


def test_demo_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("x")
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "already holds other files" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_demo_ends_with_a_report_that_quotes_the_plan(demo):
    out, output = demo
    plan = json.loads((out / "case" / "plan" / "plan.json").read_text())
    report = out / "case" / "report" / "sub-phantom0_report.html"
    assert "case report" in output and report.name[:12] in output.replace("\n", "")
    page = report.read_text(encoding="utf-8")
    volumes = re.findall(r"<td class='volume'>([\d.]+)</td>", page)
    lengths = re.findall(r"<td class='length'>([\d.]+)</td>", page)
    assert [float(v) for v in volumes] == pytest.approx(
        [c["volume_pct"] for c in plan["candidates"]], abs=0.005
    )
    assert [float(v) for v in lengths] == pytest.approx(
        [c["length_pct"] for c in plan["candidates"]], abs=0.005
    )
    pngs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(pngs) == 5  # sagittal, axial, 3D, coverage, contacts
    for data in pngs:
        pixels = np.asarray(
            Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"), dtype=float
        )
        assert pixels.std() > 20
    assert re.findall(r"href='([^']*)'", page) == ["../../viewer-site/index.html"]


def test_demo_viewer_shows_the_candidate_paddles(demo):
    out, _ = demo
    plan = json.loads((out / "case" / "plan" / "plan.json").read_text())
    state = json.loads((out / "case" / "viewer" / "state.json").read_text())
    paddles = [layer for layer in state["layers"] if layer["type"] == "annotation"]
    assert [p["name"].split(":")[0] for p in paddles] == [
        f"paddle #{c['rank']}" for c in plan["candidates"]
    ]
    assert [p["visible"] for p in paddles] == [True] + [False] * (len(paddles) - 1)


def test_demo_site_shows_paddles_and_mri_in_a_real_browser(demo):
    """The exported site in headless Chromium: the paddle layers load beside the MRI and
    labels (Neuroglancer once dropped the image layer when annotation layers followed it)."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from test_browser import CHROMIUM, CHROMIUM_ARGS, open_viewer

    if not CHROMIUM.is_file():
        pytest.skip("Debian chromium is absent (scripts/setup.sh installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    out, _ = demo
    plan = json.loads((out / "case" / "plan" / "plan.json").read_text())

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(out / "viewer-site"))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = open_viewer(browser, f"http://127.0.0.1:{server.server_address[1]}/", (640, 480))
            layers = page.evaluate(
                "viewer.layerManager.managedLayers.map(l => [l.name, l.visible])"
            )
            counts = page.evaluate("""viewer.state.toJSON().layers
                .filter(l => l.type === 'annotation').map(l => l.annotations.length)""")
            errors = page.errors
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    assert errors == []
    names = [name for name, _ in layers]
    assert names[-3:] == ["MRI", "cord and roots", "vertebrae"]
    assert [visible for name, visible in layers if name.startswith("paddle #")] == [True] + [
        False
    ] * (len(plan["candidates"]) - 1)
    state = json.loads((out / "case" / "viewer" / "state.json").read_text())
    expected = [
        len(layer["annotations"]) for layer in state["layers"] if layer["type"] == "annotation"
    ]
    assert counts == expected and len(counts) == len(plan["candidates"]) and min(counts) > 4
