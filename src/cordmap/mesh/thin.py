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
DIAGONAL_OFFSETS = [np.array(d) for d in itertools.product((-1, 0, 1), repeat=3)
                    if d > (0, 0, 0) and sum(map(abs, d)) >= 2]
_FACE_STEPS = [np.array(d) for d in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0),
                                     (0, 0, 1), (0, 0, -1))]


def is_thin(padded: np.ndarray, points: np.ndarray, label_id) -> bool:
    """True when the label at `points` (flat indices into C-ordered `padded`) needs
    bridging."""
    flat, strides = padded.ravel(), _strides(padded)
    interior = np.ones(len(points), dtype=bool)
    for step in _FACE_STEPS:
        interior &= flat[points + step @ strides] == label_id
    if interior.sum() >= THIN_INTERIOR_FRACTION * len(points):
        return False
    return any(len(_diagonal_only(flat, strides, points, label_id, offset))
               for offset in DIAGONAL_OFFSETS)


def bridge_in_place(padded: np.ndarray, points: np.ndarray, label_id: int, keep_out) -> int:
    """Bridge the diagonal-only contacts of the label at `points` (flat indices) in the
    C-ordered label array `padded` (modified) on the voxel grid; never take voxels of the
    ids in `keep_out`. Returns the number of voxels added."""
    flat, strides = padded.reshape(-1), _strides(padded)  # a view: writes go to `padded`
    kept_out = np.zeros(int(padded.max()) + 1, dtype=bool)  # lookup table by label id
    kept_out[[i for i in keep_out if i != label_id and i < len(kept_out)]] = True
    added = 0
    for offset in DIAGONAL_OFFSETS:
        pairs = _diagonal_only(flat, strides, points, label_id, offset)
        if not len(pairs):
            continue
        paths = [[step @ strides for step in path] for path in _paths(offset)]
        costs = np.stack([sum(_cost(flat[pairs + step], kept_out) for step in path)
                          for path in paths])
        best = np.argmin(costs, axis=0)
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
    for offset in DIAGONAL_OFFSETS:
        pairs = _diagonal_only(flat, strides, points, True, offset)
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


def _diagonal_only(flat, strides, points, label_id, offset) -> np.ndarray:
    """The points p whose neighbour p + offset is in the label, with no path of face
    steps between the two through label voxels of their 2x2x2 block."""
    candidates = points[flat[points + offset @ strides] == label_id]
    if not len(candidates):
        return candidates
    connected = np.zeros(len(candidates), dtype=bool)
    for path in _paths(offset):
        through = np.ones(len(candidates), dtype=bool)
        for step in path:
            through &= flat[candidates + step @ strides] == label_id
        connected |= through
    return candidates[~connected]
