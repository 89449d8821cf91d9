"""One closed surface mesh per label, in world RAS+ millimetres.

`mesh_labels` bridges the diagonal contacts of thin labels (`cordmap.mesh.thin`) and runs
zmesh's multi-label marching cubes once over the labels' bounding box. Then, label by
label, it takes each label's surface out of that pass (thin labels may instead be meshed
on their own upsampled grid) and, over `workers` processes when there is enough work
(`cordmap.mesh.parallel`), maps its vertices through the volume's affine and smooths and
simplifies it (`cordmap.mesh.refine`): the worker processes get the raw surfaces and
send back only the simplified meshes.

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

from cordmap.errors import CordmapError
from cordmap.mesh import refine, thin
from cordmap.mesh.parallel import map_labels
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


def mesh_labels(
    labels: LabelVolume,
    *,
    ids=None,
    smoothing: int = DEFAULT_SMOOTHING,
    reduction: float = DEFAULT_REDUCTION,
    thin_upsample: int = DEFAULT_THIN_UPSAMPLE,
    workers: int | None = None,
) -> dict[int, trimesh.Trimesh]:
    """Mesh every label (or `ids`) of `labels`; vertices in world RAS+ mm, faces outward.

    Parameters
    ----------
    labels : LabelVolume
        The label volume.
    ids : iterable of int, optional
        The labels to mesh; default every label present.
    smoothing : int
        Taubin iterations (0 = the raw marching-cubes staircase).
    reduction : float
        Fraction of triangles to remove, 0 <= reduction < 1 (0 = no decimation).
    thin_upsample : int
        How thin labels (roots) are kept connected, see `cordmap.mesh.thin`: 1 bridges
        their diagonal contacts on the voxel grid, a factor >= 2 upsamples them by it and
        bridges on the finer grid, 0 meshes them as they are (dust).
    workers : int, optional
        Processes for the per-label work, this one included (`cordmap.mesh.parallel`);
        default the CPU cores this process may use
        (`cordmap.mesh.parallel.default_workers`); 1 starts none.

    Returns
    -------
    dict
        {label id: trimesh.Trimesh}, ascending ids; the same meshes whatever `workers`.
    """
    _check_parameters(smoothing, reduction, thin_upsample)
    marched = _MarchedLabels(labels, ids, thin_upsample)

    def prepare(label_id: int) -> tuple:
        return (*marched.raw_surface(label_id), marched.affine, smoothing, reduction)

    made = map_labels(prepare, _refined, marched.work, workers=workers)
    return {
        label_id: trimesh.Trimesh(vertices, faces, process=False)
        for label_id, (vertices, faces) in made.items()
    }


def _refined(
    vertices: np.ndarray, faces: np.ndarray, affine: np.ndarray, smoothing: int, reduction: float
) -> tuple[np.ndarray, np.ndarray]:
    """One label's smoothed and simplified mesh (world mm) from its raw surface (padded
    voxel indices): the per-label work of `mesh_labels`, in whichever process runs it."""
    # marching cubes with a background border closes every mesh
    mesh = refine.smooth_and_simplify(
        _to_world(vertices, faces, affine), smoothing, reduction, closed=True
    )
    return mesh.vertices.view(np.ndarray), mesh.faces.view(np.ndarray)


def march_labels(
    labels: LabelVolume, *, ids=None, thin_upsample: int = DEFAULT_THIN_UPSAMPLE
) -> dict[int, trimesh.Trimesh]:
    """The raw marching-cubes surfaces of `mesh_labels` (no smoothing or simplification)."""
    _check_parameters(0, 0.0, thin_upsample)
    marched = _MarchedLabels(labels, ids, thin_upsample)
    return {label_id: marched.surface(label_id) for label_id in marched.work}


class _MarchedLabels:
    """zmesh's one pass over the (bridged) labels, made when the first surface is asked
    for (`mesh_labels` starts its worker processes first); each label's surface is taken
    out of it on demand.

    work: {label id: its surface voxels (upsampled thin labels: times factor²)}, ascending
    ids: how many triangles each mesh will have, roughly.
    """

    def __init__(self, labels: LabelVolume, ids, thin_upsample: int):
        crop, origin = _crop(labels.array)
        # a copy with a background border: every mesh closes, bridges go into it, and the
        # input is never modified
        padded = np.pad(crop, 1)
        points = _voxels_by_label(padded)
        wanted = _wanted_ids(labels.schema, sorted(points), ids)
        surface = {i: thin.surface_voxels(padded, points[i], i) for i in wanted}
        thin_ids = {
            i for i in wanted if thin_upsample and thin.is_thin(padded, points[i], i, surface[i])
        }
        self.upsampled = {i: points[i] for i in thin_ids} if thin_upsample > 1 else {}
        if thin_ids and not self.upsampled:
            thin.bridge_in_place(padded, {i: points[i] for i in sorted(thin_ids)}, thin_ids)
        self.mesher: zmesh.Mesher | None = None  # marches all labels at first need
        self.padded, self.factor = padded, thin_upsample
        self.work = {
            i: surface[i] * (thin_upsample**2 if i in self.upsampled else 1) for i in wanted
        }
        # padded voxel index -> world mm
        self.affine = labels.affine.astype(np.float64)
        self.affine[:3, 3] += self.affine[:3, :3] @ (origin - 1)

    def surface(self, label_id: int) -> trimesh.Trimesh:
        """The label's closed marching-cubes surface, in world RAS+ mm."""
        return _to_world(*self.raw_surface(label_id), self.affine)

    def raw_surface(self, label_id: int) -> tuple[np.ndarray, np.ndarray]:
        """The label's closed marching-cubes surface: vertices in padded voxel indices
        (`self.affine` maps them to world mm), faces."""
        if label_id in self.upsampled:
            return self._upsampled_surface(label_id)
        if self.mesher is None:
            self.mesher = zmesh.Mesher((1, 1, 1))
            self.mesher.mesh(self.padded, close=False)
        mesh = self.mesher.get(label_id, normals=False, voxel_centered=False)
        return mesh.vertices, mesh.faces

    def _upsampled_surface(self, label_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Marching cubes of one thin label's box, upsampled and bridged (padded indices)."""
        ijk = np.column_stack(np.unravel_index(self.upsampled[label_id], self.padded.shape))
        low = ijk.min(axis=0) - 1  # keep a background border: the padding has room for it
        box = tuple(slice(lo, hi + 2) for lo, hi in zip(low, ijk.max(axis=0)))
        fine = thin.bridged_upsample(self.padded[box] == label_id, self.factor)
        mesher = zmesh.Mesher((1, 1, 1))
        mesher.mesh(fine.view(np.uint8), close=False)
        mesh = mesher.get(1, normals=False, voxel_centered=False)
        return (mesh.vertices + 0.5) / self.factor - 0.5 + low, mesh.faces


def mesh_stats(meshes: dict[int, trimesh.Trimesh]) -> dict[int, MeshStats]:
    """Volume (mm³), surface area (mm²), watertightness and triangle count of each mesh."""
    return {
        label_id: MeshStats(
            float(mesh.volume), float(mesh.area), bool(mesh.is_watertight), len(mesh.faces)
        )
        for label_id, mesh in meshes.items()
    }


def _check_parameters(smoothing, reduction, thin_upsample) -> None:
    if int(smoothing) != smoothing or smoothing < 0:
        raise CordmapError(f"smoothing must be a whole number of iterations >= 0, not {smoothing}")
    if not 0 <= reduction < 1:
        raise CordmapError(
            f"reduction must be at least 0 and below 1 (0.9 keeps 10% of triangles), "
            f"not {reduction}"
        )
    if int(thin_upsample) != thin_upsample or thin_upsample < 0:
        raise CordmapError(
            f"thin_upsample must be 0 (off), 1 (bridge on the voxel grid) or an upsampling "
            f"factor >= 2, not {thin_upsample}"
        )


def _wanted_ids(schema, present: list[int], ids) -> list[int]:
    if ids is None:
        wanted = present
    else:
        wanted = sorted({int(i) for i in ids})
        missing = [i for i in wanted if i not in present]
        if missing:
            raise CordmapError(
                f"label ids {missing} do not occur in the label volume (present: {present}); "
                "pass ids that are labelled"
            )
    unknown = [i for i in wanted if i not in schema]
    if unknown:
        raise CordmapError(
            f"label ids {unknown} are not in the annotation protocol '{schema.name}'; "
            "relabel them or pass a protocol that defines them"
        )
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
    """The bounding box of the labelled voxels of `array` and its voxel origin (from the
    labelled rows, columns and slices: 3x faster than scipy's find_objects)."""
    labelled = array != 0
    columns = labelled.any(axis=2)
    extents = [
        np.flatnonzero(columns.any(axis=1)),
        np.flatnonzero(columns.any(axis=0)),
        np.flatnonzero(labelled.any(axis=(0, 1))),
    ]
    if not len(extents[0]):
        raise CordmapError(
            "the label volume is empty (every voxel is 0): there is nothing to mesh; "
            "check that the right label file was given"
        )
    box = tuple(slice(found[0], found[-1] + 1) for found in extents)
    return array[box], np.array([found[0] for found in extents], dtype=float)


def _to_world(vertices: np.ndarray, faces: np.ndarray, affine: np.ndarray) -> trimesh.Trimesh:
    world = vertices.astype(np.float64) @ affine[:3, :3].T + affine[:3, 3]
    if np.linalg.det(affine[:3, :3]) < 0:  # a mirroring affine turns faces inside out
        faces = faces[:, ::-1]
    return trimesh.Trimesh(world, faces.astype(np.int64), process=False)
