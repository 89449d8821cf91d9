"""Sample the phantom's analytic anatomy at the voxel centres of a grid.

A grid is a shape and a voxel-to-RAS+ affine whose first axis runs along x (left-right)
alone, as every canonical axial or sagittal acquisition does; its other two axes may be
tilted in the sagittal plane (slices angled along a disc, say). Then a voxel's u is its x
and its (v, s) depend only on its (j, k), so the curvilinear coordinates are computed on
one 2D plane and every shape is painted as runs of |u| per (j, k), inside the bounding
box of its (j, k) footprint: fast enough for 48 x 512 x 512 voxels.

Painting order (later wins): soft tissues, vertebrae and discs, epidural fat (which clears
the canal), CSF, roots, cord. So roots never lie inside the cord, and the cord's label at a
voxel is exactly the analytic cord's.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from cordmap.anatomy.phantom_geometry import (
    ARCH_THICKNESS,
    BODY_SEMI_AXES,
    CANAL_SEMI_AXES,
    SPINOUS_LENGTH,
    TRANSVERSE_LENGTH,
    PhantomGeometry,
)
from cordmap.errors import CordmapError

EVERYWHERE = 1e9  # half-width (mm) of a shape that spans every u


class Tissue(IntEnum):
    """Tissue classes of the image (several labels share one, soft tissues have none)."""

    AIR = 0
    SOFT = 1
    FAT = 2
    MUSCLE = 3
    VESSEL = 4
    BONE = 5
    DISC = 6
    CSF = 7
    ROOT = 8
    CORD = 9


@dataclass(frozen=True, eq=False)
class Grid:
    """Voxel centres to sample: `shape` and a 4x4 voxel-to-RAS+ mm `affine`."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    def __post_init__(self):
        a = np.asarray(self.affine, dtype=float)
        object.__setattr__(self, "affine", a)
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        if a.shape != (4, 4) or min(self.shape) < 1:
            raise CordmapError("a phantom grid needs a 3D shape and a 4x4 affine")
        if np.abs(a[0, 1:3]).max() > 1e-6 or np.abs(a[1:3, 0]).max() > 1e-6 or a[0, 0] <= 0:
            raise CordmapError(
                "the phantom samples grids whose first axis runs left to right alone "
                "(canonical RAS+ axial or sagittal); reorient the grid to RAS+ first"
            )

    def x(self) -> np.ndarray:
        """World x (mm) of the voxel centres along the first axis."""
        return self.affine[0, 0] * np.arange(self.shape[0]) + self.affine[0, 3]

    def yz(self) -> tuple[np.ndarray, np.ndarray]:
        """World y and z (mm) of the voxel centres on the (j, k) plane."""
        j, k = np.meshgrid(np.arange(self.shape[1]), np.arange(self.shape[2]), indexing="ij")
        a = self.affine
        return a[1, 1] * j + a[1, 2] * k + a[1, 3], a[2, 1] * j + a[2, 2] * k + a[2, 3]


def rasterise(geometry: PhantomGeometry, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Label ids (uint16, shipped protocol) and tissue classes (uint8) at the voxel centres."""
    canvas = _Canvas(geometry, grid)
    _soft_tissues(canvas, geometry)
    _column(canvas, geometry)
    _canal(canvas, geometry)
    for root in geometry.roots:
        canvas.tube(root.points, root.radius, root.label_id, Tissue.ROOT)
    _cord(canvas, geometry)
    return canvas.labels, canvas.tissue


class _Canvas:
    """Label and tissue arrays with the curvilinear coordinates of their voxel centres."""

    def __init__(self, geometry: PhantomGeometry, grid: Grid):
        self.x = grid.x()
        self.v, self.s = geometry.curvilinear(*grid.yz())
        self.labels = np.zeros(grid.shape, dtype=np.uint16)
        self.tissue = np.full(grid.shape, Tissue.SOFT, dtype=np.uint8)

    def fill(self, mask, high, tissue, label=None, low=None, centre=0.0):
        """Paint voxels whose (j, k) is in `mask` and low < |u - centre| <= high."""
        box = _footprint(mask)
        if box is None:
            return
        m = mask[box]
        high = np.broadcast_to(high, mask.shape)[box]
        reach = float(high[m].max())
        i0 = int(np.searchsorted(self.x, centre - reach, "left"))
        i1 = int(np.searchsorted(self.x, centre + reach, "right"))
        if i1 <= i0:
            return
        au = np.abs(self.x[i0:i1] - centre)[:, None, None]
        inside = m & (au <= high)
        if low is not None:
            inside &= au > np.broadcast_to(low, mask.shape)[box]
        self._paint((slice(i0, i1), *box), inside, tissue, label)

    def tube(self, points, radius, label, tissue):
        """Paint the voxels within `radius` of a polyline in (u, v, s)."""
        outer = self._near(self.v, self.s, points.min(0) - radius, points.max(0) + radius)
        if outer is None:
            return
        v, s = self.v[outer], self.s[outer]
        for a, b in zip(points[:-1], points[1:]):
            lo, hi = np.minimum(a, b) - radius, np.maximum(a, b) + radius
            box = self._near(v, s, lo, hi)
            i0 = int(np.searchsorted(self.x, lo[0], "left"))
            i1 = int(np.searchsorted(self.x, hi[0], "right"))
            if box is None or i1 <= i0:
                continue
            d = b - a
            du = (self.x[i0:i1] - a[0])[:, None, None]
            dv, ds = (v[box] - a[1])[None], (s[box] - a[2])[None]
            t = np.clip((du * d[0] + dv * d[1] + ds * d[2]) / max(d @ d, 1e-12), 0.0, 1.0)
            dist2 = (du - t * d[0]) ** 2 + (dv - t * d[1]) ** 2 + (ds - t * d[2]) ** 2
            region = (
                slice(i0, i1),
                *(_shift(inner, start.start) for inner, start in zip(box, outer)),
            )
            self._paint(region, dist2 <= radius**2, tissue, label)

    @staticmethod
    def _near(v, s, lo, hi):
        """Bounding box of the (j, k) cells within [lo, hi] in v and s, or None."""
        return _footprint((v >= lo[1]) & (v <= hi[1]) & (s >= lo[2]) & (s <= hi[2]))

    def _paint(self, region, inside, tissue, label):
        self.tissue[region][inside] = tissue
        if label is None:
            return
        target = self.labels[region]
        if np.ndim(label):
            target[inside] = np.broadcast_to(label[region[1:]], inside.shape)[inside]
        else:
            target[inside] = label


def _shift(inner: slice, offset: int) -> slice:
    return slice(inner.start + offset, inner.stop + offset)


def _footprint(mask):
    """Bounding slices of the True cells of a 2D mask, or None."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _ellipse(v, centre, half_depth, half_width):
    """(mask, half-width in u) of an elliptic cross-section centred at v = `centre`."""
    half_depth = np.maximum(half_depth, 1e-9)
    w = 1.0 - ((v - centre) / half_depth) ** 2
    return w >= 0.0, half_width * np.sqrt(np.clip(w, 0.0, None))


def _between(s, start, stop):
    return (s >= start) & (s <= stop)


def _soft_tissues(c: _Canvas, g: PhantomGeometry):
    size = g.parameters.size
    _, b_canal = g.canal_semi_axes(c.s)
    skin = -72.0 * size
    c.fill(c.v < skin, EVERYWHERE, Tissue.AIR)
    c.fill((c.v >= skin) & (c.v < skin + 14.0 * size), EVERYWHERE, Tissue.FAT)
    mask, half = _ellipse(c.v, -(b_canal + ARCH_THICKNESS + 14.0 * size), 15.0 * size, 19.0 * size)
    for side in (-1.0, 1.0):
        c.fill(mask, half, Tissue.MUSCLE, centre=side * 22.0 * size)
    lumbar = _between(c.s, g.vertebra("L1").superior, g.vertebrae[-1].superior + 20.0)
    mask, half = _ellipse(c.v, b_canal + 16.0 * size, 13.0 * size, 11.0 * size)
    for side in (-1.0, 1.0):
        c.fill(mask & lumbar, half, Tissue.MUSCLE, centre=side * 32.0 * size)
    for centre_u, centre_v, radius, last in ((-14.0, 55.0, 11.0, "L4"), (16.0, 52.0, 12.0, "L5")):
        mask, half = _ellipse(c.v, centre_v * size, radius * size, radius * size)
        c.fill(mask & (c.s <= g.vertebra(last).middle), half, Tissue.VESSEL, centre=centre_u * size)


def _column(c: _Canvas, g: PhantomGeometry):
    """Vertebrae (neural arch, processes, body) and the discs between them."""
    size = g.parameters.size
    t = ARCH_THICKNESS
    for index, vert in enumerate(g.vertebrae):
        a_c, b_c = (x * size for x in CANAL_SEMI_AXES[vert.name])
        a_b, b_b = (x * size for x in BODY_SEMI_AXES[vert.name])
        h, sacrum = vert.length, vert.name == "S"
        below = 0.0 if sacrum else g.discs[index].length
        outer, out_half = _ellipse(c.v, 0.0, b_c + t, a_c + t)
        inner, in_half = _ellipse(c.v, 0.0, b_c, a_c)
        hole = np.where(inner, in_half, -1.0)
        ring = outer & (c.v <= b_c)
        arch_end = vert.inferior if sacrum else vert.superior + 0.55 * h
        c.fill(
            ring & _between(c.s, vert.superior + 1.5, arch_end),
            out_half,
            Tissue.BONE,
            vert.label_id,
            low=hole,
        )
        lamina = (
            ring
            & (c.v < -0.35 * b_c)
            & _between(c.s, vert.superior + 0.3 * h, vert.inferior + 0.7 * below)
        )
        c.fill(lamina, out_half, Tissue.BONE, vert.label_id, low=hole)
        spinous = _between(c.v, -(b_c + t + SPINOUS_LENGTH * size), -(b_c + t - 1.0)) & _between(
            c.s, vert.superior + 0.3 * h, vert.inferior + 0.5 * below
        )
        c.fill(spinous, 3.0 * size, Tissue.BONE, vert.label_id)
        if sacrum:
            ala = _between(c.v, -4.0 * size, 24.0 * size) & _between(
                c.s, vert.superior + 2.0, vert.inferior
            )
            c.fill(ala, 50.0 * size, Tissue.BONE, vert.label_id, low=a_c + t - 1.0)
        else:
            level = -6.0 * size if vert.name.startswith("T") else -1.0 * size
            process = _between(c.v, level - 3.5, level + 3.5) & _between(
                c.s, vert.superior + 0.15 * h, vert.superior + 0.45 * h
            )
            c.fill(
                process,
                a_c + t + TRANSVERSE_LENGTH[vert.name] * size,
                Tissue.BONE,
                vert.label_id,
                low=a_c + t - 1.0,
            )
        body, body_half = _ellipse(c.v, b_c + b_b, b_b, a_b)
        c.fill(
            body & _between(c.s, vert.superior, vert.inferior),
            body_half,
            Tissue.BONE,
            vert.label_id,
        )
    for disc, upper, lower in zip(g.discs, g.vertebrae[:-1], g.vertebrae[1:]):
        a_b, b_b = (
            0.5 * (x + y) * size
            for x, y in zip(BODY_SEMI_AXES[upper.name], BODY_SEMI_AXES[lower.name])
        )
        b_c = 0.5 * (CANAL_SEMI_AXES[upper.name][1] + CANAL_SEMI_AXES[lower.name][1]) * size
        mask, half = _ellipse(c.v, b_c + b_b, b_b, a_b)
        c.fill(mask & _between(c.s, disc.superior, disc.inferior), half, Tissue.DISC, disc.label_id)


def _canal(c: _Canvas, g: PhantomGeometry):
    """Epidural fat fills the bony canal; the dural sac inside it holds CSF (label 2)."""
    a, b = g.canal_semi_axes(c.s)
    mask, half = _ellipse(c.v, 0.0, b, a)
    c.fill(mask, half, Tissue.FAT, 0)
    a, b = g.sac_semi_axes(c.s)
    mask, half = _ellipse(c.v, 0.0, b, a)
    c.fill(mask & (b > 0), half, Tissue.CSF, 2)


def _cord(c: _Canvas, g: PhantomGeometry):
    """The cord, labelled by segment (1 above T9, 117..130, conus 60 at the tip)."""
    a, b = g.cord_semi_axes(c.s)
    mask, half = _ellipse(c.v, 0.0, b, a)
    mask &= b > 0
    bounds = [seg.superior for seg in g.segments] + [g.conus.superior]
    ids = np.array([1] + [seg.label_id for seg in g.segments] + [g.conus.label_id], np.uint16)
    label = ids[np.searchsorted(bounds, c.s, side="right")]
    c.fill(mask, half, Tissue.CORD, label)


def axial_grid(
    geometry: PhantomGeometry,
    slice_thickness: float = 3.0,
    pixel_mm: float = 0.8,
    fov_mm: tuple[float, float] = (160.0, 160.0),
    n_slices: int | None = None,
) -> Grid:
    """Axial slices (thickness = spacing) with square pixels, centred on the canal.

    Without `n_slices` the slab covers the whole model (T9 to the S1 part of the sacrum);
    with it, the slab is centred between the top of the enlargement and the conus tip.
    """
    _require_positive(slice_thickness=slice_thickness, pixel_mm=pixel_mm, fov_mm=min(fov_mm))
    if n_slices is None:
        top = geometry.centre(geometry.model_top)[2] + 5.0
        bottom = geometry.centre(geometry.model_bottom)[2] - 5.0
        n_slices = int(np.ceil((top - bottom) / slice_thickness))
    else:
        _require_positive(n_slices=n_slices)
        middle = geometry.centre(0.5 * (geometry.segment("L1").superior + geometry.tip))[2]
        bottom = middle - 0.5 * n_slices * slice_thickness
    nx, ny = (max(int(round(f / pixel_mm)), 1) for f in fov_mm)
    y_centre = _canal_y(geometry, bottom, bottom + n_slices * slice_thickness)
    affine = np.diag([pixel_mm, pixel_mm, slice_thickness, 1.0])
    affine[:3, 3] = (
        -0.5 * (nx - 1) * pixel_mm,
        y_centre - 0.5 * (ny - 1) * pixel_mm,
        bottom + 0.5 * slice_thickness,
    )
    return Grid((nx, ny, int(n_slices)), affine)


def sagittal_grid(
    geometry: PhantomGeometry,
    slice_thickness: float = 3.0,
    pixel_mm: float = 0.8,
    fov_mm: tuple[float, float] = (160.0, 360.0),
    n_slices: int = 15,
) -> Grid:
    """Sagittal slices through the midline: `fov_mm` is (anterior-posterior, superior-inferior)."""
    _require_positive(
        slice_thickness=slice_thickness, pixel_mm=pixel_mm, fov_mm=min(fov_mm), n_slices=n_slices
    )
    ny, nz = (max(int(round(f / pixel_mm)), 1) for f in fov_mm)
    middle = geometry.centre(0.5 * (geometry.model_top + geometry.model_bottom))[2]
    y_centre = _canal_y(geometry, middle - 0.5 * fov_mm[1], middle + 0.5 * fov_mm[1])
    affine = np.diag([slice_thickness, pixel_mm, pixel_mm, 1.0])
    affine[:3, 3] = (
        -0.5 * (n_slices - 1) * slice_thickness,
        y_centre - 0.5 * (ny - 1) * pixel_mm,
        middle - 0.5 * (nz - 1) * pixel_mm,
    )
    return Grid((int(n_slices), ny, nz), affine)


def _canal_y(geometry: PhantomGeometry, z_low: float, z_high: float) -> float:
    """Mean y of the canal centreline between two heights (the grid's y centre)."""
    s = np.linspace(geometry.model_top - 300.0, geometry.model_bottom + 200.0, 2001)
    points = geometry.centre(s)
    inside = (points[:, 2] >= z_low) & (points[:, 2] <= z_high)
    return float(points[inside, 1].mean()) if inside.any() else float(points[:, 1].mean())


_NAMES = {
    "slice_thickness": "slice thickness (`slice_thickness`, mm)",
    "pixel_mm": "pixel size (`pixel_mm`, mm)",
    "fov_mm": "field of view (mm)",
    "n_slices": "number of slices (`n_slices`)",
}


def _require_positive(**values):
    for name, value in values.items():
        if not value > 0:
            raise CordmapError(f"the phantom's {_NAMES[name]} must be positive, got {value}")
