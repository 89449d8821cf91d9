"""Cord geometry along its own length: centreline, arc length, cross-sectional area.

Everything in planning is measured along the cord, never along the image's S axis, so that
a curved cord (lordosis, scoliosis, a tilted acquisition) is handled. Arc length `s` is in
mm from the rostral end of the cord in the field of view and grows caudally.

Method:

1. Centreline, first pass: the centroid of the cord's voxels in each axial slice, fitted
   with a smoothing spline parametrised by chord length.
2. Second pass: every cord voxel is projected onto that curve (its closest centreline
   point); the centroids of the voxels in 1-slice-thick bins of arc length - slices
   perpendicular to the cord - are fitted again. This removes the bias of axial slices
   through a strongly curved cord.
3. A voxel belongs to the arc length of its closest centreline point. So that coverage does
   not jump by whole 3 mm slices, each voxel is split into sub-voxels of at most 1 mm per
   axis, and each sub-voxel's volume is spread uniformly over the arc-length interval it
   spans (its width along the cord's tangent; exact for a voxel edge parallel to the cord).
   The volume of any structure between two arc lengths is then an exact piecewise-linear
   function (`ArcVolume`).
4. Cross-sectional area at `s` is the cord volume in a short window of arc length divided
   by the window's length - the area perpendicular to the centreline.
5. Half-width and half-depth at `s`: those of the ellipse with the same second moments as
   the cord's sub-voxels in the same window, measured in the centreline's frame (right,
   posterior; `Centreline.frame`): 2 sqrt(variance), less each sub-voxel's own spread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage
from scipy.interpolate import splev, splprep
from scipy.spatial import cKDTree

from cordmap.errors import CordmapError
from cordmap.protocol.schema import CORD_CLASSES
from cordmap.volume import LabelVolume

if TYPE_CHECKING:
    from cordmap.planning.results import Placement, Plan

#: Protocol classes whose voxels make up the spinal cord.
#: Protocol classes that mark vertebral levels.
LEVEL_CLASSES = ("vertebra", "disc")
#: Vertebral bodies and discs: the part of their label at least this far (mm) anterior to
#: the cord's centreline.
BODY_DEPTH_MM = 5.0
#: Pieces of a structure smaller than this fraction of its largest piece are ignored.
ISLAND_FRACTION = 0.1
#: In-plane sampling (mm) of the vertebra and disc voxels (their extents along the cord
#: depend on the slices, not on the in-plane resolution).
LEVEL_SAMPLING_MM = 1.0
#: Step (mm) of the dense centreline polyline.
CENTRELINE_STEP_MM = 0.2
#: Refits of the centreline from slabs perpendicular to the previous one.
PERPENDICULAR_PASSES = 2
#: Thinnest slab (mm) of cord whose centroid is a centreline point in those refits.
MIN_SLAB_MM = 2.0
#: Largest sub-voxel edge (mm) when voxels are split along the cord.
SUBVOXEL_MM = 1.0
#: Arc-length window (mm, at least) over which the cross-sectional area is averaged.
CSA_WINDOW_MM = 2.0


@dataclass(frozen=True)
class Centreline:
    """A dense polyline along the cord: arc length `s` (mm), points and unit tangents (RAS+),
    the tangents pointing caudally."""

    s: np.ndarray
    points: np.ndarray
    tangents: np.ndarray
    _tree: cKDTree = field(repr=False, compare=False, default=None)

    def __post_init__(self):
        if self._tree is None:
            object.__setattr__(self, "_tree", cKDTree(self.points))

    @property
    def length(self) -> float:
        return float(self.s[-1] - self.s[0])

    def project(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Arc length of the closest centreline point of each RAS+ point (..., 3), and the
        tangent there. Beyond the ends the centreline is extended along its end tangents."""
        xyz = np.asarray(xyz, dtype=float).reshape(-1, 3)
        _, nearest = self._tree.query(xyz)
        tangent = self.tangents[nearest]
        s = self.s[nearest] + np.einsum("ij,ij->i", xyz - self.points[nearest], tangent)
        return s, tangent

    def point(self, s) -> np.ndarray:
        """RAS+ point(s) at arc length(s) `s` (clamped to the centreline's ends)."""
        s = np.atleast_1d(np.asarray(s, dtype=float))
        return np.stack([np.interp(s, self.s, self.points[:, i]) for i in range(3)], axis=-1)

    def shifted(self, offset: float) -> Centreline:
        """The same curve with arc lengths shifted by `offset` mm."""
        return Centreline(self.s + offset, self.points, self.tangents, self._tree)

    def frame(self, s) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit tangent (caudal), right (the patient's right, +x made perpendicular to the
        cord) and posterior vectors at arc length(s) `s`, each (n, 3)."""
        s = np.atleast_1d(np.asarray(s, dtype=float))
        tangent = np.stack([np.interp(s, self.s, self.tangents[:, i]) for i in range(3)], axis=-1)
        return _frame(tangent)

    def dorsal_strip(
        self, start: float, end: float, width: float, depth: float, step: float = 1.0
    ) -> np.ndarray:
        """A strip lying over the dorsal midline between arc lengths `start` and `end` (mm):
        `width` mm wide, `depth` mm posterior to the centreline, following the curve.
        Returns (n, 2, 3) RAS+ points: the strip's right and left edges at n arc lengths."""
        s = np.linspace(start, end, max(int(np.ceil((end - start) / step)), 1) + 1)
        _, right, posterior = self.frame(s)
        middle = self.point(s) + depth * posterior
        half = (width / 2) * right
        return np.stack([middle + half, middle - half], axis=1)


def _frame(tangent: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tangent, right, posterior) unit vectors from tangents (n, 3)."""
    tangent = tangent / np.linalg.norm(tangent, axis=1, keepdims=True)
    posterior = np.array([0.0, -1.0, 0.0]) + tangent[:, 1:2] * tangent
    posterior /= np.linalg.norm(posterior, axis=1, keepdims=True)
    return tangent, np.cross(posterior, tangent), posterior


class ArcVolume:
    """Volume (mm³) of a structure as a function of arc length along the cord.

    Built from samples at arc lengths `s`, each of volume `weight` spread uniformly over
    [s - half_width, s + half_width]. `cumulative(x)` is the volume at arc length < x,
    exact and piecewise linear, evaluated for many x at once in O(log n) each.
    """

    def __init__(self, s: np.ndarray, half_width: np.ndarray, weight: np.ndarray):
        s = np.asarray(s, dtype=float)
        half_width = np.maximum(np.asarray(half_width, dtype=float), 1e-6)
        weight = np.broadcast_to(np.asarray(weight, dtype=float), s.shape)
        self.samples = (s, half_width, weight)
        self.total = float(weight.sum())
        self.start = float((s - half_width).min()) if s.size else np.nan
        self.end = float((s + half_width).max()) if s.size else np.nan
        rate = weight / (2 * half_width)  # volume per mm of arc length of each sample
        self._ramps = [self._prefix(s - half_width, rate), self._prefix(s + half_width, rate)]

    @classmethod
    def concatenate(cls, volumes: list[ArcVolume]) -> ArcVolume:
        """One ArcVolume holding the samples of several."""
        return cls(*(np.concatenate([v.samples[i] for v in volumes]) for i in range(3)))

    @staticmethod
    def _prefix(knots, rate):
        order = np.argsort(knots, kind="stable")
        knots, rate = knots[order], rate[order]
        return (
            knots,
            np.concatenate([[0.0], np.cumsum(rate)]),
            np.concatenate([[0.0], np.cumsum(rate * knots)]),
        )

    def cumulative(self, x) -> np.ndarray:
        """Volume (mm³) lying at arc length below `x` (scalar or array)."""
        x = np.asarray(x, dtype=float)
        out = np.zeros_like(x)
        for sign, (knots, rate_sum, moment_sum) in zip((1.0, -1.0), self._ramps):
            n = np.searchsorted(knots, x, side="right")
            out += sign * (x * rate_sum[n] - moment_sum[n])
        return np.clip(out, 0.0, self.total)

    def between(self, a, b) -> np.ndarray:
        """Volume (mm³) between arc lengths a and b (a <= b; arrays broadcast)."""
        return np.maximum(self.cumulative(b) - self.cumulative(a), 0.0)


def boundary(upper: ArcVolume, lower: ArcVolume) -> float:
    """Arc length of the boundary between two consecutive structures (e.g. segments T12 and
    L1): where the volume of `upper` caudal to it equals the volume of `lower` rostral to
    it, so that voxels straddling a jagged boundary balance out. Exact for boundaries on
    voxel faces; the middle of the gap when the two do not meet."""
    if upper.end <= lower.start:
        return (upper.end + lower.start) / 2
    low, high = lower.start, upper.end
    while high - low > 1e-6:  # bracket the sign change on a grid of 64, three or four times
        grid = np.linspace(low, high, 64)
        excess = upper.between(grid, upper.end) - lower.between(lower.start, grid)
        first = int(np.argmax(excess <= 0))  # excess falls from >= 0 to <= 0
        low, high = grid[max(first - 1, 0)], grid[first]
    return float((low + high) / 2)


@dataclass(frozen=True)
class CordGeometry:
    """The cord of one label volume measured along its centreline (all lengths in mm)."""

    centreline: Centreline
    cord: ArcVolume  # every cord voxel (classes cord, segment, conus)
    structures: dict[int, ArcVolume]  # cord label id -> its volume along the cord
    levels: dict[int, ArcVolume]  # vertebra / disc id -> its body's volume along the cord
    extents: dict[int, tuple[float, float]]  # cord, vertebra and disc id -> arc-length extent
    csa_s: np.ndarray  # arc lengths at which the cross-section is sampled
    csa: np.ndarray  # cross-sectional area (mm²) perpendicular to the centreline
    half_width: np.ndarray  # mm, left-right, of the moment-equivalent ellipse at csa_s
    half_depth: np.ndarray  # mm, antero-posterior
    cut_rostral: bool  # the cord reaches the image's top (most superior) slice
    cut_caudal: bool  # the cord reaches the image's bottom slice

    @property
    def length(self) -> float:
        """Length of the cord in view, rostral end (s = 0) to its caudal tip."""
        return self.cord.end

    @property
    def conus_tip(self) -> float | None:
        """Arc length of the caudal tip of the cord, or None when the image cuts the cord."""
        return None if self.cut_caudal else self.cord.end


def cord_ids(labels: LabelVolume) -> list[int]:
    """Label ids of the protocol that make up the cord."""
    return [label.id for label in labels.schema.of_class(*CORD_CLASSES)]


def measure_cord(labels: LabelVolume, source: str = "the label volume") -> CordGeometry:
    """Centreline, volumes along it, label extents and cross-sectional area of the cord."""
    cord_voxels, level_voxels = _voxels_by_class(labels)
    ijk, cord_labels = cord_voxels
    if len(np.unique(ijk[:, 2])) < 2:
        raise CordmapError(
            f"{source} has no spinal cord label spanning two or more axial slices "
            f"(ids {', '.join(map(str, cord_ids(labels)[:3]))}, ...); label the cord first "
            "(cordmap import --labels, or cordmap segment)"
        )
    xyz = labels.world(ijk)
    spacing = np.array(labels.spacing)
    centreline = _fit_centreline(xyz, ijk[:, 2], labels.affine, spacing)

    sub_s, sub_half, sub_weight, sub_label, sub_moments = _subvoxel_samples(
        centreline, ijk, cord_labels, labels.affine
    )
    origin = float((sub_s - sub_half).min())
    centreline = centreline.shifted(-origin)
    sub_s = sub_s - origin

    cord = ArcVolume(sub_s, sub_half, sub_weight)
    structures = {}
    order = np.argsort(sub_label, kind="stable")
    ids, starts = np.unique(sub_label[order], return_index=True)
    for label_id, part in zip(ids, np.split(order, starts[1:])):
        structures[int(label_id)] = ArcVolume(sub_s[part], sub_half[part], sub_weight[part])
    extents = {i: (v.start, v.end) for i, v in structures.items()}
    levels = _level_volumes(centreline, labels, *level_voxels)
    extents.update({i: (v.start, v.end) for i, v in levels.items()})

    window = max(CSA_WINDOW_MM, 2 * float(sub_half.max()))
    csa_s = np.arange(0.0, cord.end + 1e-9, 0.5)
    csa = cord.between(csa_s - window / 2, csa_s + window / 2) / window
    half_width, half_depth = _half_axes(sub_s, sub_moments, csa_s, window)
    return CordGeometry(
        centreline,
        cord,
        structures,
        levels,
        extents,
        csa_s,
        csa,
        half_width,
        half_depth,
        cut_rostral=bool((ijk[:, 2] == labels.shape[2] - 1).any()),
        cut_caudal=bool((ijk[:, 2] == 0).any()),
    )


def _voxels_by_class(
    labels: LabelVolume,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, float]]:
    """(indices, ids) of the cord voxels, and (indices, ids, thinning) of the vertebra and
    disc voxels on a grid thinned in-plane to about LEVEL_SAMPLING_MM, one voxel kept in
    `thinning` (one pass over the volume)."""
    flat = labels.array.ravel()
    nonzero = np.flatnonzero(flat)
    values = flat[nonzero]
    lookup = np.zeros(int(values.max(initial=0)) + 1, dtype=np.uint8)
    for structure, code in ((CORD_CLASSES, 1), (LEVEL_CLASSES, 2)):
        for label in labels.schema.of_class(*structure):
            if label.id < len(lookup):
                lookup[label.id] = code
    kind = lookup[values]

    index = nonzero[kind == 1]
    ijk = np.column_stack(np.unravel_index(index, labels.shape))
    keep = _without_islands(ijk, np.zeros(len(ijk), dtype=np.uint8))
    cord = (ijk[keep], flat[index[keep]])

    index = nonzero[kind == 2]
    ijk = np.column_stack(np.unravel_index(index, labels.shape))
    stride = np.maximum(np.floor(LEVEL_SAMPLING_MM / np.array(labels.spacing[:2])), 1)
    keep = (ijk[:, 0] % stride[0] == 0) & (ijk[:, 1] % stride[1] == 0)
    ijk, values = ijk[keep], flat[index[keep]]
    step = np.array([stride[0], stride[1], 1], dtype=int)
    keep = _without_islands(ijk // step, values)
    return cord, (ijk[keep], values[keep], float(stride.prod()))


def _without_islands(ijk: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Mask of the voxels to keep: in each group (a label id, or the whole cord), the
    26-connected components holding at least ISLAND_FRACTION of the largest one's voxels.
    Drops stray voxels and blobs (a segmentation's false positives) that would move the
    conus tip or a vertebra's extent; keeps a structure split in two by a missed slice."""
    keep = np.zeros(len(ijk), dtype=bool)
    order = np.argsort(groups, kind="stable")
    _, starts = np.unique(groups[order], return_index=True)
    for part in np.split(order, starts[1:]):
        if not len(part):
            continue
        local = ijk[part] - ijk[part].min(axis=0)
        mask = np.zeros(local.max(axis=0) + 1, dtype=bool)
        mask[tuple(local.T)] = True
        components, _ = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
        which = components[tuple(local.T)]
        sizes = np.bincount(which)
        keep[part] = sizes[which] >= ISLAND_FRACTION * sizes[1:].max()
    return keep


# -- centreline fitting ---------------------------------------------------------------------


def _fit_centreline(xyz, k, affine, spacing) -> Centreline:
    """Axial-slice centroids -> spline -> centroids of perpendicular slabs -> spline (twice)."""
    noise = float(spacing[:2].mean()) / 2
    counts = np.bincount(k)
    present = np.nonzero(counts)[0]
    centroids = np.stack(
        [np.bincount(k, weights=xyz[:, i])[present] / counts[present] for i in range(3)], axis=1
    )
    centreline = _spline(centroids, noise)
    slab = max(abs(float(affine[2, 2])), MIN_SLAB_MM)  # at least one slice thick
    for _ in range(PERPENDICULAR_PASSES):
        s, _ = centreline.project(xyz)
        bins = np.floor((s - s.min()) / slab).astype(int)
        counts = np.bincount(bins)
        # the end slabs hold partial cross-sections (jagged or oblique ends): leave them out,
        # the centreline is extended along its end tangents instead
        kept = np.nonzero(counts)[0][1:-1]
        if len(kept) < 2:
            break
        centroids = np.stack(
            [np.bincount(bins, weights=xyz[:, i])[kept] / counts[kept] for i in range(3)], axis=1
        )
        centreline = _spline(centroids, noise)
    return centreline


def _spline(centroids: np.ndarray, noise: float) -> Centreline:
    """Smoothing spline through ordered centroids, resampled at a fixed arc-length step.

    The centroids are ordered from superior to inferior before fitting, so that arc length
    grows caudally. `noise` (mm) is the expected scatter of a centroid about the true curve.
    """
    if centroids[0, 2] < centroids[-1, 2]:
        centroids = centroids[::-1]
    steps = np.linalg.norm(np.diff(centroids, axis=0), axis=1)
    keep = np.concatenate([[True], steps > 1e-9])
    centroids = centroids[keep]
    u = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(centroids, axis=0), axis=1))])
    degree = min(3, len(centroids) - 1)
    tck, _ = splprep(centroids.T, u=u, k=degree, s=len(u) * noise**2)
    fine_u = np.linspace(u[0], u[-1], max(int(u[-1] / (CENTRELINE_STEP_MM / 4)), 8))
    fine = np.stack(splev(fine_u, tck), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(fine, axis=0), axis=1))])
    s = np.arange(0.0, arc[-1] + 1e-9, CENTRELINE_STEP_MM)
    if s[-1] < arc[-1] - 1e-9:
        s = np.append(s, arc[-1])
    points = np.stack([np.interp(s, arc, fine[:, i]) for i in range(3)], axis=1)
    tangents = np.gradient(points, s, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    return Centreline(s, points, tangents)


# -- voxels along the cord ------------------------------------------------------------------


def _subvoxel_samples(centreline, ijk, values, affine):
    """Split voxels into sub-voxels of at most SUBVOXEL_MM per axis and place each along the
    cord: arc length, half-width of its arc-length span, volume, label id, and (n, 4) its
    right and posterior coordinates in the centreline's frame with the variance of its own
    extent along each."""
    axes = affine[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    splits = np.maximum(np.ceil(spacing / SUBVOXEL_MM - 1e-9).astype(int), 1)
    grids = [(np.arange(n) + 0.5) / n - 0.5 for n in splits]
    offsets = np.stack(np.meshgrid(*grids, indexing="ij"), axis=-1).reshape(-1, 3)
    sub_ijk = (ijk[:, None, :] + offsets[None, :, :]).reshape(-1, 3)
    xyz = sub_ijk @ axes.T + affine[:3, 3]
    s, tangent = centreline.project(xyz)
    sub_axes = axes / splits  # columns: sub-voxel edge vectors
    half = 0.5 * np.sqrt(((tangent @ sub_axes) ** 2).sum(axis=1))
    weight = abs(np.linalg.det(axes)) / splits.prod()
    _, right, posterior = _frame(tangent)
    offset = xyz - centreline.point(s)
    moments = np.column_stack(
        [
            np.einsum("ij,ij->i", offset, right),
            np.einsum("ij,ij->i", offset, posterior),
            ((right @ sub_axes) ** 2).sum(axis=1) / 12,
            ((posterior @ sub_axes) ** 2).sum(axis=1) / 12,
        ]
    )
    return s, half, np.full(len(s), weight), np.repeat(values, len(offsets)), moments


def _half_axes(s, moments, at, window) -> tuple[np.ndarray, np.ndarray]:
    """Half-width and half-depth (mm) at arc lengths `at` of the ellipse with the second
    moments of the sub-voxels within `window` mm: 2 sqrt(variance - own spread); 0 where
    the window holds no cord."""
    order = np.argsort(s)
    u, v, spread_u, spread_v = moments[order].T
    columns = np.column_stack([np.ones_like(u), u, u * u, spread_u, v, v * v, spread_v])
    sums = np.vstack([np.zeros(columns.shape[1]), np.cumsum(columns, axis=0)])
    low, high = (np.searchsorted(s[order], at + sign * window / 2) for sign in (-1, 1))
    n, su, suu, pu, sv, svv, pv = (sums[high] - sums[low]).T
    count = np.maximum(n, 1)
    variance_u = suu / count - (su / count) ** 2 - pu / count
    variance_v = svv / count - (sv / count) ** 2 - pv / count
    return 2 * np.sqrt(np.maximum(variance_u, 0.0)), 2 * np.sqrt(np.maximum(variance_v, 0.0))


def _level_volumes(centreline, labels: LabelVolume, ijk, values, thinning) -> dict[int, ArcVolume]:
    """Every vertebral body and disc along the cord: the voxels (`ijk`, ids `values`, one
    kept in `thinning`) of the
    label lying at least BODY_DEPTH_MM anterior to the centreline (so that the posterior
    arch and the caudally sloping spinous process do not count), each placed at its closest
    centreline point and spanning its width along the tangent. A label with no voxel that
    far anterior is taken whole. The voxels may be a thinned sample: volumes are scaled."""
    if not len(ijk):
        return {}
    axes = labels.affine[:3, :3]
    xyz = ijk @ axes.T + labels.affine[:3, 3]
    s, tangent = centreline.project(xyz)
    anterior = np.array([0.0, 1.0, 0.0]) - tangent[:, 1:2] * tangent  # A, normal to the cord
    anterior /= np.linalg.norm(anterior, axis=1, keepdims=True)
    depth = np.einsum("ij,ij->i", xyz - centreline.point(s), anterior)
    half = 0.5 * np.sqrt(((tangent @ axes) ** 2).sum(axis=1))
    weight = abs(np.linalg.det(axes)) * thinning
    volumes = {}
    order = np.argsort(values, kind="stable")
    ids, starts = np.unique(values[order], return_index=True)
    for label_id, part in zip(ids, np.split(order, starts[1:])):
        body = part[depth[part] >= BODY_DEPTH_MM]
        part = body if len(body) else part
        volumes[int(label_id)] = ArcVolume(s[part], half[part], weight)
    return volumes


#: Candidate paddles are drawn this far (mm) dorsal to the cord's surface (dura and CSF).
PADDLE_GAP_MM = 2.0


def candidate_strips(
    geometry: CordGeometry, plan: Plan, gap: float = PADDLE_GAP_MM
) -> list[tuple[Placement, np.ndarray, np.ndarray]]:
    """Each candidate of a plan with the strip its array covers over the dorsal
    midline (`Centreline.dorsal_strip`, (n, 2, 3), the paddle's width) and its contacts
    ((m, 3) RAS+ points, in the contact map's order: rows rostral to caudal, each from the
    patient's left to right), `gap` mm behind the cord's surface (its radius from the
    cross-sectional area there). Lower ranks lie a little further out, so that overlapping
    candidates stay visible."""
    layout = [(row.offset_mm, x) for _, row, x in plan.paddle.layout()]
    out = []
    for candidate in plan.candidates:
        assert candidate.rank is not None, "a plan's candidates are ranked"
        a, b = candidate.coverage.rostral, candidate.coverage.caudal
        area = float(np.interp((a + b) / 2, geometry.csa_s, geometry.csa))
        depth = np.sqrt(area / np.pi) + gap + 0.4 * (candidate.rank - 1)
        s = np.array([a + offset for offset, _ in layout])
        _, right, posterior = geometry.centreline.frame(s)
        contacts = (
            geometry.centreline.point(s)
            + depth * posterior
            + np.array([x for _, x in layout])[:, None] * right
        )
        strip = geometry.centreline.dorsal_strip(a, b, plan.paddle.width_mm, depth)
        out.append((candidate, strip, contacts))
    return out
