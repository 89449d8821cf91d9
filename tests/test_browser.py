"""The viewer in a real browser: headless Debian Chromium, driven by Playwright.

Serves a small synthetic case with `cordmap.viewer.serve_case` (and the built-in phantom),
loads the Neuroglancer client, waits until it has drawn everything, keeps screenshots in
test-artifacts/, and checks what a person would: the 3D panel shows the meshes in the
schema's colours, the segment list shows the schema's names, and voxels sit where their
affine says. The whole file takes about 15-45 s, depending on the machine's load.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from test_viewer import ENLARGEMENT_IDS, SCHEMA, make_case, synthetic_anatomy

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]
#: The 3D panel is the rendered panel that holds the "Sections" checkbox.
PERSPECTIVE_PANEL = ".neuroglancer-rendered-data-panel:has(.perspective-panel-show-slice-views)"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(), reason="Debian chromium is absent (scripts/setup.sh installs it)"
)


@pytest.fixture(scope="module")
def anatomy():
    return synthetic_anatomy()


@pytest.fixture(scope="module")
def case_dir(anatomy, tmp_path_factory):
    return make_case(*anatomy, tmp_path_factory.mktemp("browser"))


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_viewer(browser, url: str, size=(1000, 750)):
    """A page showing the viewer at `url`, once it has drawn everything; `page.errors`
    collects uncaught script errors. (SwiftShader draws on the CPU: keep pages small.)"""
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.goto(url)
    page.wait_for_function(
        "window.viewer !== undefined && window.viewer.isReady()", timeout=45_000, polling=200
    )
    return page


@pytest.fixture(scope="module")
def page(browser, case_dir):
    """The viewer page of the synthetic case served by `cordmap.viewer.serve_case`."""
    from cordmap.pipeline.view import serve_case

    server = serve_case(case_dir)
    server.start()
    try:
        page = open_viewer(browser, server.url)
        page.server = server
        yield page
        page.close()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def panel_pixels(page) -> np.ndarray:
    """RGB pixels of the 3D panel (screenshots kept in test-artifacts/)."""
    from PIL import Image

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "viewer.png")
    png = page.locator(PERSPECTIVE_PANEL).screenshot(path=ARTIFACTS / "viewer-3d.png")
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(float)


def test_page_loads_without_script_errors_or_missing_files(page):
    assert page.errors == []
    assert list(page.server.not_found) == []  # every chunk, manifest and fragment was there
    assert page.evaluate("viewer.layerManager.managedLayers.length") == 3


def test_3d_panel_shows_the_meshes_in_schema_colours(panel_pixels, anatomy):
    drawn = panel_pixels.sum(axis=2) > 60  # the 3D panel's background is black
    assert drawn.mean() > 0.02, "the 3D panel is blank"
    # Meshes are shaded, so compare chromaticity (colour direction), not exact values.
    lit = panel_pixels[drawn]
    direction = lit / np.linalg.norm(lit, axis=1, keepdims=True)
    for label_id in ENLARGEMENT_IDS:
        colour = np.asarray(SCHEMA[label_id].colour, dtype=float)
        near = direction @ (colour / np.linalg.norm(colour)) > 0.998
        assert near.sum() > 50, f"{SCHEMA[label_id].name} ({SCHEMA[label_id].hex}) is not drawn"
    absent = np.asarray(SCHEMA.find("conus").colour, dtype=float)  # not in this case
    assert (direction @ (absent / np.linalg.norm(absent)) > 0.998).sum() == 0


def test_segment_list_shows_the_schema_names(page, anatomy):
    _, labels = anatomy
    entries = page.locator(".neuroglancer-segment-list-entry-name").all_inner_texts()
    names = {entry.split(" #")[0].strip() for entry in entries}  # "name #tag"
    for label_id in labels.ids():
        assert SCHEMA[label_id].name in names


@pytest.mark.parametrize("offset", [(0, 0), (0, 10), (-6, 4), (7, -3), (12, 12)])
def test_voxels_sit_where_the_affine_says(page, anatomy, offset):
    """Ask the viewer for the label and image values at a voxel's world position."""
    image, labels = anatomy
    position = np.asarray(page.evaluate("Array.from(viewer.navigationState.position.value)"))
    scales = np.array(
        [page.evaluate(f"viewer.coordinateSpace.value.scales[{d}]") * 1e3 for d in range(3)]
    )
    centre = np.rint(image.voxel(position * scales)).astype(int)  # on the drawn axial slice
    ijk = tuple(centre + np.array([*offset, 0]))
    values = page.evaluate(
        """(pos) => ['cord and roots', 'MRI'].map(name => String(viewer.layerManager
            .getLayerByName(name).layer.getValueAt(Float32Array.from(pos), {})))""",
        list(image.world(ijk) / scales),
    )
    assert values[0].split(" ")[0] == str(labels.array[ijk])
    assert float(values[1]) == image.array[ijk]


def test_static_site_works_from_a_plain_web_server(browser, anatomy, case_dir, tmp_path):
    """`cordmap view --static`: the folder alone, hosted by Python's stock file server."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from cordmap.pipeline.view import export_case

    site = export_case(case_dir, tmp_path / "site")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = open_viewer(browser, f"http://127.0.0.1:{server.server_address[1]}/", (640, 480))
        assert page.errors == []
        assert "/v/cordmap/#!" in page.url
        layers = page.evaluate("viewer.layerManager.managedLayers.map(l => l.name)")
        assert layers == ["MRI", "cord and roots", "vertebrae"]
        visible = page.evaluate("""['cord and roots', 'vertebrae'].map(name => viewer
            .layerManager.getLayerByName(name).layer.displayState.segmentationGroupState
            .value.visibleSegments.size)""")
        assert sum(visible) == len(anatomy[1].ids())
        page.close()
    finally:
        server.shutdown()
        server.server_close()


def test_phantom_first_view_shows_the_enlargement_through_the_vertebrae(browser, tmp_path):
    """The built-in phantom (48 axial slices around the enlargement), as a surgeon sees it."""
    from PIL import Image

    from cordmap.anatomy.phantom import make_phantom
    from cordmap.mesh import mesh_labels
    from cordmap.viewer import Site, ViewerServer, viewer_state, write_precomputed

    phantom = make_phantom(0, n_slices=48, pixel_mm=1.25, fov_mm=(100.0, 100.0))
    image, labels = phantom.image, phantom.labels
    data = write_precomputed(image, labels, mesh_labels(labels, thin_upsample=1), tmp_path / "data")
    server = ViewerServer(Site(data, viewer_state(image, labels)))
    server.start()
    try:
        page = open_viewer(browser, server.url)
        assert page.errors == [] and list(server.not_found) == []
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "viewer-phantom.png")
        png = page.locator(PERSPECTIVE_PANEL).screenshot(path=ARTIFACTS / "viewer-phantom-3d.png")
        entries = page.locator(".neuroglancer-segment-list-entry-name").all_inner_texts()
        page.close()
    finally:
        server.stop()
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(float)
    drawn = pixels[pixels.sum(axis=2) > 60]
    assert len(drawn) > 0.2 * pixels.shape[0] * pixels.shape[1], "the 3D panel is nearly blank"
    direction = drawn / np.linalg.norm(drawn, axis=1, keepdims=True)

    def pixels_like(label_id: int) -> int:
        colour = np.asarray(SCHEMA[label_id].colour, dtype=float)
        return int((direction @ (colour / np.linalg.norm(colour)) > 0.998).sum())

    assert pixels_like(SCHEMA.find("vertebra", "L1").id) > 0.1 * len(drawn)  # translucent bone
    assert pixels_like(SCHEMA.find("dorsal_root", "L1", "left").id) > 50
    red, green, blue = drawn.T  # the green enlargement segments, seen through the bone
    assert ((green > 1.2 * red) & (green > 1.2 * blue)).sum() > 500
    names = {entry.split(" #")[0].strip() for entry in entries}
    assert {SCHEMA[i].name for i in ENLARGEMENT_IDS} <= names
