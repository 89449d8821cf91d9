"""One closed surface mesh per label, in world RAS+ millimetres.

`mesh_labels` bridges the diagonal contacts of thin labels (`cordmap.mesh.thin`), runs
zmesh's multi-label marching cubes once over the labels' bounding box (thin labels may
instead be meshed on their own upsampled grid), maps the vertices through the volume's
affine, then smooths and simplifies each mesh (`cordmap.mesh.refine`), over the CPU
cores when there is enough work (`cordmap.mesh.parallel`).

Coordinates: the centre of voxel (i, j, k) is at ``affine @ (i, j, k, 1)`` (NIfTI), and
a surface lies half-way between a labelled voxel centre and an unlabelled one. This is
the same physical place Neuroglancer draws when its source transform carries the
half-voxel shift (its voxel (i, j, k) spans [i, i+1)). The labels are meshed with a
background border of one voxel, so every mesh is closed, also where a label touches the
edge of the volume (zmesh's ``close=True`` and its one-voxel shift are not needed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
import zmesh
from scipy import ndimage

from cordmap.errors import CordmapError
from cordmap.mesh import thin
from cordmap.mesh.parallel import refine_meshes
from cordmap.volume import LabelVolume

#: Default number of Taubin lambda/mu iterations.
DEFAULT_SMOOTHING = 10
#: Default fraction of triangles removed by simplification (0.9 keeps 10%).
DEFAULT_REDUCTION = 0.9
#: Default handling of thin labels: bridged on the voxel grid (see `cordmap.mesh.thin`).
DEFAULT_THIN_UPSAMPLE = 1


@dataclass(frozen=True)
class MeshStats:
    """Size and closure of one label's mesh (mm³, mm²)."""

    volume_mm3: float
    area_mm2: float
    watertight: bool
    triangles: int


def mesh_labels(labels: LabelVolume, *, ids=None, smoothing: int = DEFAULT_SMOOTHING,
                reduction: float = DEFAULT_REDUCTION,
                thin_upsample: int = DEFAULT_THIN_UPSAMPLE) -> dict[int, trimesh.Trimesh]:
    """Mesh every label (or `ids`) of `labels`; vertices in world RAS+ mm, faces outward.

    smoothing: Taubin iterations (0 = the raw marching-cubes staircase).
    reduction: fraction of triangles to remove, 0 <= reduction < 1 (0 = no decimation).
    thin_upsample: how thin labels (roots) are kept connected, see `cordmap.mesh.thin`:
        1 bridges their diagonal contacts on the voxel grid, a factor >= 2 upsamples
        them by it and bridges on the finer grid, 0 meshes them as they are (dust).
    Returns {label id: trimesh.Trimesh}, ascending ids.
    """
    _check_parameters(smoothing, reduction, thin_upsample)
    meshes = march_labels(labels, ids=ids, thin_upsample=thin_upsample)
    # marching cubes with a background border closes every mesh
    return refine_meshes(meshes, smoothing, reduction, closed=True)


def march_labels(labels: LabelVolume, *, ids=None,
                 thin_upsample: int = DEFAULT_THIN_UPSAMPLE) -> dict[int, trimesh.Trimesh]:
    """The raw marching-cubes surfaces of `mesh_labels` (no smoothing or simplification)."""
    _check_parameters(0, 0.0, thin_upsample)
    crop, origin = _crop(labels.array)
    # a copy with a background border: every mesh closes, bridges go into it, and the
    # input is never modified
    padded = np.pad(crop, 1)
    points = _voxels_by_label(padded)
    wanted = _wanted_ids(labels.schema, sorted(points), ids)
    thin_set = {i for i in wanted if thin_upsample and thin.is_thin(padded, points[i], i)}
    upsampled = thin_set if thin_upsample > 1 else set()
    for label_id in sorted(thin_set - upsampled):
        thin.bridge_in_place(padded, points[label_id], label_id, thin_set)
    index_meshes = _march(padded, [i for i in wanted if i not in upsampled], border=True)
    for label_id in sorted(upsampled):
        ijk = np.column_stack(np.unravel_index(points[label_id], padded.shape))
        corner = ijk.min(axis=0)
        box = tuple(slice(lo, hi + 1) for lo, hi in zip(corner, ijk.max(axis=0)))
        vertices, faces = _march_thin(padded[box] == label_id, thin_upsample)
        index_meshes[label_id] = (vertices + corner, faces)
    origin = origin - 1  # the padding
    return {label_id: _to_world(index_meshes[label_id][0] + origin, index_meshes[label_id][1],
                                labels.affine)
            for label_id in wanted}


def mesh_stats(meshes: dict[int, trimesh.Trimesh]) -> dict[int, MeshStats]:
    """Volume (mm³), surface area (mm²), watertightness and triangle count of each mesh."""
    return {label_id: MeshStats(float(mesh.volume), float(mesh.area),
                                bool(mesh.is_watertight), len(mesh.faces))
            for label_id, mesh in meshes.items()}


def _check_parameters(smoothing, reduction, thin_upsample) -> None:
    if int(smoothing) != smoothing or smoothing < 0:
        raise CordmapError(f"smoothing must be a whole number of iterations >= 0, not {smoothing}")
    if not 0 <= reduction < 1:
        raise CordmapError(
            f"reduction must be at least 0 and below 1 (0.9 keeps 10% of triangles), "
            f"not {reduction}")
    if int(thin_upsample) != thin_upsample or thin_upsample < 0:
        raise CordmapError(
            f"thin_upsample must be 0 (off), 1 (bridge on the voxel grid) or an upsampling "
            f"factor >= 2, not {thin_upsample}")


def _wanted_ids(schema, present: list[int], ids) -> list[int]:
    if ids is None:
        wanted = present
    else:
        wanted = sorted({int(i) for i in ids})
        missing = [i for i in wanted if i not in present]
        if missing:
            raise CordmapError(
                f"label ids {missing} do not occur in the label volume (present: {present}); "
                "pass ids that are labelled")
    unknown = [i for i in wanted if i not in schema]
    if unknown:
        raise CordmapError(
            f"label ids {unknown} are not in the annotation protocol '{schema.name}'; "
            "relabel them or pass a protocol that defines them")
    return wanted


def _voxels_by_label(array: np.ndarray) -> dict[int, np.ndarray]:
    """Flat indices of the voxels of each label in C-ordered `array`, in one pass."""
    flat = np.flatnonzero(array)
    values = array.ravel()[flat]
    order = np.argsort(values, kind="stable")
    values, flat = values[order], flat[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(values)) + 1])
    ends = np.append(starts[1:], len(values))
    return {int(values[lo]): flat[lo:hi] for lo, hi in zip(starts, ends)}


def _crop(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bounding box of the labelled voxels of `array` and its voxel origin."""
    boxes = ndimage.find_objects((array != 0).view(np.uint8))
    if not boxes:
        raise CordmapError(
            "the label volume is empty (every voxel is 0): there is nothing to mesh; "
            "check that the right label file was given")
    origin = np.array([b.start for b in boxes[0]], dtype=float)
    return array[boxes[0]], origin


def _march(array: np.ndarray, ids: list[int], *, border: bool
           ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Marching cubes of every label in one zmesh pass; vertices in voxel indices.

    border: True when `array` already has a background border (every mesh closes);
    else zmesh pads it (``close=True``) and its one-voxel shift is taken off here.
    """
    if not ids:
        return {}
    mesher = zmesh.Mesher((1, 1, 1))
    mesher.mesh(array, close=not border)
    shift = 0.0 if border else 1.0
    out = {}
    for label_id in ids:
        mesh = mesher.get(label_id, normals=False, voxel_centered=False)
        out[label_id] = (mesh.vertices.astype(np.float64) - shift, mesh.faces)
    return out


def _march_thin(mask: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of one thin label's mask, upsampled and bridged."""
    fine = thin.bridged_upsample(mask, factor)
    (vertices, faces), = _march(fine.view(np.uint8), [1], border=False).values()
    return (vertices + 0.5) / factor - 0.5, faces


def _to_world(vertices: np.ndarray, faces: np.ndarray, affine: np.ndarray) -> trimesh.Trimesh:
    world = vertices @ affine[:3, :3].T + affine[:3, 3]
    if np.linalg.det(affine[:3, :3]) < 0:  # a mirroring affine turns faces inside out
        faces = faces[:, ::-1]
    return trimesh.Trimesh(world, faces.astype(np.int64), process=False)
