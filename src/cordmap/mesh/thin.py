"""Thin structures (nerve roots thinner than a voxel) as connected tubes, not dust.

Marching cubes joins two voxels of a label only when they share a face: a root drawn as
a one-voxel-wide diagonal line of voxels that touch at an edge or a corner comes out as
a string of separate beads. For such labels cordmap meshes a finer copy instead:

1. the label's bounding box is upsampled by an integer factor with nearest-neighbour
   interpolation (each voxel becomes a block of factor³ fine voxels, so the voxel volume
   is unchanged), and
2. every pair of label voxels that touch only at an edge or a corner is *bridged*: the
   fine voxels around the point where the two blocks meet are added (a box two fine
   voxels wide across the junction), so the blocks share faces.

Marching cubes of that fine mask is one connected tube per 26-connected piece of the
label; Taubin smoothing (see `cordmap.mesh.refine`) then rounds it. The bridges add a
little volume (a quarter of a coarse voxel per corner junction at factor 2).
"""

from __future__ import annotations

import itertools

import numpy as np

#: A label is thin when fewer than this fraction of its voxels are interior
#: (all six face neighbours carry the same label), e.g. a tube three voxels across.
THIN_INTERIOR_FRACTION = 0.2

#: Neighbour offsets that touch only at an edge or a corner (one of each +/- pair, so
#: that every unordered pair of voxels is visited once).
_DIAGONAL_OFFSETS = [d for d in itertools.product((-1, 0, 1), repeat=3)
                     if d > (0, 0, 0) and sum(map(abs, d)) >= 2]


def thin_ids(array: np.ndarray, ids) -> list[int]:
    """The ids among `ids` whose voxels are mostly on the label's surface."""
    ids = [int(i) for i in ids]
    if not ids:
        return []
    interior = np.ones(array.shape, dtype=bool)
    interior[[0, -1], :, :] = interior[:, [0, -1], :] = interior[:, :, [0, -1]] = False
    core = (slice(1, -1),) * 3
    for axis in range(3):
        for step in (-1, 1):
            shifted = [slice(1, -1)] * 3
            shifted[axis] = slice(1 + step, array.shape[axis] - 1 + step)
            interior[core] &= array[core] == array[tuple(shifted)]
    top = max(ids) + 1
    values = array[array < top] if array.max() >= top else array.ravel()
    total = np.bincount(values.ravel(), minlength=top)
    inner = array[interior]
    inner_counts = np.bincount(inner[inner < top], minlength=top)
    return [i for i in ids if inner_counts[i] < THIN_INTERIOR_FRACTION * total[i]]


def bridged_upsample(mask: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upsampling of a boolean mask, with edge/corner contacts bridged.

    Fine voxel ``f`` covers coarse continuous index ``(f + 0.5) / factor - 0.5``.
    """
    fine = mask
    for axis in range(3):
        fine = np.repeat(fine, factor, axis=axis)
    fine = np.ascontiguousarray(fine)
    points = np.argwhere(mask)
    shape = np.array(mask.shape)
    for offset in _DIAGONAL_OFFSETS:
        _bridge(fine, mask, points, np.array(offset), shape, factor)
    return fine


def _bridge(fine, mask, points, step, shape, factor) -> None:
    neighbours = points + step
    inside = np.all((neighbours >= 0) & (neighbours < shape), axis=1)
    pairs = points[inside][mask[tuple(neighbours[inside].T)]]
    if not len(pairs):
        return
    # junction of the two blocks, in fine continuous indices; bridge = voxels around it
    junction = factor * (pairs + step / 2 + 0.5) - 0.5
    low = np.floor(junction).astype(int)
    high = np.ceil(junction).astype(int)
    for corner in itertools.product((0, 1), repeat=3):
        index = np.where(np.array(corner, bool), high, low)
        fine[tuple(index.T)] = True
