"""The lumbosacral enlargement: the stretch of cord a paddle should cover.

Labelled: the union of the cord segments of a range (default L1..S2; the published
studies used L1..S1), its extent along the cord taken from the labels.

Estimated (no segment of the range is labelled; marked `estimated`): each segment is
placed at its PAM50 distance above the conus tip (the caudal end of the cord, which must lie
inside the image, and, where the vertebrae are levelled, not below the CONUS_LOWEST (L3)
vertebra: a cord ending lower is the cauda equina taken for cord far more often than a
low-lying conus, and no plan is made from it; and the cord must fill MIN_CORD_SHARE of
it): L1 starts 90.5 mm above the tip, S2 ends 16.0 mm above it
(`PAM50_ROSTRAL_END_ABOVE_TIP_MM`, measured on the template and re-measured by the tests).
The cross-sectional-area (CSA) profile checks the estimate: the CSA peak of the caudal
100 mm of the cord (smoothed over 2 mm) is reported with whether it falls inside the
estimated enlargement. Rules that scaled or placed the enlargement from the CSA profile
(its taper into the conus, its peak) did worse on the phantom (docs/planning.md).
An estimated enlargement has no per-segment volumes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from cordmap.anatomy.numbering import CONUS_LOWEST
from cordmap.errors import CordmapError, NoPlan, NotInView
from cordmap.planning.geometry import ArcVolume, CordGeometry, boundary
from cordmap.protocol.levels import SEGMENTS, pam50_segment

DEFAULT_ENLARGEMENT = "L1..S2"
#: An estimated enlargement must hold this share of the cord volume that the cord's mean
#: cross-section gives over its length at least (the enlargement is the cord's thickest
#: part: less means the segmentation lost the cord there, and coverages would be of a gap).
MIN_CORD_SHARE = 0.5

#: Distance (mm, along the cord) from each segment's rostral end to the conus tip in the
#: PAM50 template (see `load_pam50_labels`).
PAM50_ROSTRAL_END_ABOVE_TIP_MM = {
    "T8": 201.5,
    "T9": 176.0,
    "T10": 151.5,
    "T11": 129.5,
    "T12": 109.0,
    "L1": 90.5,
    "L2": 73.5,
    "L3": 60.5,
    "L4": 49.0,
    "L5": 38.5,
    "S1": 30.5,
    "S2": 23.5,
    "S3": 16.0,
    "S4": 9.5,
    "S5": 3.5,
}
#: The caudal stretch of cord (mm) searched for the largest CSA.
CSA_SEARCH_MM = 100.0
CSA_SMOOTHING_MM = 2.0


@dataclass(frozen=True)
class Enlargement:
    """The target stretch of cord: its segments, arc-length extent (mm) and volume."""

    segments: tuple[str, ...]
    start: float
    end: float
    volume: ArcVolume  # voxels along the cord; only those in [start, end] belong to it
    estimated: bool
    segment_volumes: dict[str, ArcVolume]  # labelled segments only
    segment_extents: dict[str, tuple[float, float]]
    csa_peak: float | None = None  # estimated only: arc length of the caudal CSA peak

    @property
    def length(self) -> float:
        return self.end - self.start

    @property
    def total_volume(self) -> float:
        return float(self.volume.between(self.start, self.end))

    def covered_volume(self, a, b) -> np.ndarray:
        """Volume (mm³) of the enlargement between arc lengths a and b."""
        return self.volume.between(np.maximum(a, self.start), np.minimum(b, self.end))

    def describe(self) -> str:
        how = "estimated from the CSA profile and the conus" if self.estimated else "labelled"
        return f"{self.segments[0]}..{self.segments[-1]} ({how})"


def parse_segment_range(text: str) -> tuple[str, ...]:
    """ "L1..S2" -> ("L1", "L2", ..., "S2"), in rostro-caudal order."""
    parts = [p.strip().upper() for p in text.replace("-", "..").split("..") if p.strip()]
    if len(parts) != 2:
        raise CordmapError(
            f"enlargement '{text}' is not a segment range; write it as FIRST..LAST, e.g. L1..S2"
        )
    first, last = (pam50_segment(p) for p in parts)
    if last < first:
        raise CordmapError(f"enlargement '{text}' runs upwards; write the rostral segment first")
    return SEGMENTS[first - 1 : last]


def find_enlargement(
    geometry: CordGeometry, schema, segments: str = DEFAULT_ENLARGEMENT, source: str = "the labels"
) -> Enlargement:
    """The enlargement from labelled segments when present, else estimated (see module)."""
    names = parse_segment_range(segments)
    ids = {name: schema.find("segment", name).id for name in names}
    present = [name for name in names if ids[name] in geometry.structures]
    if not present:
        return _estimated(geometry, schema, names, source)
    missing = [name for name in names if name not in present]
    if missing:
        raise NotInView(
            f"segments {', '.join(missing)} of the enlargement {segments} are not labelled in "
            f"{source} (outside the field of view?); label them or pass e.g. "
            f"`enlargement` {present[0]}..{present[-1]}"
        )
    volumes = {name: geometry.structures[ids[name]] for name in names}
    extents = segment_extents(geometry, schema, names)
    start, end = extents[names[0]][0], extents[names[-1]][1]
    edge = _touching_edge(geometry, start, end)
    if edge:
        raise NotInView(
            f"the enlargement {segments} reaches the {edge} of the image in {source}, so part "
            "of it is outside the field of view; use an image that covers it or a shorter "
            "`enlargement` range"
        )
    union = ArcVolume.concatenate(list(volumes.values()))
    return Enlargement(names, start, end, union, False, volumes, extents)


def segment_extents(geometry: CordGeometry, schema, names) -> dict[str, tuple[float, float]]:
    """Arc-length extent of each labelled segment of `names`; where a neighbouring segment is
    labelled too, their shared end is the volume-balanced `boundary`."""
    ids = {label.level: label.id for label in schema.of_class("segment")}

    def volume(index):
        if 0 <= index < len(SEGMENTS) and SEGMENTS[index] in ids:
            return geometry.structures.get(ids[SEGMENTS[index]])
        return None

    extents = {}
    for name in names:
        index = SEGMENTS.index(name)
        this, above, below = volume(index), volume(index - 1), volume(index + 1)
        extents[name] = (
            boundary(above, this) if above else this.start,
            boundary(this, below) if below else this.end,
        )
    return extents


def _touching_edge(geometry: CordGeometry, start: float, end: float) -> str | None:
    tolerance = 1e-6
    if geometry.cut_rostral and start <= geometry.cord.start + tolerance:
        return "top"
    if geometry.cut_caudal and end >= geometry.cord.end - tolerance:
        return "bottom"
    return None


def csa_peak(geometry: CordGeometry) -> float:
    """Arc length of the largest CSA (smoothed over CSA_SMOOTHING_MM) in the caudal
    CSA_SEARCH_MM of the cord."""
    step = float(geometry.csa_s[1] - geometry.csa_s[0])
    csa = gaussian_filter1d(geometry.csa, CSA_SMOOTHING_MM / step, mode="nearest")
    caudal = geometry.csa_s >= geometry.length - CSA_SEARCH_MM
    return float(geometry.csa_s[caudal][np.argmax(csa[caudal])])


def _estimated(geometry: CordGeometry, schema, names: tuple[str, ...], source: str) -> Enlargement:
    tip = geometry.conus_tip
    if tip is None:
        raise NotInView(
            f"{source} has no cord segments labelled and the cord runs off the bottom of the "
            "image, so the enlargement cannot be estimated (it needs the conus); label the "
            "segments or use an image that includes the conus"
        )
    lowest = schema.find("vertebra", CONUS_LOWEST).id
    if lowest in geometry.extents and tip > geometry.extents[lowest][1]:
        raise NoPlan(
            f"the cord in {source} ends below the {CONUS_LOWEST} vertebra, lower than the "
            "conus lies in adults (T12-L2 in most): the cauda equina has likely been taken "
            "for cord, and an enlargement estimated from that end would put the paddle too "
            "low; check the conus on the sagittal figure, and label the cord segments to plan"
        )
    extents = {}
    for name in names:
        after = SEGMENTS.index(name) + 1
        below = SEGMENTS[after] if after < len(SEGMENTS) else None
        extents[name] = (
            tip - PAM50_ROSTRAL_END_ABOVE_TIP_MM[name],
            tip - PAM50_ROSTRAL_END_ABOVE_TIP_MM[below] if below else tip,
        )
    start, end = extents[names[0]][0], extents[names[-1]][1]
    if start < geometry.cord.start and geometry.cut_rostral:
        raise NotInView(
            f"the estimated enlargement starts {geometry.cord.start - start:.0f} mm above the "
            f"top of the image in {source}; use an image that covers it or label the segments"
        )
    found = float(geometry.cord.between(start, end))
    expected = geometry.cord.total / geometry.length * (end - start)
    if found < MIN_CORD_SHARE * expected:
        raise NoPlan(
            f"the cord in {source} is missing over most of the estimated enlargement ("
            f"{found:.0f} mm^3 where its mean cross-section would give {expected:.0f}): the "
            "segmentation lost the cord there; check the sagittal figure, and label the cord "
            "(or its segments) to plan"
        )
    return Enlargement(names, start, end, geometry.cord, True, {}, extents, csa_peak(geometry))
