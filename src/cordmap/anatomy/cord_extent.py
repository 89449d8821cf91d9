"""Where the cord is in a segmentation: not in stray pieces off its line, not in the cauda
equina below its end.

A network's cord label can go wrong in two ways that move everything measured from it
(the centreline, the conus tip, the enlargement estimated from the tip, the numbering's
conus prior). `tidy_cord` corrects both and says what it changed:

1. **Pieces outside the canal.** The canal lies behind the vertebral bodies: its centre
   20-30 mm behind the line of the disc centres (`numbering.spine_column`), on it from
   left to right. A piece of cord (26-connected) whose centre lies more than
   CANAL_RIGHT_MM to either side of that line, or not CANAL_POSTERIOR_MM behind it, is a
   false positive (in the fat behind the spine, say, or in fluid in front of it):
   relabelled background. Pieces in the canal stay (a cord split by an injury or a missed
   slice). Without discs in the labels (a cord-only model) this step is skipped.
2. **The cauda equina.** Below the conus medullaris the thecal sac holds nerve roots
   floating in CSF, which a network may label as cord: the cord would then seem to end
   5-10 cm too low. The image tells them apart. Along the cord its intensity differs from
   the CSF around it (darker on T2, brighter on T1: the sign does not matter); over the
   cauda the "cord" voxels are roots and CSF, and the difference fades. The contrast is
   measured in BIN_MM bins along S (the median of the cord voxels in the canal against
   the median of the CSF within RING_MM of them), relative to that of the cord's upper
   third (its top REFERENCE_MM at most) and smoothed over SMOOTH_MM (bins without cord
   take their neighbours' values). Going down from the lowest stretch of LIVE_MM or more
   that is still cord-like (LIVE of the reference or more, and a cross-section THIN of
   the upper third's or more: roots below the conus can keep some contrast, not the
   cord's bulk), the first run under FADED lasting RUN_MM (or to the cord's end) is the
   cauda: every cord voxel below its start is relabelled CSF, and the cord ends at the
   lowest voxel left. Faint stretches with cord below them (an injured,
   myelomalacic segment) are never cut off. Without such a run, the pieces of cord
   wholly below the largest one are judged one by one: one whose contrast is under LIVE
   of the reference (faint, or of the opposite sign: brighter than the CSF where the
   cord is darker) or whose mean cross-section is under THIN of the cord's (bundles of
   roots are thinner than the cord, even the cord below an injury) is taken for roots of
   the cauda equina and relabelled CSF; a cord-like piece starting within CONTINUES_MM
   below the cord's end (as extended by such pieces) continues the cord however thin (the
   tapering conus past a slice the segmentation missed).
3. **A conus cut short** is checked, not relabelled (`core_below_tip`): a segmentation
   can also stop above the conus, labelling its tapering end CSF (the bundled model does
   on real T2 lumbar scans). Below the tip, on the sagittal slab through it, the canal
   (cord and CSF) is scanned slice by slice for voxels on the cord's side of the midpoint
   between the cord's and the CSF's median intensity over the REFERENCE_MM above the tip
   (the cord's core); the core ends where under CORE_MM2 of it remain for CORE_GAP_MM.
   A core running CORE_NOTE_MM or more below the tip is reported: the conus may lie that
   much lower (or roots as dark as the cord follow it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cordmap.anatomy.numbering import CONTINUES_MM, spine_column
from cordmap.protocol.schema import CORD_CLASSES
from cordmap.volume import LabelVolume, Volume, piece_centres

CANAL_RIGHT_MM = 15.0
CANAL_POSTERIOR_MM = (8.0, 45.0)
BIN_MM = 2.0
RING_MM = 3.0
SMOOTH_MM = 6.0
#: The cord's contrast and cross-section are judged against its upper third, at most its
#: top REFERENCE_MM: a scan starting just above the conus shows little cord above the cauda.
REFERENCE_MM = 30.0
#: Relative contrast under which the cord has faded into CSF,
FADED = 0.1
#: and over which, for LIVE_MM at least, it is cord.
LIVE = 0.6
LIVE_MM = 10.0
#: A faded stretch shorter than this is not the cauda equina (a partial-volume dip).
RUN_MM = 20.0
#: A bin needs this many cord and ring voxels for its contrast to count.
MIN_VOXELS = 3
#: The cord's core below its tip: the half-width (mm, left-right) of the slab searched, the
#: in-slice area (mm^2) under which no core is left, how long (mm) that must last, and how
#: far (mm) the search goes; a core running CORE_NOTE_MM or more below the tip is reported.
CORE_SLAB_MM = 4.0
CORE_MM2 = 5.0
CORE_GAP_MM = 3.0
CORE_SEARCH_MM = 60.0
CORE_NOTE_MM = 10.0
#: A piece below the cord thinner than this share of the cord's mean cross-section is roots,
#: unless it starts within CONTINUES_MM (`numbering`, whose conus tip follows the cord the
#: same way) below the cord's end: the cord, or its conus, past a slice the segmentation missed.
THIN = 0.5


@dataclass(frozen=True)
class CordExtent:
    """`labels` with the cord corrected (unchanged where nothing was found), where the cord
    now ends (`tip_s`, S mm; None without cord), the cord taken for the cauda equina
    (`cauda_mm` along S), the volume of the pieces below the cord taken for roots
    (`roots_mm3`) and the volume of the cord outside the canal (`outside_mm3`)."""

    labels: LabelVolume
    tip_s: float | None
    cauda_mm: float = 0.0
    roots_mm3: float = 0.0
    outside_mm3: float = 0.0

    def notes(self) -> list[str]:
        """What was relabelled, for the user."""
        notes = []
        if self.outside_mm3:
            notes.append(
                f"{self.outside_mm3:.0f} mm^3 of cord lay outside the spinal canal (off the "
                "line behind the discs): relabelled background"
            )
        if self.cauda_mm:
            notes.append(
                f"the cord segmented below S = {self.tip_s:.0f} mm ({self.cauda_mm:.0f} mm of "
                "it) had lost its contrast to the CSF: taken for the cauda equina and "
                "relabelled CSF; check the conus tip on the sagittal figure"
            )
        if self.roots_mm3:
            notes.append(
                f"{self.roots_mm3:.0f} mm^3 of cord in pieces below its end were faint, of "
                "the opposite contrast or thinner than the cord: taken for roots of the cauda "
                "equina and relabelled CSF; check the conus tip on the sagittal figure"
            )
        return notes


def tidy_cord(image: Volume, labels: LabelVolume) -> CordExtent:
    """Relabel the cord outside the canal and the cauda equina taken for cord (see the
    module notes). `image` and `labels` share one grid; neither is modified."""
    schema = labels.schema
    array = np.asarray(labels.array)
    cord_ids = [label.id for label in schema.of_class(*CORD_CLASSES)]
    csf_ids = [label.id for label in schema.of_class("csf")]
    pieces, count = ndimage.label(np.isin(array, cord_ids), structure=np.ones((3, 3, 3)))
    if not count:
        return CordExtent(labels, None)
    outside = _outside_canal(pieces, count, labels)
    if outside.sum() == (pieces > 0).sum():
        return CordExtent(labels, None)  # no cord in the canal: nothing to judge by
    out = array.copy()
    out[outside] = 0
    outside_mm3 = float(outside.sum()) * labels.voxel_volume
    inside = pieces * ~outside
    sizes = np.bincount(inside.ravel())
    sizes[0] = 0
    main = int(np.argmax(sizes))
    all_s = labels.world(np.argwhere(inside > 0))[:, 2]  # C order, as `cauda[inside > 0]`
    lowest = float(all_s.min())
    csf = np.isin(array, csf_ids)
    values = np.asarray(image.array, dtype=np.float64)
    cord_ijk = np.argwhere(inside == main)
    cord_s = labels.world(cord_ijk)[:, 2]
    profile = _profile(values, labels, cord_ijk, cord_s, csf)
    if profile is None:
        if not outside_mm3:
            return CordExtent(labels, lowest)
        return CordExtent(
            LabelVolume(out, labels.affine, schema=schema), lowest, outside_mm3=outside_mm3
        )
    bins, relative, reference, thickness = profile
    start = _cauda_start(bins, relative, thickness)
    cauda = np.zeros(array.shape, dtype=bool)
    if start is not None:  # below the conus, all of it
        cauda[inside > 0] = all_s < start
    roots = np.zeros(array.shape, dtype=bool)
    if start is None:  # the pieces below the cord's end that are no cord
        area, end = _mean_area(cord_s, labels), float(cord_s.min())
        below = []
        for index, box in enumerate(ndimage.find_objects(inside), start=1):
            if index == main or box is None:
                continue
            ijk = np.argwhere(inside[box] == index) + [b.start for b in box]
            piece_s = labels.world(ijk)[:, 2]
            if piece_s.max() < cord_s.min():
                below.append((float(piece_s.max()), ijk, piece_s))
        for top, ijk, piece_s in sorted(below, key=lambda piece: -piece[0]):
            cord_like = _piece_contrast(values, labels, ijk, csf) / reference >= LIVE
            if cord_like and top >= end - CONTINUES_MM:  # the cord past a missed slice
                end = min(end, float(piece_s.min()))
            elif not cord_like or _mean_area(piece_s, labels) < THIN * area:
                roots[tuple(ijk.T)] = True
    if not cauda.any() and not roots.any() and not outside_mm3:
        return CordExtent(labels, lowest)
    out[cauda | roots] = csf_ids[0]
    left = labels.world(np.argwhere(np.isin(out, cord_ids)))[:, 2]
    tip = float(left.min())
    return CordExtent(
        LabelVolume(out, labels.affine, schema=schema),
        tip,
        tip - lowest if cauda.any() else 0.0,
        float(roots.sum()) * labels.voxel_volume,
        outside_mm3,
    )


def core_below_tip(image: Volume, labels: LabelVolume, tip: np.ndarray) -> float | None:
    """How far (mm) the cord's core runs on below the conus `tip` (RAS mm) in the image
    (see the module notes, 3); None when it does not end within CORE_SEARCH_MM (too little
    contrast to tell) or the image gives no cord and CSF to compare. Axis 2 is S."""
    schema = labels.schema
    array = np.asarray(labels.array)
    cord = np.isin(array, [label.id for label in schema.of_class(*CORD_CLASSES)])
    csf = np.isin(array, [label.id for label in schema.of_class("csf")])
    spacing = np.asarray(labels.spacing, dtype=float)
    i, _, k = np.rint(labels.voxel(tip)).astype(int)
    half = int(round(CORE_SLAB_MM / spacing[0]))
    slab = slice(max(i - half, 0), i + half + 1)
    values = ndimage.gaussian_filter(np.asarray(image.array, dtype=np.float64)[slab], 0.7 / spacing)
    cord, csf = cord[slab], csf[slab]
    above = slice(k, k + int(round(REFERENCE_MM / spacing[2])) + 1)
    if not cord[:, :, above].any() or not csf[:, :, above].any():
        return None
    cord_median = float(np.median(values[:, :, above][cord[:, :, above]]))
    csf_median = float(np.median(values[:, :, above][csf[:, :, above]]))
    midpoint, sign = (cord_median + csf_median) / 2, np.sign(csf_median - cord_median)
    canal = ndimage.binary_dilation(cord | csf)
    voxel_mm2 = spacing[0] * spacing[1]
    last = gap = 0.0
    for depth in range(1, int(CORE_SEARCH_MM / spacing[2]) + 1):
        if k - depth < 0:
            return None  # the image ends first
        inside = values[:, :, k - depth][canal[:, :, k - depth]]
        area = float(np.sum(sign * (midpoint - inside) > 0)) * voxel_mm2
        if area >= CORE_MM2:
            last, gap = depth * spacing[2], 0.0
        else:
            gap += spacing[2]
            if gap >= CORE_GAP_MM:
                return last
    return None


def core_note(core_mm: float | None, tip: np.ndarray) -> list[str]:
    """The warning a core running on below the tip gets, if it runs far enough."""
    if core_mm is None or core_mm < CORE_NOTE_MM:
        return []
    return [
        f"the image shows the cord's core running on {core_mm:.0f} mm below the segmented "
        f"conus tip (S = {tip[2]:.0f} mm), labelled CSF: the conus may end that much lower "
        "(or roots as dark as the cord follow it), and an enlargement estimated from the "
        "tip would lie too high; check the conus on the sagittal figure"
    ]


def _outside_canal(pieces, count, labels) -> np.ndarray:
    """Mask of the cord pieces whose centre lies outside the canal (CANAL_RIGHT_MM,
    CANAL_POSTERIOR_MM from the spine's column); none without a column of discs."""
    column = spine_column(labels)
    if column is None:
        return np.zeros(pieces.shape, dtype=bool)
    centres = labels.world(piece_centres(pieces, count))
    right, anterior = column.offsets(centres).T
    behind = -anterior
    outside = (
        (np.abs(right) > CANAL_RIGHT_MM)
        | (behind < CANAL_POSTERIOR_MM[0])
        | (behind > CANAL_POSTERIOR_MM[1])
    )
    return np.isin(pieces, np.nonzero(outside)[0] + 1)


def _ring(labels, ijk, csf) -> np.ndarray:
    """Indices of the CSF voxels within RING_MM of the voxels `ijk`."""
    radius = np.maximum(1, np.round(RING_MM / np.asarray(labels.spacing))).astype(int)
    low = np.maximum(ijk.min(axis=0) - radius, 0)
    high = np.minimum(ijk.max(axis=0) + radius + 1, csf.shape)
    mask = np.zeros(tuple(high - low), dtype=bool)
    mask[tuple((ijk - low).T)] = True
    box = tuple(slice(a, b) for a, b in zip(low, high))
    ring = ndimage.binary_dilation(mask, structure=_box(radius)) & csf[box]
    return np.argwhere(ring) + low


def _piece_contrast(values, labels, ijk, csf) -> float:
    """A piece's median intensity minus that of the CSF around it (0 without CSF)."""
    ring = _ring(labels, ijk, csf)
    if len(ring) < MIN_VOXELS:
        return 0.0
    return float(np.median(values[tuple(ijk.T)]) - np.median(values[tuple(ring.T)]))


def _profile(values, labels, cord_ijk, cord_s, csf):
    """(bins, relative contrast per bin, reference contrast, relative cross-section per
    bin) along the cord, or None where it cannot be measured (no CSF beside the cord, no
    contrast in its upper third). Both are relative to the cord's upper third (at most
    REFERENCE_MM)."""
    ring_ijk = _ring(labels, cord_ijk, csf)
    if not len(ring_ijk):
        return None
    ring_s = labels.world(ring_ijk)[:, 2]
    bins = np.arange(float(cord_s.min()), float(cord_s.max()) + BIN_MM, BIN_MM)
    contrast = _contrast(bins, cord_s, values[tuple(cord_ijk.T)], ring_s, values[tuple(ring_ijk.T)])
    top = bins >= bins[-1] - min((bins[-1] - bins[0]) / 3, REFERENCE_MM)
    if np.isfinite(contrast).sum() < 2 or not np.isfinite(contrast[top]).any():
        return None
    reference = float(np.nanmedian(contrast[top]))
    if not reference:
        return None
    volume = (
        np.bincount(np.floor((cord_s - bins[0]) / BIN_MM).astype(int), minlength=len(bins))
        * labels.voxel_volume
    )
    # over SMOOTH_MM and at least two slices, so that bins between slices do not count as gaps
    window = max(SMOOTH_MM, 2 * _thickness(labels)) / BIN_MM
    area = ndimage.uniform_filter1d(volume / BIN_MM, int(round(window)), mode="nearest")
    thickness = area / float(np.median(area[top]))
    return bins, _smooth(contrast / reference, SMOOTH_MM / BIN_MM), reference, thickness


def _cauda_start(bins, relative, thickness) -> float | None:
    """S (mm) where the cauda equina begins below the cord, or None: going down from the
    lowest stretch that still looks like cord (contrast and cross-section), the first bin
    of a faded run reaching RUN_MM or the cord's end."""
    cord_like = (relative >= LIVE) & (thickness >= THIN)
    stretch = np.ones(int(LIVE_MM / BIN_MM))
    live = np.nonzero(ndimage.binary_opening(cord_like, structure=stretch))[0]
    if not len(live):
        return None
    run = int(np.ceil(RUN_MM / BIN_MM))
    faded = relative < FADED
    tip_bin = next(
        (i for i in range(live[0] - 1, -1, -1) if faded[max(0, i - run + 1) : i + 1].all()),
        None,
    )
    if tip_bin is None or tip_bin < run - 1:
        return None
    return float(bins[tip_bin]) + BIN_MM


def _mean_area(s: np.ndarray, labels: LabelVolume) -> float:
    """Mean cross-section (mm²) of voxels at heights `s` (mm): their volume over their
    extent along S."""
    return len(s) * labels.voxel_volume / (float(np.ptp(s)) + _thickness(labels))


def _thickness(labels: LabelVolume) -> float:
    """One voxel's extent along S (mm): the slice thickness of an axial scan."""
    return float(np.abs(labels.affine[2, :3]).sum())


def _box(radius: np.ndarray) -> np.ndarray:
    return np.ones(tuple(2 * radius + 1), dtype=bool)


def _contrast(bins, cord_s, cord_values, ring_s, ring_values) -> np.ndarray:
    """Median cord intensity minus median nearby CSF intensity per bin (NaN where either
    has too few voxels); the CSF is taken over the bin and its two neighbours."""
    out = np.full(len(bins), np.nan)
    cord_bin = np.floor((cord_s - bins[0]) / BIN_MM).astype(int)
    ring_bin = np.floor((ring_s - bins[0]) / BIN_MM).astype(int)
    for index in range(len(bins)):
        mine = cord_values[cord_bin == index]
        near = ring_values[np.abs(ring_bin - index) <= 1]
        if len(mine) >= MIN_VOXELS and len(near) >= MIN_VOXELS:
            out[index] = np.median(mine) - np.median(near)
    return out


def _smooth(values: np.ndarray, width: float) -> np.ndarray:
    """Moving average over `width` bins, bins without a value filled from their
    neighbours first."""
    known = np.isfinite(values)
    filled = np.interp(np.arange(len(values)), np.nonzero(known)[0], values[known])
    return ndimage.uniform_filter1d(filled, max(1, int(round(width))), mode="nearest")
