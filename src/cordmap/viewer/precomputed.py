"""Write a case as a Neuroglancer *precomputed* dataset, by hand with numpy (offline).

Layout of the folder written by `write_precomputed`:

    image/info, image/<scale>/<x0-x1_y0-y1_z0-z1>        the MRI, raw chunks
    labels/info, labels/<scale>/...                      the label ids (uint16), raw chunks
    labels/mesh/info, labels/mesh/<id>:0, <id>.frag      legacy meshes: manifest + fragment
    labels/segment_properties/info                       names from the label schema

Geometry. A precomputed volume lives in its own voxel space: voxel (i, j, k) fills the
unit cube [i, i+1) x [j, j+1) x [k, k+1), so its centre is at i + 0.5, and the native
coordinates are voxel indices scaled by `resolution` (nm). The world position lives in
the layer's *source transform* (see `source_transform`): the direction cosines of the
affine, rescaled to the output dimensions (one per world axis, RAS+), and the affine's
translation shifted by half a voxel, so that voxel centres land on `Volume.world(ijk)`.
Meshes (world RAS+ mm, vertices on voxel centres) are written in the same native space,
so image, labels and meshes line up exactly. Nanometres appear only in this package.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from cordmap.atomic import atomic_dir
from cordmap.errors import CordmapError
from cordmap.protocol.schema import LabelSchema
from cordmap.viewer.folders import require_replaceable
from cordmap.volume import LabelVolume, Volume

NM_PER_MM = 1e6
CHUNK_SIZE = (64, 64, 64)
IMAGE_DIR, LABELS_DIR = "image", "labels"
MESH_DIR, PROPERTIES_DIR = "mesh", "segment_properties"
#: Data types Neuroglancer reads from raw precomputed chunks.
NEUROGLANCER_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "float32")


class Mesh(Protocol):
    """What the viewer reads of a mesh (a `trimesh.Trimesh`): vertices (world RAS+ mm), faces."""

    @property
    def vertices(self) -> np.ndarray: ...

    @property
    def faces(self) -> np.ndarray: ...


def output_scales_mm(volume: Volume) -> np.ndarray:
    """Size (mm) of one unit of each output (world) dimension x, y, z: the voxel spacing.

    The volume is in canonical RAS+ voxel order, so voxel axis n runs closest to world
    axis n, and one output unit per voxel keeps Neuroglancer's slice stepping natural.
    Rounded to 1 nm, so that float32 header noise does not show in the viewer.
    """
    return np.round(np.asarray(volume.spacing, dtype=float), 6)


def source_transform(volume: Volume) -> dict:
    """Neuroglancer layer source transform of a volume written by `write_precomputed`.

    Input: the source's voxel coordinates (voxel i spans [i, i+1)). Output: world RAS+
    in units of `output_scales_mm` (dimension names x, y, z). The 3x4 matrix holds the
    direction cosines times the spacing ratio, and the translation of the voxel corner
    (the affine's origin shifted by half a voxel).
    """
    scales = output_scales_mm(volume)
    linear = volume.affine[:3, :3]
    corner = volume.affine[:3, 3] - linear @ np.full(3, 0.5)
    matrix = np.column_stack([linear, corner]) / scales[:, None]
    return {
        "outputDimensions": output_dimensions(volume),
        "matrix": [[_clean(v) for v in row] for row in matrix],
    }


def output_dimensions(volume: Volume) -> dict:
    """Neuroglancer coordinate space of the output (world) dimensions, in metres."""
    return {name: [float(s) * 1e-3, "m"] for name, s in zip("xyz", output_scales_mm(volume))}


def world_to_output(volume: Volume, xyz_mm) -> np.ndarray:
    """World RAS+ mm -> Neuroglancer output coordinates (units of `output_scales_mm`)."""
    return np.asarray(xyz_mm, dtype=float) / output_scales_mm(volume)


def world_to_native_nm(volume: Volume, xyz_mm) -> np.ndarray:
    """World RAS+ mm -> the precomputed source's native coordinates in nm (mesh space)."""
    corner_voxels = volume.voxel(xyz_mm) + 0.5
    return corner_voxels * np.asarray(volume.spacing) * NM_PER_MM


def write_precomputed(
    image: Volume,
    labels: LabelVolume | None,
    meshes: Mapping[int, Mesh] | None,
    out_dir: str | Path,
    then: Callable[[], None] | None = None,
) -> Path:
    """Write the image (and labels, meshes, segment names) as precomputed under `out_dir`.

    `labels` and `meshes` may be None. `meshes` maps label ids to meshes with `.vertices`
    (world RAS+ mm, on voxel centres) and `.faces`, e.g. from `cordmap.mesh.mesh_labels`.
    The folder is replaced atomically (an error leaves no partial dataset), and only if it
    is new, empty or an earlier dataset; `then` runs once it is in place, with Ctrl-C held
    (`cordmap.atomic.atomic_dir`: the caller's record of it).
    """
    out_dir = Path(out_dir)
    require_replaceable(out_dir, f"{IMAGE_DIR}/info", "a precomputed viewer dataset")
    present = check_labels(image, labels) if labels is not None else []
    if meshes and labels is None:
        raise CordmapError("meshes need their label volume: pass labels to write_precomputed")
    with atomic_dir(out_dir, then) as tmp:
        _write_volume(tmp / IMAGE_DIR, _image_array(image), image, "image")
        if labels is not None:
            extra = {"segment_properties": PROPERTIES_DIR} | ({"mesh": MESH_DIR} if meshes else {})
            _write_volume(
                tmp / LABELS_DIR, labels.array.astype("<u2"), labels, "segmentation", extra=extra
            )
            _write_json(
                tmp / LABELS_DIR / PROPERTIES_DIR / "info",
                segment_properties(labels.schema, present),
            )
            if meshes:
                _write_meshes(tmp / LABELS_DIR / MESH_DIR, labels, meshes, present)
    return out_dir


def check_labels(image: Volume, labels: LabelVolume) -> list[int]:
    """Refuse labels the viewer cannot show: off the image grid, empty, or unknown ids.

    Returns the label ids present (background excluded), ascending.
    """
    image.require_same_grid(labels)
    present = present_ids(labels)
    if not present:
        raise CordmapError(
            "the label volume is empty (all background); annotate at least one structure "
            "or import another label file with `cordmap import ... --labels`"
        )
    unknown = [i for i in present if i not in labels.schema]
    if unknown:
        raise CordmapError(
            f"label ids {unknown} are not in the annotation protocol '{labels.schema.name}'; "
            "relabel them or pass a schema that defines them"
        )
    return present


def present_ids(labels: LabelVolume) -> list[int]:
    """Label ids present (background excluded): one counting pass for 8/16-bit arrays."""
    if labels.array.dtype in (np.uint8, np.uint16):
        return [int(i) for i in np.flatnonzero(np.bincount(labels.array.ravel())) if i != 0]
    return labels.ids()


def segment_properties(schema: LabelSchema, ids) -> dict:
    """The schema's Neuroglancer segment properties, restricted to `ids` (present labels)."""
    wanted = {int(i) for i in ids}
    info = schema.to_neuroglancer()
    inline = info["inline"]
    keep = [n for n, i in enumerate(inline["ids"]) if int(i) in wanted]
    inline["ids"] = [inline["ids"][n] for n in keep]
    for prop in inline["properties"]:
        prop["values"] = [prop["values"][n] for n in keep]
    return info


def _image_array(image: Volume) -> np.ndarray:
    array = image.array
    if array.dtype.name not in NEUROGLANCER_DTYPES:
        array = array.astype(np.float32)
    return array.astype(array.dtype.newbyteorder("<"), copy=False)


def _write_volume(
    folder: Path, array: np.ndarray, volume: Volume, kind: str, extra: dict | None = None
) -> None:
    """One scale of raw chunks (x fastest, as Neuroglancer reads them) and its `info`."""
    resolution = [float(s) * NM_PER_MM for s in volume.spacing]
    key = "_".join(f"{r:g}" for r in resolution)
    size = [int(n) for n in array.shape]
    info = {
        "@type": "neuroglancer_multiscale_volume",
        "type": kind,
        "data_type": array.dtype.name,
        "num_channels": 1,
        "scales": [
            {
                "key": key,
                "size": size,
                "resolution": resolution,
                "voxel_offset": [0, 0, 0],
                "chunk_sizes": [list(CHUNK_SIZE)],
                "encoding": "raw",
            }
        ],
        **(extra or {}),
    }
    chunk_dir = folder / key
    chunk_dir.mkdir(parents=True)
    for x0 in range(0, size[0], CHUNK_SIZE[0]):
        for y0 in range(0, size[1], CHUNK_SIZE[1]):
            for z0 in range(0, size[2], CHUNK_SIZE[2]):
                x1, y1, z1 = (min(a + c, n) for a, c, n in zip((x0, y0, z0), CHUNK_SIZE, size))
                block = array[x0:x1, y0:y1, z0:z1]
                (chunk_dir / f"{x0}-{x1}_{y0}-{y1}_{z0}-{z1}").write_bytes(block.tobytes(order="F"))
    _write_json(folder / "info", info)


def _write_meshes(
    folder: Path, labels: LabelVolume, meshes: Mapping[int, Mesh], present: list[int]
) -> None:
    """Legacy Neuroglancer meshes: for every present label a manifest `<id>:0` naming its
    one binary fragment `<id>.frag` (none when it has no mesh, so nothing is missing)."""
    stray = sorted(set(map(int, meshes)) - set(present))
    if stray:
        raise CordmapError(
            f"meshes were given for labels {stray}, which the label volume does not hold; "
            "re-mesh the case (`cordmap mesh CASE`) after changing its labels"
        )
    folder.mkdir(parents=True)
    _write_json(
        folder / "info",
        {"@type": "neuroglancer_legacy_mesh", "segment_properties": f"../{PROPERTIES_DIR}"},
    )
    by_id = {int(label_id): mesh for label_id, mesh in meshes.items()}
    for label_id in present:
        fragments = []
        mesh = by_id.get(label_id)
        if mesh is not None and len(mesh.vertices) and len(mesh.faces):
            fragments.append(f"{label_id}.frag")
            native = world_to_native_nm(labels, np.asarray(mesh.vertices, float)).astype("<f4")
            (folder / fragments[0]).write_bytes(
                np.uint32(len(native)).astype("<u4").tobytes()
                + native.tobytes()
                + np.asarray(mesh.faces).astype("<u4").tobytes()
            )
        _write_json(folder / f"{label_id}:0", {"fragments": fragments})


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")


def _clean(value: float) -> float:
    """Round away float noise (1e-17) so the state stays readable."""
    rounded = round(float(value), 9)
    return 0.0 if rounded == 0 else rounded
