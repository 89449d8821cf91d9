"""Synthetic cords whose planning answers are known analytically (tests, benchmarks).

A cord is a tube of radius `radius(s)` around a centreline that runs caudally from the top
of the cord, either straight down the S axis or along a circular arc of radius
`curvature_mm` bending anteriorly (centreline point at angle t: A = R (1 - cos t),
S = top - R sin t, arc length s = R t). Each voxel whose centre lies in the tube takes the
label of the segment holding its arc length; stand-in vertebrae are slabs 8..14 mm anterior
to the centreline spanning given arc lengths. For a tube of constant radius the volume
between two arc lengths is proportional to their difference (Pappus), so coverage is exact
on paper.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from cordmap.protocol.levels import pam50_segment, totalspineseg_vertebra
from cordmap.protocol.schema import LabelSchema
from cordmap.volume import LabelVolume

#: Anterior distance (mm) of the stand-in vertebrae from the centreline.
VERTEBRA_DEPTH_MM = (8.0, 14.0)
VERTEBRA_HALF_WIDTH_MM = 6.0


def synthetic_cord(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    segments: list[tuple[str, float]],
    radius: float | Callable[[np.ndarray], np.ndarray] = 4.0,
    top_mm: float | None = None,
    curvature_mm: float | None = None,
    vertebrae: Sequence[tuple[str, float, float]] = (),
    schema: LabelSchema | None = None,
) -> LabelVolume:
    """A label volume of a tube cord split into `segments` ((name, length mm), rostral
    first) and `vertebrae` ((name, first, last arc length mm)).

    Voxel k spans S = [k dz, (k + 1) dz]; the centreline passes through R = A = 0 at the
    top; `top_mm` (S of the cord's rostral end) defaults to the top of the image.
    """
    schema = schema or LabelSchema.load()
    dx, dy, dz = spacing
    nx, ny, nz = shape
    top = nz * dz if top_mm is None else top_mm
    affine = np.diag([dx, dy, dz, 1.0])
    affine[:3, 3] = (-(nx - 1) / 2 * dx, -(ny - 1) / 2 * dy, dz / 2)
    radius_of = radius if callable(radius) else (lambda s: np.full_like(s, float(radius)))
    length = sum(length for _, length in segments)
    reach = float(np.max(radius_of(np.linspace(0, length, 256)))) + VERTEBRA_DEPTH_MM[1] + 1
    bend = 0.0 if curvature_mm is None else curvature_mm * (1 - np.cos(length / curvature_mm))
    i = _indices(nx, dx, affine[0, 3], -reach, reach)
    j = _indices(ny, dy, affine[1, 3], -reach, reach + bend)
    x, y, z = np.meshgrid(
        i * dx + affine[0, 3], j * dy + affine[1, 3], np.arange(nz) * dz + dz / 2, indexing="ij"
    )
    s, rho, depth = _tube_coordinates(x, y, z, top, curvature_mm)
    along = (s >= 0) & (s <= length)

    box = np.zeros(x.shape, dtype=np.uint16)
    ends = np.cumsum([length for _, length in segments])
    names = [name for name, _ in segments]
    which = np.minimum(np.searchsorted(ends, s, side="right"), len(names) - 1)
    ids = np.array([100 + pam50_segment(name) for name in names], dtype=np.uint16)
    cord = along & (rho <= radius_of(np.clip(s, 0, length)))
    box[cord] = ids[which[cord]]
    for name, first, last in vertebrae:
        inside = (
            (s >= first)
            & (s <= last)
            & (depth >= VERTEBRA_DEPTH_MM[0])
            & (depth <= VERTEBRA_DEPTH_MM[1])
            & (np.abs(x) <= VERTEBRA_HALF_WIDTH_MM)
        )
        box[inside & (box == 0)] = totalspineseg_vertebra(name)
    array = np.zeros(shape, dtype=np.uint16)
    array[np.ix_(i, j, np.arange(nz))] = box
    return LabelVolume(array, affine, schema=schema)


def _indices(n, step, origin, low, high) -> np.ndarray:
    """Voxel indices whose centre lies within [low, high] mm (clipped to the grid)."""
    first = max(int(np.floor((low - origin) / step)), 0)
    last = min(int(np.ceil((high - origin) / step)), n - 1)
    return np.arange(first, last + 1)


def _tube_coordinates(x, y, z, top, curvature_mm):
    """Arc length, distance from the centreline and anterior depth of each point."""
    if curvature_mm is None:
        return top - z, np.hypot(x, y), y
    centre_y = curvature_mm
    in_plane = np.hypot(y - centre_y, z - top)
    angle = np.arctan2(top - z, centre_y - y)
    s = curvature_mm * angle
    rho = np.hypot(x, in_plane - curvature_mm)
    return s, rho, curvature_mm - in_plane
