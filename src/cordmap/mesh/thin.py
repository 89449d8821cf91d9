"""Thin structures (nerve roots thinner than a voxel) as connected tubes, not dust.

Marching cubes joins two voxels of a label only through shared faces: a root drawn as a
one-voxel-wide diagonal line, whose voxels touch at an edge or a corner only, comes out
as a string of separate beads. A label is *thin* when fewer than
`THIN_INTERIOR_FRACTION` of its voxels are interior (all six face neighbours in the
label) and some of its voxels touch only diagonally: no path of face steps through the
label joins them inside the 2x2x2 block that holds both. Each such contact is *bridged*
so that marching cubes gives one connected tube per 26-connected piece of the label;
Taubin smoothing (`cordmap.mesh.refine`) then rounds the tube. Two ways, chosen by
`thin_upsample`:

- 1 (default, fast): on the voxel grid. The one or two voxels of the face path through
  the block that are least in use (background first; never another thin label) join
  the label, and the label is meshed in zmesh's single pass with all the others. A
  bridge adds one voxel per edge contact, two per corner contact.
- factor >= 2 (finer tubes): the label's bounding box is upsampled by nearest neighbour
  (each voxel a block of factor³ fine voxels, so the voxel volume is kept) and the fine
  voxels around the point where two blocks meet are added (a box two fine voxels wide:
  0.75 voxel per corner contact at factor 2, 0.22 at factor 3); the label is meshed on
  its own. It gives factor² as many triangles to simplify.

The functions work on the label's voxel list (flat indices into a C-ordered array padded
by one voxel of background), so their cost follows the number of voxels of the label,
not the size of its bounding box.
"""

from __future__ import annotations

import itertools

import numpy as np

#: A label is thin when fewer than this fraction of its voxels are interior,
#: e.g. a tube up to three voxels across or a sheet up to two voxels thick.
THIN_INTERIOR_FRACTION = 0.2

#: Offsets to the 26-neighbours that touch only at an edge or a corner, one of each
#: +/- pair, so that every unordered pair of voxels is visited once.
DIAGONAL_OFFSETS = [
    np.array(d)
    for d in itertools.product((-1, 0, 1), repeat=3)
    if d > (0, 0, 0) and sum(map(abs, d)) >= 2
]
_FACE_STEPS = [
    np.array(d) for d in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1))
]


def surface_voxels(padded: np.ndarray, points: np.ndarray, label_id) -> int:
    """Number of the label's voxels (`points`, flat indices into C-ordered `padded`) with
    a face neighbour outside the label: a measure of its surface (and of its mesh's size)."""
    flat, strides = padded.ravel(), _strides(padded)
    interior = np.ones(len(points), dtype=bool)
    for step in _FACE_STEPS:
        interior &= flat[points + step @ strides] == label_id
    return len(points) - int(np.count_nonzero(interior))


def is_thin(padded: np.ndarray, points: np.ndarray, label_id, surface: int) -> bool:
    """True when the label at `points` (flat indices into C-ordered `padded`), with
    `surface` surface voxels (`surface_voxels`), needs bridging."""
    if len(points) - surface >= THIN_INTERIOR_FRACTION * len(points):
        return False
    flat, strides = padded.ravel(), _strides(padded)
    return any(
        len(_diagonal_only(flat, strides, points, label_id, offset, paths))
        for offset, paths in _DIAGONALS
    )


def bridge_in_place(padded: np.ndarray, points: dict, thin_ids) -> int:
    """Bridge the diagonal-only contacts of each label of `points` ({label id: flat
    indices}) in the C-ordered label array `padded` (modified) on the voxel grid; never
    take voxels of another label of `thin_ids`. Returns the number of voxels added."""
    flat, strides = padded.reshape(-1), _strides(padded)  # a view: writes go to `padded`
    kept_out = np.zeros(int(padded.max()) + 1, dtype=bool)  # lookup table by label id
    kept_out[[i for i in thin_ids if i < len(kept_out)]] = True
    added = 0
    for label_id, label_points in points.items():
        kept_out[label_id] = False
        for offset, paths in _DIAGONALS:
            pairs = _diagonal_only(flat, strides, label_points, label_id, offset, paths)
            if len(pairs):
                added += _bridge(
                    flat, pairs, label_id, [path @ strides for path in paths], kept_out
                )
        kept_out[label_id] = label_id in thin_ids
    return added


def _bridge(flat, pairs, label_id, paths, kept_out) -> int:
    """Join each pair through its cheapest face path (flat steps `paths`)."""
    costs = np.stack([sum(_cost(flat[pairs + step], kept_out) for step in path) for path in paths])
    best = np.argmin(costs, axis=0)
    added = 0
    for number, path in enumerate(paths):
        chosen = pairs[best == number]
        for step in path:
            index = chosen + step
            index = index[~kept_out[flat[index]]]
            added += int(np.count_nonzero(flat[index] != label_id))
            flat[index] = label_id
    return added


def bridged_upsample(mask: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upsampling of a boolean mask with its diagonal-only contacts
    bridged. Fine voxel f covers coarse continuous index ``(f + 0.5) / factor - 0.5``."""
    fine = mask
    for axis in range(3):
        fine = np.repeat(fine, factor, axis=axis)
    fine = np.ascontiguousarray(fine)
    padded = np.pad(mask, 1)
    flat, strides = padded.ravel(), _strides(padded)
    points = np.flatnonzero(flat)
    for offset, paths in _DIAGONALS:
        pairs = _diagonal_only(flat, strides, points, True, offset, paths)
        if not len(pairs):
            continue
        pairs = np.column_stack(np.unravel_index(pairs, padded.shape)) - 1  # mask indices
        # where the two blocks meet, in fine continuous indices; bridge = voxels around it
        junction = factor * (pairs + offset / 2 + 0.5) - 0.5
        low, high = np.floor(junction).astype(int), np.ceil(junction).astype(int)
        for corner in itertools.product((False, True), repeat=3):
            fine[tuple(np.where(corner, high, low).T)] = True
    return fine


def _strides(array: np.ndarray) -> np.ndarray:
    """Flat-index step of one voxel along each axis of a C-ordered array."""
    return np.array([array.shape[1] * array.shape[2], array.shape[2], 1])


def _cost(values: np.ndarray, kept_out: np.ndarray) -> np.ndarray:
    """0 for background, 1 for another non-thin label, 100 for a label kept out."""
    return (values != 0).astype(int) + 100 * kept_out[values]


def _paths(offset) -> list[list[np.ndarray]]:
    """The intermediate voxels (offsets from p) of each face path from p to p + offset."""
    steps = [np.eye(3, dtype=int)[axis] * offset[axis] for axis in range(3) if offset[axis]]
    return [list(itertools.accumulate(order[:-1])) for order in itertools.permutations(steps)]


def _diagonal_only(flat, strides, points, label_id, offset, paths) -> np.ndarray:
    """The points p whose neighbour p + offset is in the label, with no path of face
    steps between the two (`paths`, from `_paths(offset)`) through label voxels of their
    2x2x2 block."""
    candidates = points[flat[points + offset @ strides] == label_id]
    if not len(candidates):
        return candidates
    connected = np.zeros(len(candidates), dtype=bool)
    for path in paths:
        through = np.ones(len(candidates), dtype=bool)
        for step in path @ strides:
            through &= flat[candidates + step] == label_id
        connected |= through
    return candidates[~connected]


#: Each diagonal offset with the intermediate voxels of its face paths, as arrays
#: (path, step, axis).
_DIAGONALS = [(offset, np.array(_paths(offset))) for offset in DIAGONAL_OFFSETS]
