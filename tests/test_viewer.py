"""Neuroglancer precomputed writer, first view, local server and static export."""

from __future__ import annotations

import http.client
import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from cordmap.errors import CordmapError
from cordmap.protocol.schema import LabelSchema
from cordmap.volume import LabelVolume, Volume

SCHEMA = LabelSchema.load()
#: Synthetic anatomy, superior (high k) to inferior: segments T11..S3 down the cord.
SEGMENT_IDS = list(range(119, 129))
ENLARGEMENT_IDS = list(range(121, 128))


def synthetic_anatomy(
    shape=(40, 44, 100), spacing=(0.8, 0.9, 1.5), origin=(-17.0, 8.0, -210.0)
) -> tuple[Volume, LabelVolume]:
    """A small straight cord (segments T11..S3), vertebrae with discs in front, and roots.

    Anisotropic spacing and an off-origin affine, so that geometry mistakes show.
    """
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    i, j, k = np.indices(shape)
    cx, cy = shape[0] // 2, shape[1] // 2 - 4
    labels = np.zeros(shape, np.uint16)
    cord = ((i - cx) * spacing[0]) ** 2 + ((j - cy) * spacing[1]) ** 2 <= 4.5**2
    span = shape[2] // (len(SEGMENT_IDS) + 1)
    for n, label_id in enumerate(SEGMENT_IDS):  # T11 at the top
        top = shape[2] - n * span
        labels[cord & (k < top) & (k >= top - span)] = label_id
    for n, level in enumerate(("T11", "T12", "L1", "L2", "L3")):
        top = shape[2] - n * 20
        block = (abs(i - cx) <= 7) & (j >= cy + 9) & (j <= cy + 17)
        labels[block & (k < top - 3) & (k >= top - 20)] = SCHEMA.find("vertebra", level).id
        if n:
            labels[block & (k < top) & (k >= top - 3)] = SCHEMA.find("vertebra", level).id + 50
    for n, level in enumerate(("L1", "L2", "L3", "L4")):  # dorsal roots, running down and out
        z0 = shape[2] - (n + 2) * span - span // 2
        for side, sign in (("left", -1), ("right", 1)):
            root = SCHEMA.find("dorsal_root", level, side).id
            for t in range(12):
                labels[cx + sign * (6 + t // 2), cy - 2, z0 - t] = root
    image = np.where(labels > 0, 300.0, 80.0) + (i + j + k) % 7
    return Volume(image.astype(np.float32), affine), LabelVolume(labels, affine, schema=SCHEMA)


# -- helpers -------------------------------------------------------------------------------
def read_precomputed(folder: Path) -> np.ndarray:
    """Reassemble the one-scale raw precomputed volume in `folder` (x fastest in chunks)."""
    info = json.loads((folder / "info").read_text())
    scale = info["scales"][0]
    array = np.zeros(scale["size"], dtype=np.dtype(info["data_type"]).newbyteorder("<"))
    for chunk in (folder / scale["key"]).iterdir():
        (x0, x1), (y0, y1), (z0, z1) = (
            tuple(map(int, r.split("-"))) for r in chunk.name.split("_")
        )
        block = np.frombuffer(chunk.read_bytes(), dtype=array.dtype)
        array[x0:x1, y0:y1, z0:z1] = block.reshape((x1 - x0, y1 - y0, z1 - z0), order="F")
    return array


def through_transform(transform: dict, source_voxels) -> np.ndarray:
    """World mm of Neuroglancer source coordinates, as Neuroglancer maps them: the 3x4
    matrix to output units, times each output dimension's scale (m -> mm)."""
    matrix = np.asarray(transform["matrix"])
    scales_mm = np.array([transform["outputDimensions"][d][0] * 1e3 for d in "xyz"])
    points = np.atleast_2d(np.asarray(source_voxels, dtype=float))
    return (points @ matrix[:, :3].T + matrix[:, 3]) * scales_mm


@pytest.fixture(scope="module")
def anatomy():
    return synthetic_anatomy()


@pytest.fixture(scope="module")
def dataset(anatomy, tmp_path_factory):
    from cordmap.viewer import write_precomputed

    image, labels = anatomy
    box = np.zeros(labels.shape, bool)
    box[5:9, 6:11, 20:23] = True  # a small solid whose mesh bounds are known exactly
    meshes = {1: _box_mesh(labels, box)}
    with_box = LabelVolume(
        np.where(box, 1, labels.array).astype(np.uint16), labels.affine, schema=SCHEMA
    )
    out = write_precomputed(image, with_box, meshes, tmp_path_factory.mktemp("ng") / "viewer")
    return out, image, with_box, box


def _box_mesh(labels: LabelVolume, box: np.ndarray):
    from cordmap.mesh import mesh_labels

    only = LabelVolume(box.astype(np.uint16), labels.affine, schema=SCHEMA)
    return mesh_labels(only, smoothing=0, reduction=0.0)[1]


# -- precomputed ---------------------------------------------------------------------------
def test_info_files_describe_the_volumes(dataset):
    out, image, labels, _ = dataset
    for name, kind, dtype, volume in (
        ("image", "image", "float32", image),
        ("labels", "segmentation", "uint16", labels),
    ):
        info = json.loads((out / name / "info").read_text())
        assert info["@type"] == "neuroglancer_multiscale_volume"
        assert (info["type"], info["data_type"], info["num_channels"]) == (kind, dtype, 1)
        (scale,) = info["scales"]
        assert scale["size"] == list(volume.shape)
        assert scale["resolution"] == pytest.approx([s * 1e6 for s in volume.spacing])
        assert scale["encoding"] == "raw" and scale["voxel_offset"] == [0, 0, 0]
        chunks = [-(-n // c) for n, c in zip(volume.shape, scale["chunk_sizes"][0])]
        assert len(list((out / name / scale["key"]).iterdir())) == np.prod(chunks)
    seg = json.loads((out / "labels" / "info").read_text())
    assert (out / "labels" / seg["mesh"] / "info").is_file()
    assert (out / "labels" / seg["segment_properties"] / "info").is_file()


def test_chunks_hold_the_volumes_exactly(dataset):
    out, image, labels, _ = dataset
    np.testing.assert_array_equal(read_precomputed(out / "image"), image.array)
    np.testing.assert_array_equal(read_precomputed(out / "labels"), labels.array)


def test_segment_properties_name_the_present_labels(dataset):
    out, _, labels, _ = dataset
    info = json.loads((out / "labels" / "segment_properties" / "info").read_text())
    assert info["@type"] == "neuroglancer_segment_properties"
    ids = [int(i) for i in info["inline"]["ids"]]
    assert sorted(ids) == labels.ids()
    names = next(p for p in info["inline"]["properties"] if p["type"] == "label")["values"]
    assert names == [SCHEMA[i].name for i in ids]


@pytest.mark.parametrize("ijk", [(0, 0, 0), (7, 30, 55), (39, 43, 99)])
def test_voxel_centre_lands_on_its_world_position(anatomy, ijk):
    from cordmap.viewer import source_transform

    image, _ = anatomy
    centre = np.asarray(ijk) + 0.5  # Neuroglancer: voxel i spans [i, i + 1)
    np.testing.assert_allclose(
        through_transform(source_transform(image), centre)[0], image.world(ijk), atol=1e-9
    )


def test_oblique_affine_keeps_its_rotation():
    from cordmap.viewer import source_transform

    angle = np.deg2rad(12)
    rotation = np.array(
        [[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.7, 0.7, 3.0])
    affine[:3, 3] = [10.0, -40.0, 120.0]
    volume = Volume(np.zeros((5, 6, 7), np.float32), affine)
    ijk = np.array([[0, 0, 0], [4, 5, 6], [2, 1, 3]])
    np.testing.assert_allclose(
        through_transform(source_transform(volume), ijk + 0.5), volume.world(ijk), atol=1e-9
    )


def test_mesh_lines_up_with_the_voxels_it_wraps(dataset):
    out, _, labels, box = dataset
    manifest = json.loads((out / "labels" / "mesh" / "1:0").read_text())
    data = (out / "labels" / "mesh" / manifest["fragments"][0]).read_bytes()
    count = int(np.frombuffer(data[:4], "<u4")[0])
    vertices = np.frombuffer(data[4 : 4 + 12 * count], "<f4").reshape(-1, 3)
    faces = np.frombuffer(data[4 + 12 * count :], "<u4").reshape(-1, 3)
    assert faces.max() < count
    # the surface runs along the voxel faces Neuroglancer draws: [i0, i1 + 1) x resolution
    ijk = np.argwhere(box)
    resolution = np.asarray(labels.spacing) * 1e6
    np.testing.assert_allclose(vertices.min(axis=0), ijk.min(axis=0) * resolution, rtol=1e-6)
    np.testing.assert_allclose(vertices.max(axis=0), (ijk.max(axis=0) + 1) * resolution, rtol=1e-6)


def test_every_present_label_has_a_mesh_manifest(dataset):
    out, _, labels, _ = dataset
    for label_id in labels.ids():  # only label 1 was given a mesh
        fragments = json.loads((out / "labels" / "mesh" / f"{label_id}:0").read_text())
        assert fragments == {"fragments": ["1.frag"] if label_id == 1 else []}


def test_without_meshes_the_dataset_names_no_mesh_source(anatomy, tmp_path):
    from cordmap.viewer import write_precomputed

    out = write_precomputed(*anatomy, None, tmp_path / "viewer")
    assert "mesh" not in json.loads((out / "labels" / "info").read_text())
    assert not (out / "labels" / "mesh").exists()


def test_image_only_dataset_and_view(anatomy, tmp_path):
    from cordmap.viewer import Site, viewer_state, write_precomputed

    image, _ = anatomy
    out = write_precomputed(image, None, None, tmp_path / "viewer")
    assert sorted(p.name for p in out.iterdir()) == ["image"]
    state = viewer_state(image, None)
    assert [layer["name"] for layer in state["layers"]] == ["MRI"]
    centre = image.world((np.asarray(image.shape) - 1) / 2)
    scales = np.array([state["dimensions"][d][0] * 1e3 for d in "xyz"])
    np.testing.assert_allclose(np.asarray(state["position"]) * scales, centre, atol=2e-3)
    assert isinstance(Site(out, state).lookup("/data/image/info"), Path)


# -- bad input -----------------------------------------------------------------------------
def _bad(anatomy, kind):
    image, labels = anatomy
    if kind == "empty":
        return image, LabelVolume(np.zeros(labels.shape, np.uint16), labels.affine, schema=SCHEMA)
    if kind == "unknown id":
        array = labels.array.copy()
        array[0, 0, 0] = 777
        return image, LabelVolume(array, labels.affine, schema=SCHEMA)
    shifted = labels.affine.copy()
    shifted[0, 3] += 5.0
    return image, LabelVolume(labels.array, shifted, schema=SCHEMA)


@pytest.mark.parametrize(
    "kind, message",
    [("empty", "empty"), ("unknown id", "777"), ("grid", "do not match the image grid")],
)
def test_bad_labels_leave_no_dataset(anatomy, tmp_path, kind, message):
    from cordmap.viewer import write_precomputed

    image, labels = _bad(anatomy, kind)
    with pytest.raises(CordmapError, match=message):
        write_precomputed(image, labels, None, tmp_path / "viewer")
    assert list(tmp_path.iterdir()) == []


def test_mesh_of_an_absent_label_is_refused_and_old_dataset_kept(anatomy, tmp_path):
    from cordmap.viewer import write_precomputed

    image, labels = anatomy
    out = write_precomputed(image, labels, None, tmp_path / "viewer")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    mesh = _box_mesh(labels, np.pad(np.ones((2, 2, 2), bool), [(0, n - 2) for n in labels.shape]))
    with pytest.raises(CordmapError, match=r"labels \[2\], which"):
        write_precomputed(image, labels, {2: mesh}, out)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["viewer"]


# -- first view ----------------------------------------------------------------------------
def test_state_shows_the_anatomy_in_schema_colours_centred_on_the_enlargement(anatomy):
    from cordmap.viewer import viewer_state

    image, labels = anatomy
    state = viewer_state(image, labels)
    image_layer, cord, bone = state["layers"]
    assert image_layer["type"] == "image" and image_layer["name"] == "MRI"
    assert (cord["type"], bone["type"]) == ("segmentation", "segmentation")
    assert cord["source"] == bone["source"]  # two views of the one label dataset
    classes = {
        name: {SCHEMA[int(i)].structure for i in layer["segments"]}
        for name, layer in (("cord", cord), ("bone", bone))
    }
    assert classes == {"cord": {"segment", "dorsal_root"}, "bone": {"vertebra", "disc"}}
    shown = {int(i) for layer in (cord, bone) for i in layer["segments"]}
    assert shown == set(labels.ids())  # the synthetic case has no CSF to hide
    assert cord["objectAlpha"] == 1.0 and 0 < bone["objectAlpha"] < 1  # see the cord through
    for layer in (cord, bone):
        assert layer["segmentColors"] == {str(i): SCHEMA[i].hex for i in labels.ids()}
    assert state["selectedLayer"]["layer"] == cord["name"]
    centre = labels.world(np.argwhere(np.isin(labels.array, ENLARGEMENT_IDS)).mean(axis=0))
    scales = np.array([state["dimensions"][d][0] * 1e3 for d in "xyz"])
    np.testing.assert_allclose(np.asarray(state["position"]) * scales, centre, atol=2e-3)


def _rotation(quaternion) -> np.ndarray:
    x, y, z, w = quaternion
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def test_slice_panels_are_upright_and_radiological(anatomy):
    """Neuroglancer's panels: "xy" = R, "xz" = R Rx(90), "yz" = R Ry(90); screen right and
    down are the panel rotation's first two columns (R here is its own inverse)."""
    from cordmap.viewer import viewer_state

    rotation = _rotation(viewer_state(*anatomy)["crossSectionOrientation"])
    np.testing.assert_allclose(rotation @ rotation, np.eye(3), atol=1e-6)
    quarter_x = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])
    quarter_y = np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]])
    right, down = 0, 1
    coronal, axial, sagittal = rotation, rotation @ quarter_x, rotation @ quarter_y
    superior, anterior, patient_right = np.eye(3)[2], np.eye(3)[1], np.eye(3)[0]
    np.testing.assert_allclose(coronal[:, down], -superior, atol=1e-6)
    np.testing.assert_allclose(sagittal[:, down], -superior, atol=1e-6)
    np.testing.assert_allclose(axial[:, down], -anterior, atol=1e-6)  # anterior up
    np.testing.assert_allclose(axial[:, right], -patient_right, atol=1e-6)  # right on the left
    np.testing.assert_allclose(np.abs(coronal[:, 2]), anterior, atol=1e-6)  # normals
    np.testing.assert_allclose(np.abs(sagittal[:, 2]), patient_right, atol=1e-6)


def test_3d_camera_looks_from_behind_with_superior_up(anatomy):
    from cordmap.viewer import viewer_state

    camera = _rotation(viewer_state(*anatomy)["projectionOrientation"])
    np.testing.assert_allclose(camera[:, 0], [1, 0, 0], atol=1e-6)  # patient's right, right
    np.testing.assert_allclose(camera[:, 1], [0, 0, -1], atol=1e-6)  # superior up
    np.testing.assert_allclose(camera[:, 2], [0, 1, 0], atol=1e-6)  # looking anteriorly


def test_csf_is_listed_but_hidden(anatomy):
    from cordmap.viewer import viewer_state

    image, labels = anatomy
    array = labels.array.copy()
    array[:2] = SCHEMA.find("csf").id
    layers = viewer_state(image, LabelVolume(array, labels.affine, schema=SCHEMA))["layers"][1:]
    csf = str(SCHEMA.find("csf").id)
    assert all(csf not in layer["segments"] and csf in layer["segmentColors"] for layer in layers)


def test_labels_without_bone_make_one_label_layer(anatomy):
    from cordmap.viewer import viewer_state

    image, labels = anatomy
    cord_only = np.where(np.isin(labels.array, SEGMENT_IDS), labels.array, 0).astype(np.uint16)
    state = viewer_state(image, LabelVolume(cord_only, labels.affine, schema=SCHEMA))
    assert [layer["name"] for layer in state["layers"]] == ["MRI", "cord and roots"]


# -- case, server, static site -------------------------------------------------------------
def make_case(image: Volume, labels: LabelVolume | None, folder: Path) -> Path:
    """A case folder made through `cordmap import`'s function, from NIfTI files."""
    from cordmap.io.nifti import write_nifti
    from cordmap.pipeline.imports import import_case

    folder.mkdir(parents=True, exist_ok=True)
    image_path = write_nifti(image, folder / "image.nii.gz")
    labels_path = write_nifti(labels, folder / "labels.nii.gz") if labels is not None else None
    import_case(image_path, folder / "case", labels_source=labels_path)
    return folder / "case"


@pytest.fixture(scope="module")
def case_dir(anatomy, tmp_path_factory):
    return make_case(*anatomy, tmp_path_factory.mktemp("case"))


@pytest.fixture(scope="module")
def server(case_dir):
    from cordmap.pipeline.view import serve_case

    server = serve_case(case_dir)
    server.start()
    yield server
    server.stop()


def get(server, path: str, headers=None) -> tuple[int, bytes, dict]:
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.putrequest(
        "GET",
        path,
        skip_accept_encoding=True,  # keep the path verbatim
        skip_host="Host" in (headers or {}),
    )
    for name, value in (headers or {}).items():
        connection.putheader(name, value)
    connection.endheaders()
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body, dict(response.getheaders())


def test_case_viewer_is_built_once_and_recorded(case_dir, server):
    from cordmap.case import Case
    from cordmap.pipeline.view import build_case_viewer

    case = Case.open(case_dir)
    assert "view" in case.manifest["stages"]
    folder = case.path("viewer")
    stamp = (folder / "labels" / "info").stat().st_mtime_ns
    _, state = build_case_viewer(case)  # up to date: reused, not rewritten
    assert (folder / "labels" / "info").stat().st_mtime_ns == stamp
    assert state == json.loads((folder / "state.json").read_text())
    for label_id in case.labels().ids():  # meshed by cordmap.mesh
        fragments = json.loads((folder / "labels" / "mesh" / f"{label_id}:0").read_text())
        assert (folder / "labels" / "mesh" / fragments["fragments"][0]).stat().st_size > 100


def test_server_binds_loopback_and_serves_client_data_and_entry_page(server, case_dir):
    assert server.url.startswith("http://127.0.0.1:")
    status, body, _ = get(server, "/")
    assert status == 200 and b"precomputed://" in body and b"v/cordmap" in body
    status, body, headers = get(server, "/v/cordmap/")
    assert status == 200 and b"EventSource" in body and b"main." in body
    from cordmap.viewer.site import client_dir

    script = next(client_dir().glob("main.*.js")).name
    status, _, headers = get(server, f"/v/cordmap/{script}")
    assert status == 200 and headers["Content-Type"] == "application/javascript"
    status, body, headers = get(server, "/data/labels/info")
    assert status == 200 and json.loads(body)["type"] == "segmentation"
    assert body == (case_dir / "viewer" / "labels" / "info").read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/data/../case.json",
        "/data/%2e%2e/case.json",
        "/data/..%2fcase.json",
        "/data/%2E%2E%2F%2E%2E%2Fetc/passwd",
        "/v/cordmap/../../../../etc/passwd",
        "/v/cordmap/..%5c..%5cetc%5cpasswd",
        "//etc/passwd",
        "/data//etc/passwd",
        "/data/labels/info%00",
        "/case.json",
        "/sub-01_T2w.nii.gz",
        "/data/",
        "/etc/passwd",
    ],
)
def test_server_refuses_paths_outside_the_site(server, path):
    status, body, _ = get(server, path)
    assert status == 404 and b"root:" not in body and b"subject" not in body


def test_server_refuses_links_out_of_the_case(server, case_dir):
    link = case_dir / "viewer" / "escape"
    link.symlink_to(case_dir / "case.json")
    try:
        assert get(server, "/data/escape")[0] == 404
    finally:
        link.unlink()


def test_range_requests(server, case_dir):
    whole = (case_dir / "viewer" / "labels" / "info").read_bytes()
    status, body, headers = get(server, "/data/labels/info", {"Range": "bytes=5-14"})
    assert status == 206 and body == whole[5:15]
    assert headers["Content-Range"] == f"bytes 5-14/{len(whole)}"
    assert get(server, "/data/labels/info", {"Range": "bytes=-7"})[1] == whole[-7:]
    status, _, headers = get(server, "/data/labels/info", {"Range": f"bytes={len(whole)}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(whole)}"


@pytest.mark.parametrize(
    "host, status",
    [
        ("evil.example", 403),
        ("evil.example:8000", 403),
        ("127.0.0.1.evil.example", 403),
        ("localhost", 200),
        ("LOCALHOST:1234", 200),
        ("127.0.0.1", 200),
        ("[::1]:80", 200),
    ],
)
def test_only_this_machine_may_be_named_in_the_host_header(server, host, status):
    """DNS rebinding: a page of another site reaching 127.0.0.1 under its own name."""
    assert get(server, "/data/labels/info", {"Host": host})[0] == status


@pytest.mark.parametrize(
    "value",
    [
        "bytes=0-1,5-6",
        "bytes=abc",
        "items=0-5",
        "bytes=" + "9" * 5000 + "-",
        "bytes=5-2x",
    ],
)
def test_malformed_or_multiple_ranges_are_ignored(server, case_dir, value):
    whole = (case_dir / "viewer" / "labels" / "info").read_bytes()
    status, body, _ = get(server, "/data/labels/info", {"Range": value})
    assert status == 200 and body == whole


def test_abusive_paths_get_404_and_are_not_all_remembered(server):
    for n in range(60):
        status, _, _ = get(server, "/data/" + "a" * 60_000 + str(n))
        assert status == 404
    assert len(server.not_found) <= 20 and max(map(len, server.not_found)) <= 200


def test_idle_connections_are_closed(server):
    from cordmap.viewer.server import IDLE_TIMEOUT_S

    with socket.create_connection(server.server_address[:2]) as idle:
        idle.settimeout(IDLE_TIMEOUT_S + 10)
        start = time.monotonic()
        assert idle.recv(1) == b""  # the server hung up
        assert time.monotonic() - start >= IDLE_TIMEOUT_S - 1


def test_port_in_use_is_a_clear_error(case_dir):
    from cordmap.pipeline.view import serve_case

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(CordmapError, match=f"port {port} .* in use.*`port`"):
            serve_case(case_dir, port)


def test_port_out_of_range_is_a_clear_error(case_dir):
    from cordmap.pipeline.view import serve_case

    with pytest.raises(CordmapError, match="70000 is not a TCP port"):
        serve_case(case_dir, 70000)


def test_case_without_labels_is_a_clear_error(anatomy, tmp_path):
    from cordmap.pipeline.view import serve_case

    case = make_case(anatomy[0], None, tmp_path)
    with pytest.raises(CordmapError, match="has no labels"):
        serve_case(case)
    assert not (case / "viewer").exists()


def test_cli_writes_a_self_contained_static_site(case_dir, tmp_path):
    from typer.testing import CliRunner

    from cordmap.cli import app

    result = CliRunner().invoke(app, ["view", str(case_dir), "--static", str(tmp_path / "site")])
    assert result.exit_code == 0, result.output
    site = tmp_path / "site"
    assert b"precomputed://" in (site / "index.html").read_bytes()
    assert b"EventSource" in (site / "v" / "cordmap" / "index.html").read_bytes()
    client = (site / "v" / "cordmap" / "index.html").read_text()
    for script in ("main.", "205."):
        name = client.split(f'src="{script}', 1)[1].split('"', 1)[0]
        assert (site / "v" / "cordmap" / f"{script}{name}").is_file()
    for name in ("image", "labels"):
        assert (site / "data" / name / "info").read_bytes() == (
            case_dir / "viewer" / name / "info"
        ).read_bytes()


def test_cli_reports_a_port_in_use(case_dir):
    from typer.testing import CliRunner

    from cordmap.cli import app

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(
            app, ["view", str(case_dir), "--port", str(port), "--no-browser"]
        )
    assert result.exit_code == 1
    assert "in use" in result.output


def test_real_subject_voxels_land_where_the_scanner_affine_puts_them(data_dir, tmp_path):
    """sct-t2 is stored P-S-R: follow raw file voxels through canonical RAS+ to Neuroglancer."""
    import nibabel as nib

    from cordmap.io.nifti import read_labels, read_nifti
    from cordmap.viewer import source_transform, write_precomputed

    folder = data_dir / "sct-t2"
    raw = nib.load(folder / "t2.nii.gz")
    raw_data = np.asarray(raw.dataobj)
    image = read_nifti(folder / "t2.nii.gz")
    labels = read_labels(folder / "t2_seg-manual.nii.gz", SCHEMA)  # cord = 1
    out = write_precomputed(image, labels, None, tmp_path / "viewer")
    stored = read_precomputed(out / "image")
    stored_labels = read_precomputed(out / "labels")
    raw_labels = np.asarray(nib.load(folder / "t2_seg-manual.nii.gz").dataobj)
    rng = np.random.default_rng(0)
    for abc in rng.integers(0, raw.shape, size=(20, 3)):
        world = raw.affine[:3, :3] @ abc + raw.affine[:3, 3]
        ijk = np.rint(image.voxel(world)).astype(int)
        assert stored[tuple(ijk)] == pytest.approx(float(raw_data[tuple(abc)]))
        assert stored_labels[tuple(ijk)] == raw_labels[tuple(abc)]
        np.testing.assert_allclose(
            through_transform(source_transform(image), ijk + 0.5)[0], world, atol=1e-4
        )


def test_cli_serves_until_ctrl_c_then_stops_cleanly(case_dir):
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from cordmap.cli import app; app()",
            "view",
            str(case_dir),
            "--no-browser",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Ctrl-C handled by default in the child, as a shell starts a command
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        line = process.stdout.readline()
        assert "viewer at http://127.0.0.1:" in line, line
        url = line.split("viewer at ", 1)[1].split()[0]
        host, port = url.removeprefix("http://").strip("/").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request("GET", "/data/image/info")
        assert connection.getresponse().status == 200
        connection.close()
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0, output
    assert "viewer stopped" in output
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=2)


def test_a_foreign_folder_is_never_replaced(anatomy, case_dir, tmp_path):
    from cordmap.pipeline.view import export_case
    from cordmap.viewer import write_precomputed

    precious = tmp_path / "documents"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    with pytest.raises(CordmapError, match="not a precomputed viewer dataset"):
        write_precomputed(*anatomy, None, precious)
    with pytest.raises(CordmapError, match="not a cordmap viewer site"):
        export_case(case_dir, precious)
    assert [p.name for p in precious.iterdir()] == ["thesis.tex"]
    site = export_case(case_dir, tmp_path / "site")
    assert export_case(case_dir, site) == site  # a site of ours is refreshed
