"""Thin structures (nerve roots thinner than a voxel) as connected tubes, not dust.

Marching cubes joins two voxels of a label only through shared faces: a root drawn as a
one-voxel-wide diagonal line, whose voxels touch at an edge or a corner only, comes out
as a string of separate beads. A label is *thin* when fewer than
`THIN_INTERIOR_FRACTION` of its voxels are interior (all six face neighbours in the
label) and some of its voxels touch only diagonally, with no path through shared faces
inside the 2x2x2 block that holds both. Such a label is meshed on a finer grid instead:

1. its bounding box is upsampled by an integer factor with nearest-neighbour
   interpolation (each voxel becomes a block of factor³ fine voxels, so the voxel volume
   is kept), and
2. each diagonal-only contact is *bridged*: the fine voxels around the point where the
   two blocks meet are added (a box two fine voxels wide across the junction), so the
   blocks share faces.

Marching cubes of the fine mask is one connected tube per 26-connected piece of the
label, and Taubin smoothing (`cordmap.mesh.refine`) then rounds it. A bridge adds up to
6 fine voxels (0.75 voxel at factor 2, 0.22 at factor 3) per contact.
"""

from __future__ import annotations

import itertools

import numpy as np

#: A label is thin when fewer than this fraction of its voxels are interior,
#: e.g. a tube up to three voxels across or a sheet up to two voxels thick.
THIN_INTERIOR_FRACTION = 0.2

#: Offsets to the 26-neighbours that touch only at an edge or a corner, one of each
#: +/- pair, so that every unordered pair of voxels is visited once.
DIAGONAL_OFFSETS = [d for d in itertools.product((-1, 0, 1), repeat=3)
                    if d > (0, 0, 0) and sum(map(abs, d)) >= 2]


def is_thin(mask: np.ndarray) -> bool:
    """True when the boolean `mask` needs bridging to mesh as connected pieces."""
    padded = np.pad(mask, 1)
    interior = mask.copy()
    for axis in range(3):
        for step in (-1, 1):
            interior &= _shifted(padded, _unit(axis, step))
    if interior.sum() >= THIN_INTERIOR_FRACTION * mask.sum():
        return False
    return any(_diagonal_only(padded, mask, offset).any() for offset in DIAGONAL_OFFSETS)


def bridged_upsample(mask: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upsampling of a boolean mask with its diagonal-only contacts
    bridged. Fine voxel f covers coarse continuous index ``(f + 0.5) / factor - 0.5``."""
    fine = mask
    for axis in range(3):
        fine = np.repeat(fine, factor, axis=axis)
    fine = np.ascontiguousarray(fine)
    padded = np.pad(mask, 1)
    for offset in DIAGONAL_OFFSETS:
        pairs = np.argwhere(_diagonal_only(padded, mask, offset))
        if not len(pairs):
            continue
        # where the two blocks meet, in fine continuous indices; bridge = voxels around it
        junction = factor * (pairs + np.array(offset) / 2 + 0.5) - 0.5
        low, high = np.floor(junction).astype(int), np.ceil(junction).astype(int)
        for corner in itertools.product((False, True), repeat=3):
            fine[tuple(np.where(corner, high, low).T)] = True
    return fine


def _diagonal_only(padded: np.ndarray, mask: np.ndarray, offset) -> np.ndarray:
    """Voxels p of `mask` whose neighbour p + offset is in the mask, with no path of
    face steps between the two through mask voxels of their 2x2x2 block."""
    both = mask & _shifted(padded, offset)
    if not both.any():
        return both
    steps = [_unit(axis, offset[axis]) for axis in range(3) if offset[axis]]
    connected = np.zeros_like(both)
    for order in itertools.permutations(steps):
        path = np.ones_like(both)
        position = np.zeros(3, dtype=int)
        for step in order[:-1]:  # the intermediate voxels of this path
            position += step
            path &= _shifted(padded, position)
        connected |= path
    return both & ~connected


def _shifted(padded: np.ndarray, offset) -> np.ndarray:
    """The mask (padded by 1 with False) seen from p + offset, for every p of the mask."""
    return padded[tuple(slice(1 + o, padded.shape[a] - 1 + o) for a, o in enumerate(offset))]


def _unit(axis: int, step: int) -> np.ndarray:
    unit = np.zeros(3, dtype=int)
    unit[axis] = step
    return unit
