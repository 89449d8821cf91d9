"""Vertebral numbering: every vertebra and disc of a segmentation gets its level.

A segmentation (the U-Net's, or any label volume) gives vertebrae and discs, possibly
without levels. Numbering them is counting, and counting needs an anchor:

1. **Discs** are the 26-connected pieces of the disc labels that line up as the spine's
   anterior column (near the size-weighted median of the pieces around them along S, or
   on the line through the two nearest column pieces where the spine curves: see
   `_column`), pieces under DISC_MIN_FRACTION of the median piece dropped unless cut by
   the edge of the image, a piece with two peaks along S split in two (two discs joined by
   the segmentation), pieces less than MERGE_MM apart along S taken as one disc. Each has
   a centre and a normal (its thinnest principal axis, pointing superior), and they are
   ordered from the top down.
   A gap between neighbouring discs is one level unless it is MISSED_DISC_RATIO times the
   gaps near it or more (see `_count_gaps`): then a disc the segmentation missed is
   counted, not skipped (and flagged).
2. **Vertebra voxels** belong to the level between the disc planes around them: each
   voxel is placed above or below its nearest disc's plane.
3. **The anchor**, in this order:
   - the user's (`anchor="L5"`: the lowest vertebra in view is L5; `"T12/L1"`: the lowest
     disc in view; `"L1@-120"`: the vertebra or disc nearest S = -120 mm);
   - the sacrum, when the bone below the lowest disc is the sacrum (SACRUM_VOLUME times
     the larger of the two vertebrae above it or more, or reaching SACRUM_DEPTH levels
     below the disc): the lowest disc is L5/S1;
   - otherwise the conus prior: the disc nearest the conus tip is L1/L2 (the tip lies at
     the L1-L2 level in most adults), reported as *uncertain*; not when the cord found
     spans under CONUS_CORD_MM, begins more than CONUS_CORD_TOP_MM below the highest disc
     in view (a lost cord, or the cauda equina taken for cord) or the count would run past
     C1 or the sacrum. Where it
     would run past the sacrum and the tip, counted from the lowest disc as L5/S1, lies
     above the CONUS_HIGHEST vertebra (where no adult conus ends), the lowest disc is
     taken for a disc-like S1/S2 junction inside the sacrum (the commonest fault of a
     segmentation on T2) and the disc above it for L5/S1, *uncertain*, with a warning;
   - otherwise the lowest disc is assumed to be L5/S1, *uncertain*; unless it is cut by
     the lower edge of the image (centred within EDGE_CUT_MM of it), where a lumbar scan
     shows the sacrum: then it is taken for a disc-like S1/S2 junction and the disc above
     it for L5/S1, with a warning.
4. **Variants** are flagged: a gap counted as missing discs; a level taller than
   MERGED_HEIGHT median levels (vertebrae merged in the segmentation); an L5/S1 disc under
   half the height of L4/L5 (a lumbosacral transitional vertebra is suspected: 4 or 6
   lumbar vertebrae cannot be told from the lumbar spine alone, so the numbering is
   marked uncertain).

World coordinates are RAS+ mm; "superior" is +S.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, signal
from scipy.spatial import cKDTree

from cordmap.errors import CordmapError
from cordmap.protocol.levels import VERTEBRAE, totalspineseg_disc, totalspineseg_vertebra, vertebra
from cordmap.protocol.schema import CORD_CLASSES
from cordmap.volume import LabelVolume, piece_centres

DISC_MIN_FRACTION = 0.2
EDGE_MIN_FRACTION = 0.03  # a disc cut by the edge of the field of view
#: A disc centred this close to the inferior edge of the image is cut by it (half a
#: lumbar disc's height: its lower half lies out of view).
EDGE_CUT_MM = 5.0
MERGE_MM = 8.0  # disc pieces closer than this along S are one disc, split by the segmentation
DISC_GAP_MM = 12.0  # discs lie at least this far apart along S (cervical levels ~15 mm)
SPLIT_PROMINENCE = 0.3  # a piece with two peaks this prominent along S is two discs
COLUMN_MM = 20.0  # disc centres lie this close to those of the neighbouring discs
NEIGHBOURHOOD_MM = 60.0  # along S
BODY_MM = 30.0  # bone this close to the column is vertebral body (or sacrum)
SPINE_MM = 60.0  # and this close, part of a vertebra (or the sacrum's alae)
SACRUM_VOLUME = 1.5
SACRUM_DEPTH = 2.0
MERGED_HEIGHT = 1.6
#: A gap between discs this many times those near it or more counts a missed disc.
MISSED_DISC_RATIO = 1.7
NEAR_GAPS = 2
MIN_VERTEBRAE = 3
#: Cord (its largest piece) spanning less than this along S gives no conus tip.
CONUS_CORD_MM = 40.0
#: A piece of cord starting this close below the cord's end continues it (a missed slice).
CONTINUES_MM = 10.0
#: The lowest vertebra at which the conus tip lies in adults (T12-L2 in most, L3 in few);
#: a cord ending lower is flagged.
CONUS_LOWEST = "L3"
#: The cord ending at the conus tip reaches up to this close to the highest disc in view,
#: or its end does not anchor the count: a cord that begins far down the spine is what is
#: left of a cord the segmentation lost, or the cauda equina taken for cord.
CONUS_CORD_TOP_MM = 25.0
#: The disc nearest the conus tip under the conus prior.
CONUS_DISC = "L1/L2"
#: The highest vertebra at which the conus tip lies in adults (Saifuddin et al., Spine
#: 1998, 504 adults: from the middle third of T12 to the upper third of L3; none above
#: T12 in 1,000 patients of a later study): a tip above it means the count is off.
CONUS_HIGHEST = "T12"

_ANCHOR = re.compile(
    r"^\s*([CTL]\d{1,2}|S1?|sacrum)(?:\s*[/-]\s*([CTL]\d{1,2}|S1?|sacrum))?"
    r"(?:\s+disc)?\s*(?:@\s*(-?\d+(?:\.\d+)?))?\s*$",
    re.I,
)


@dataclass
class Numbering:
    """The levels found: a label volume with levelled ids and how they were found."""

    labels: LabelVolume
    anchor: str  # "user", "sacrum", "conus", "assumed"
    uncertain: bool
    vertebrae: dict[str, np.ndarray]  # name -> centre (RAS mm), top down
    discs: dict[str, np.ndarray]  # "L5/S" -> centre (RAS mm), top down
    conus_tip: np.ndarray | None = None  # RAS mm
    conus_level: str | None = None  # e.g. "L1 lower third"
    warnings: list[str] = field(default_factory=list)
    anchor_disc: str | None = None  # the disc an automatic count started from, e.g. "L5/S"

    def describe(self) -> str:
        how = {
            "user": "from the anchor given",
            "sacrum": "automatic from the sacrum",
            "conus": "from the conus position prior",
            "assumed": "lowest disc in full view assumed L5/S1",
        }
        text = f"levels: {how[self.anchor]}"
        return text + ("; uncertain: confirm on X-ray" if self.uncertain else "")

    def to_dict(self) -> dict:
        return {
            "anchor": self.anchor,
            "uncertain": self.uncertain,
            "summary": self.describe(),
            "vertebrae": list(self.vertebrae),
            "discs": list(self.discs),
            "conus_tip_ras_mm": None
            if self.conus_tip is None
            else [round(float(v), 1) for v in self.conus_tip],
            "conus_level": self.conus_level,
            "warnings": list(self.warnings),
            "anchor_disc": self.anchor_disc,
            "anchor_disc_ras_mm": None
            if self.anchor_disc is None
            else [round(float(v), 1) for v in self.discs[self.anchor_disc]],
        }


@dataclass
class _Disc:
    centre: np.ndarray
    normal: np.ndarray  # superior-pointing unit vector
    height: float  # extent along the normal (mm)
    position: int = 0  # level units from the top disc (gaps counted)
    cut_below: bool = False  # cut by the inferior edge of the field of view


def number_vertebrae(
    labels: LabelVolume, anchor: str | None = None, source: str = "the segmentation"
) -> Numbering:
    """Give every vertebra and disc voxel of `labels` its level (see the module notes).

    Parameters
    ----------
    labels : LabelVolume
        A segmentation with vertebrae and discs (levels not needed), e.g. from `segment`.
    anchor : str, optional
        A level known by the user: ``"L5"`` (the lowest vertebra in view), ``"T12/L1 disc"``
        (the lowest disc in view), with ``"@S"`` for the one nearest S mm
        (``"T12/L1 disc@-350"``). Without it the count starts from the sacrum when in
        view, else from the conus position prior, flagged uncertain.
    source : str
        Names the labels in messages.

    Returns
    -------
    Numbering
        The levelled labels, the anchor used, whether the result is uncertain, the
        centres of the vertebrae and discs, the conus tip and its level, and warnings.
    """
    schema = labels.schema
    array = np.asarray(labels.array)
    vertebra_ids = [label.id for label in schema.of_class("vertebra")]
    disc_ids = [label.id for label in schema.of_class("disc")]
    bone, disc_mask = np.isin(array, vertebra_ids), np.isin(array, disc_ids)
    if not bone.any():
        raise CordmapError(
            f"no vertebra found in {source}: levels cannot be numbered; "
            "check that the image shows the spine"
        )
    discs, column = _discs(disc_mask, labels)
    if len(discs) < MIN_VERTEBRAE - 1:
        raise CordmapError(
            f"{source} shows {len(discs)} intervertebral disc(s): numbering needs at least "
            f"{MIN_VERTEBRAE} vertebrae in view; use a field of view covering more of the spine"
        )
    warnings = _count_gaps(discs)
    bone_ijk = np.argwhere(bone)
    bone_xyz = labels.world(bone_ijk)
    level, _ = _levels_of(bone_xyz, discs)
    volumes = np.bincount(level + 1, minlength=discs[-1].position + 2) * labels.voxel_volume
    spacing = _median_spacing(discs)
    to_conus = _cord_to_conus(labels)
    conus = None if to_conus is None else to_conus[0]

    off = np.zeros(len(bone_xyz)) if column is None else _off_column(bone_xyz, column)
    near = off < SPINE_MM  # bodies, arches and the sacral alae; not what lies far off
    near_volumes = (
        np.bincount(level[near] + 1, minlength=discs[-1].position + 2) * labels.voxel_volume
    )
    sacrum = _is_sacrum(
        bone_xyz[(off < BODY_MM) & (level == discs[-1].position)], discs, near_volumes, spacing
    )
    if anchor:
        offset = _user_offset(anchor, discs, bone_xyz, level)
        if sacrum and offset != VERTEBRAE.index("S") - discs[-1].position:
            raise CordmapError(
                f"the anchor '{anchor}' contradicts the sacrum found below the lowest disc "
                "(which makes that disc L5/S1); check the anchor, or the sagittal figure"
            )
        how, uncertain, start = "user", False, None
    elif sacrum:
        offset, how, uncertain = VERTEBRAE.index("S") - discs[-1].position, "sacrum", False
        start = discs[-1]
    else:
        offset, how, uncertain = VERTEBRAE.index("S") - discs[-1].position, "assumed", True
        start = discs[-1]
        if to_conus is not None and discs[0].centre[2] - to_conus[1] > CONUS_CORD_TOP_MM:
            warnings.append(
                f"the cord ending at S = {to_conus[0][2]:.0f} mm begins "
                f"{discs[0].centre[2] - to_conus[1]:.0f} mm below the highest disc in view "
                "(the segmentation lost the cord above it): its end may be the cauda equina "
                "taken for cord rather than the conus, so the levels were not counted from it"
            )
        elif conus is not None:
            nearest = min(discs, key=lambda d: abs(_signed(conus, d)))
            by_conus = VERTEBRAE.index(CONUS_DISC.split("/")[1]) - nearest.position
            if _fits(by_conus, discs[-1].position + 1):  # else the cord found is implausible
                offset, how, start = by_conus, "conus", nearest
            elif len(discs) >= MIN_VERTEBRAE and _above_adult_conus(conus, discs, offset):
                tip = _describe_point(conus, discs, _names(offset, discs[-1].position + 1, source))
                start = discs[-2]
                offset, how = VERTEBRAE.index("S") - start.position, "conus"
                warnings.append(
                    f"were the lowest disc (S = {discs[-1].centre[2]:.0f} mm) L5/S1, the conus "
                    f"tip would lie at the {tip}, above the {CONUS_HIGHEST} vertebra where it "
                    "ends in adults: that disc was taken for a disc-like S1/S2 junction inside "
                    "the sacrum, and the disc above it for L5/S1; if the sagittal figure shows "
                    "that disc between L5 and the sacrum (the cord found then ends well above "
                    "its conus: an injury, a cord the segmentation lost), number again with "
                    f'--anchor "L5/S1 disc@{discs[-1].centre[2]:.0f}"'
                )
    if how == "assumed" and discs[-1].cut_below and len(discs) >= MIN_VERTEBRAE:
        # a disc cut by the lower edge of the image, where a lumbar scan shows the sacrum,
        # is taken for a disc-like S1/S2 junction: the assumed L5/S1 is the disc above it
        start = discs[-2]
        offset = VERTEBRAE.index("S") - start.position
        warnings.append(
            f"no sacrum was recognised, and the lowest disc found (S = "
            f"{discs[-1].centre[2]:.0f} mm) is cut by the lower edge of the image, where a "
            "lumbar scan shows the sacrum: it was taken for a disc-like S1/S2 junction inside "
            f"the sacrum, and the disc above it (S = {start.centre[2]:.0f} mm) for L5/S1; if "
            "the image ends inside the L5/S1 disc, number again with "
            f'--anchor "L5/S1 disc@{discs[-1].centre[2]:.0f}"'
        )
    elif how == "assumed":
        warnings.append(
            f"no sacrum was recognised below the lowest disc (S = {discs[-1].centre[2]:.0f} "
            "mm), so it was taken for L5/S1; a segmentation can take the S1/S2 junction "
            "inside the sacrum for a disc (on T2 scans above all), which names every level "
            "one too high: if that disc lies inside the sacrum on the sagittal figure, number "
            f'again with --anchor "L5/S1 disc@{discs[-2].centre[2]:.0f}"'
        )
    all_discs = discs
    sacral = [d for d in discs if offset + d.position > VERTEBRAE.index("S")]
    if sacral:  # an anchor, a conus above T12 or a disc cut by the edge: discs in the sacrum
        discs = discs[: len(discs) - len(sacral)]
        level, _ = _levels_of(bone_xyz, discs)
        volumes = np.bincount(level + 1, minlength=discs[-1].position + 2) * labels.voxel_volume
        warnings.append(
            f"{len(sacral)} disc(s) segmented below the L5/S1 disc of the anchor lie in the "
            "sacrum (S1/S2 disc remnants, say): numbered as sacrum"
        )
    warnings += _variants(discs, volumes, offset)
    if any("transitional" in w for w in warnings):
        uncertain = True

    names = _names(offset, discs[-1].position + 1, source)
    out = np.zeros_like(array)
    keep = ~np.isin(array, vertebra_ids + disc_ids)
    out[keep] = array[keep]
    out[tuple(bone_ijk.T)] = np.array([totalspineseg_vertebra(n) for n in names])[level + 1]
    disc_level = _disc_voxel_levels(disc_mask, labels, all_discs)
    disc_names = {}
    for d in discs:
        upper, lower = names[d.position], names[d.position + 1]
        disc_names[f"{upper}/{lower}"] = d.centre
    disc_lookup = np.array(
        [totalspineseg_disc(names[d.position], names[d.position + 1]) for d in discs]
        + [totalspineseg_vertebra("S")] * len(sacral)
    )
    out[disc_mask] = disc_lookup[disc_level]
    centres = {}
    for index in range(len(names)):
        mine = bone_xyz[level + 1 == index]
        if len(mine):
            centres[names[index]] = mine.mean(axis=0)
    result = Numbering(
        LabelVolume(out, labels.affine, schema=schema),
        how,
        uncertain,
        centres,
        disc_names,
        conus,
        warnings=warnings,
        anchor_disc=None
        if start is None
        else f"{names[start.position]}/{names[start.position + 1]}",
    )
    if conus is not None:
        result.conus_level = _describe_point(conus, discs, names)
    end = _cord_end(labels, conus, column)
    if end is not None:
        below = names[int(_levels_of(end[None], discs)[0][0]) + 1]
        if VERTEBRAE.index(below) > VERTEBRAE.index(CONUS_LOWEST):
            result.warnings.append(
                f"the cord ends at the {_describe_point(end, discs, names)}, below the "
                f"{CONUS_LOWEST} vertebra where the conus lies in adults: the segmentation "
                "may take the cauda equina for cord (an enlargement estimated from the "
                "cord's end would lie too low); check the sagittal figure"
            )
    return result


# -- discs --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpineColumn:
    """The spine's anterior column: the line through the disc centres, polynomials x(S) and
    y(S) (RAS mm) fitted over the discs' heights `lowest`..`highest`."""

    fit: tuple[np.ndarray, np.ndarray]
    lowest: float
    highest: float

    def offsets(self, xyz: np.ndarray) -> np.ndarray:
        """(n, 2): how far right and anterior (mm) points lie of the column at their height
        (beyond the discs, at the nearest end: the fit is not extrapolated)."""
        s = np.clip(np.asarray(xyz)[:, 2], self.lowest, self.highest)
        return np.asarray(xyz)[:, :2] - np.stack([np.polyval(f, s) for f in self.fit], axis=1)


def spine_column(labels: LabelVolume) -> SpineColumn | None:
    """The column of the discs labelled in `labels`; None without 3 discs in line."""
    disc_ids = [label.id for label in labels.schema.of_class("disc")]
    mask = np.isin(np.asarray(labels.array), disc_ids)
    if not mask.any():
        return None
    discs, fit = _discs(mask, labels)
    if fit is None:
        return None
    heights = [float(d.centre[2]) for d in discs]
    return SpineColumn(fit, min(heights), max(heights))


def _discs(mask: np.ndarray, labels: LabelVolume):
    """The discs, top down, and the column they form (see `_column`)."""
    pieces, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    if not count:
        return [], None
    world = labels.world(piece_centres(pieces, count))
    sizes = np.bincount(pieces.ravel(), minlength=count + 1)[1:]
    placed, column = _column(world, sizes)  # pieces off the column are not discs
    median = float(np.median(sizes[placed]))
    boxes = ndimage.find_objects(pieces)
    at_edge = [any(b.start == 0 or b.stop == n for b, n in zip(box, mask.shape)) for box in boxes]
    keep = [
        i + 1
        for i in placed  # a disc cut by the field of view is kept
        if sizes[i] >= DISC_MIN_FRACTION * median
        or (at_edge[i] and sizes[i] >= EDGE_MIN_FRACTION * median)
    ]
    parts = [part for index in keep for part in _split(labels.world(np.argwhere(pieces == index)))]
    groups: list[list[np.ndarray]] = []  # parts of one disc (split by the segmentation) together
    for part in sorted(parts, key=lambda p: -p[:, 2].mean()):
        if groups and abs(groups[-1][-1][:, 2].mean() - part[:, 2].mean()) < MERGE_MM:
            groups[-1].append(part)
        else:
            groups.append([part])
    discs = []
    for group in groups:
        xyz = np.concatenate(group)
        centre = xyz.mean(axis=0)
        _, _, axes = np.linalg.svd(xyz - centre, full_matrices=False)
        normal = axes[-1] if len(xyz) >= 3 else np.array([0.0, 0.0, 1.0])
        normal = normal if normal[2] >= 0 else -normal
        height = float(np.ptp((xyz - centre) @ normal)) + float(min(labels.spacing))
        cut = _above_lower_edge(centre, labels) < EDGE_CUT_MM
        discs.append(_Disc(centre, normal, height, cut_below=cut))
    discs.sort(key=lambda d: -d.centre[2])
    return discs, column


def _above_lower_edge(xyz: np.ndarray, labels: LabelVolume) -> float:
    """How far (mm) a point lies above the inferior slice of the image (along the array
    axis nearest S)."""
    axis = int(np.argmax(np.abs(labels.affine[2, :3])))
    index = float(labels.voxel(xyz)[axis])
    above = index if labels.affine[2, axis] > 0 else labels.shape[axis] - 1 - index
    return above * float(labels.spacing[axis])


def _column(world: np.ndarray, sizes: np.ndarray):
    """The disc pieces that line up as the spine's anterior column, and a fit of it.

    A piece belongs to the column when it lies within COLUMN_MM (in the axial plane) of
    the size-weighted median position of the pieces within NEIGHBOURHOOD_MM of it along S,
    itself included: the discs outweigh the false positives beside them (facet joints,
    bowel), however many. Then the column grows piece by piece, nearest along S first,
    where the spine curves away from that median (the lumbosacral angle): a piece of
    DISC_MIN_FRACTION of the column's median piece or more joins when it lies within
    COLUMN_MM of the line through the two column pieces nearest it along S (of those of
    that size: a small false positive let in beside the column, a facet joint say, must
    not steer it away from the lumbosacral disc). The fit is a
    polynomial x(S), y(S) through the column (cubic from 7 pieces, quadratic from 5), None
    with fewer than 3."""
    column = []
    for index in range(len(world)):
        near = np.abs(world[:, 2] - world[index, 2]) <= NEIGHBOURHOOD_MM
        centre = [_weighted_median(world[near, axis], sizes[near]) for axis in (0, 1)]
        if np.hypot(*(world[index, :2] - centre)) < COLUMN_MM:
            column.append(index)
    large = DISC_MIN_FRACTION * np.median(sizes[column]) if column else np.inf
    rest = [i for i in range(len(world)) if i not in column and sizes[i] >= large]
    guides = [i for i in column if sizes[i] >= large]  # not a small false positive let in
    while rest and len(guides) >= 2:  # where the spine curves away from the median
        gaps = [np.abs(world[guides, 2] - world[i, 2]).min() for i in rest]
        index = rest.pop(int(np.argmin(gaps)))
        a, b = sorted(guides, key=lambda j: abs(world[j, 2] - world[index, 2]))[:2]
        t = (world[index, 2] - world[a, 2]) / ((world[b, 2] - world[a, 2]) or 1.0)
        expected = world[a, :2] + t * (world[b, :2] - world[a, :2])
        if np.hypot(*(world[index, :2] - expected)) < COLUMN_MM:
            column.append(index)
            guides.append(index)
    if len(column) < 3:
        return column or list(range(len(world))), None
    degree = 3 if len(column) >= 7 else 2 if len(column) >= 5 else 1
    weights = np.sqrt(sizes[column].astype(float))
    fit = (
        np.polyfit(world[column, 2], world[column, 0], degree, w=weights),
        np.polyfit(world[column, 2], world[column, 1], degree, w=weights),
    )
    return sorted(column), fit


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def _split(xyz: np.ndarray) -> list[np.ndarray]:
    """A piece's voxels (RAS mm) as one disc each: split along S where its profile (1 mm
    bins, smoothed) has peaks at least DISC_GAP_MM apart, each rising SPLIT_PROMINENCE of
    the highest above the valley between them (two discs joined by the segmentation,
    through a ligament say)."""
    bins = np.floor(xyz[:, 2] - xyz[:, 2].min()).astype(int)
    profile = ndimage.gaussian_filter1d(np.pad(np.bincount(bins).astype(float), 1), 3.0)
    peaks, _ = signal.find_peaks(
        profile, distance=int(DISC_GAP_MM), prominence=SPLIT_PROMINENCE * profile.max()
    )
    if len(peaks) < 2:
        return [xyz]
    valleys = np.array([a + int(np.argmin(profile[a : b + 1])) for a, b in zip(peaks, peaks[1:])])
    owner = np.searchsorted(valleys, bins + 1)  # profile indices are bins + 1 (padding)
    return [xyz[owner == index] for index in range(len(peaks))]


def _off_column(xyz: np.ndarray, fit) -> np.ndarray:
    """Distance (mm, in the axial plane) of points from the column fit."""
    return np.hypot(
        xyz[:, 0] - np.polyval(fit[0], xyz[:, 2]), xyz[:, 1] - np.polyval(fit[1], xyz[:, 2])
    )


def _median_spacing(discs: list[_Disc]) -> float:
    gaps = [np.linalg.norm(a.centre - b.centre) for a, b in zip(discs, discs[1:])]
    return float(np.median(gaps))


def _count_gaps(discs: list[_Disc]) -> list[str]:
    """Number the discs in level units from the top, a long gap counting missed discs: a
    gap of MISSED_DISC_RATIO or more of the gaps near it (the median of up to NEAR_GAPS on
    each side; levels grow down the spine) counts one level more, and so on."""
    gaps = [float(np.linalg.norm(a.centre - b.centre)) for a, b in zip(discs, discs[1:])]
    warnings = []
    for index, (upper, lower) in enumerate(zip(discs, discs[1:])):
        near = gaps[max(0, index - NEAR_GAPS) : index] + gaps[index + 1 : index + 1 + NEAR_GAPS]
        spacing = float(np.median(near)) if near else gaps[index]
        steps = max(1, int(np.floor(gaps[index] / spacing + 2 - MISSED_DISC_RATIO)))
        lower.position = upper.position + steps
        if steps > 1:
            warnings.append(
                f"{steps - 1} disc(s) missing in the segmentation between "
                f"S = {upper.centre[2]:.0f} and {lower.centre[2]:.0f} mm: counted "
                "by spacing"
            )
    return warnings


def _signed(xyz: np.ndarray, disc: _Disc) -> np.ndarray:
    """Signed distance (mm) of points to a disc's plane, positive above it."""
    return (np.asarray(xyz) - disc.centre) @ disc.normal


def _levels_of(xyz: np.ndarray, discs: list[_Disc]) -> tuple[np.ndarray, np.ndarray]:
    """Level of each point: -1 above the top disc, disc position p just below disc p;
    within a gap of several levels, split by the fraction of the way down."""
    centres = np.stack([d.centre for d in discs])
    nearest = cKDTree(centres).query(xyz)[1]
    signed = np.einsum(
        "ij,ij->i", xyz - centres[nearest], np.stack([d.normal for d in discs])[nearest]
    )
    upper = np.where(signed >= 0, nearest - 1, nearest)  # index of the disc above (-1: none)
    positions = np.array([d.position for d in discs])
    level = np.where(upper >= 0, positions[np.maximum(upper, 0)], -1)
    fraction = np.zeros(len(xyz))
    inner = (upper >= 0) & (upper < len(discs) - 1)
    if inner.any():
        a, b = upper[inner], upper[inner] + 1
        depth = -np.einsum(
            "ij,ij->i", xyz[inner] - centres[a], np.stack([d.normal for d in discs])[a]
        )
        total = np.linalg.norm(centres[b] - centres[a], axis=1)
        fraction[inner] = np.clip(depth / total, 0, 0.999)
        steps = positions[b] - positions[a]
        level[inner] = positions[a] + np.floor(fraction[inner] * steps).astype(int)
    return level, fraction


def _disc_voxel_levels(mask, labels, discs) -> np.ndarray:
    """Index (into `discs`) of the disc nearest each disc voxel."""
    xyz = labels.world(np.argwhere(mask))
    return cKDTree(np.stack([d.centre for d in discs])).query(xyz)[1]


# -- anchors ------------------------------------------------------------------------------
def _is_sacrum(below: np.ndarray, discs: list[_Disc], volumes: np.ndarray, spacing: float) -> bool:
    """Whether the bone below the lowest disc is the sacrum: far larger, or far longer,
    than a vertebra."""
    if not len(below):
        return False
    complete = volumes[1:-1][-2:]  # the two lowest levels between two discs
    complete = complete[complete > 0]
    if len(complete) and volumes[-1] >= SACRUM_VOLUME * float(complete.max()):
        return True
    depth = float(-_signed(below, discs[-1]).min())
    return depth >= SACRUM_DEPTH * spacing


def parse_anchor(text: str) -> tuple[str, str | None, float | None]:
    """'L5' -> ('L5', None, None); 'T12/L1 disc' -> ('T12', 'L1', None); 'L1@-120' ->
    ('L1', None, -120.0)."""
    match = _ANCHOR.match(text or "")
    if not match:
        raise CordmapError(
            f"anchor '{text}' is not a vertebra or a disc: use e.g. 'L5' (the lowest vertebra "
            "in view), 'T12/L1 disc' (the lowest disc in view), or add '@S' for the one "
            "nearest S mm, e.g. 'T12/L1 disc@-350'"
        )
    upper, lower, at = match.groups()
    upper = vertebra(upper)
    lower = vertebra(lower) if lower else None
    if lower and VERTEBRAE.index(lower) != VERTEBRAE.index(upper) + 1:
        raise CordmapError(f"anchor '{text}': {upper} and {lower} are not adjacent vertebrae")
    return upper, lower, (float(at) if at is not None else None)


def _user_offset(anchor: str, discs: list[_Disc], bone_xyz: np.ndarray, level: np.ndarray) -> int:
    """Offset from disc positions to VERTEBRAE indices implied by the user's anchor."""
    upper, lower, at = parse_anchor(anchor)
    if lower:  # a disc: disc p lies above VERTEBRAE[offset + p]
        if at is None:
            disc = discs[-1]
        else:
            disc = min(discs, key=lambda d: abs(d.centre[2] - at))
            if abs(disc.centre[2] - at) > 0.5 * _median_spacing(discs):
                raise CordmapError(
                    f"anchor '{anchor}': no disc lies near S = {at:g} mm "
                    f"(nearest at {disc.centre[2]:.0f} mm); check the position"
                )
        return VERTEBRAE.index(lower) - disc.position
    present = np.unique(level)
    if at is None:
        chosen = int(present.max())
    else:
        centres = {int(p): bone_xyz[level == p].mean(axis=0) for p in present}
        chosen = min(centres, key=lambda p: abs(centres[p][2] - at))
        if abs(centres[chosen][2] - at) > 0.75 * _median_spacing(discs):
            raise CordmapError(
                f"anchor '{anchor}': no vertebra lies near S = {at:g} mm; check the position"
            )
    return VERTEBRAE.index(upper) - chosen


def _above_adult_conus(conus: np.ndarray, discs: list[_Disc], offset: int) -> bool:
    """Whether the conus tip, numbered from `offset`, lies above the CONUS_HIGHEST
    vertebra (above the plane of the disc on top of it)."""
    level = int(_levels_of(conus[None], discs)[0][0])
    return offset + level < VERTEBRAE.index(CONUS_HIGHEST)


def _fits(offset: int, count: int) -> bool:
    """Whether `count` levels numbered from `offset` stay within C1..sacrum."""
    return offset - 1 >= 0 and offset + count - 1 < len(VERTEBRAE)


def _names(offset: int, count: int, source: str) -> list[str]:
    """Vertebra names of levels -1 .. count-1 (index 0 = above the top disc)."""
    first, last = offset - 1 + 0, offset + count - 1
    if first < 0 or last >= len(VERTEBRAE):
        raise CordmapError(
            f"numbering {source} from this anchor runs past "
            f"{'C1' if first < 0 else 'the sacrum'}: the anchor does not fit the vertebrae "
            "in view; check it against the sagittal figure"
        )
    return [VERTEBRAE[offset - 1 + i] for i in range(count + 1)]


def _variants(discs: list[_Disc], volumes: np.ndarray, offset: int) -> list[str]:
    warnings = []
    spacing = _median_spacing(discs)
    for upper, lower in zip(discs, discs[1:]):
        gap = float(np.linalg.norm(upper.centre - lower.centre))
        if lower.position - upper.position == 1 and gap > MERGED_HEIGHT * spacing:
            warnings.append(
                f"a level {gap:.0f} mm tall (median {spacing:.0f} mm) below "
                f"S = {upper.centre[2]:.0f} mm: vertebrae may be merged"
            )
    by_name = {
        VERTEBRAE[offset + d.position - 1] + "/" + VERTEBRAE[offset + d.position]: d
        for d in discs
        if 0 < offset + d.position < len(VERTEBRAE)
    }
    if (
        "L5/S" in by_name
        and "L4/L5" in by_name
        and by_name["L5/S"].height < 0.5 * by_name["L4/L5"].height
    ):
        warnings.append(
            "the L5/S1 disc is under half as high as L4/L5: a lumbosacral "
            "transitional vertebra is suspected (4 or 6 lumbar vertebrae); "
            "confirm the count on a whole-spine image or X-ray"
        )
    return warnings


# -- cord ---------------------------------------------------------------------------------
def _cord_end(labels: LabelVolume, conus: np.ndarray | None, column) -> np.ndarray | None:
    """The lower of the conus tip and the lowest cord voxel inside the image (RAS mm; on
    the column at that height when it is the voxel): where the planning will take the
    cord to end, unless it is a small piece far below the cord, which the planner's
    centreline leaves off. None when there is no cord or the image cuts it."""
    cord = np.argwhere(np.isin(np.asarray(labels.array), _cord_ids(labels)))
    if not len(cord) or cord[:, 2].min() == 0:
        return conus
    xyz = labels.world(cord)
    lowest = xyz[np.argmin(xyz[:, 2])]
    if conus is not None and conus[2] <= lowest[2]:
        return conus
    if column is not None:
        lowest[:2] = [np.polyval(fit, lowest[2]) for fit in column]
    return lowest


def _cord_ids(labels: LabelVolume) -> list[int]:
    return [label.id for label in labels.schema.of_class(*CORD_CLASSES)]


def conus_tip(labels: LabelVolume) -> np.ndarray | None:
    """Caudal end (RAS mm) of the largest 26-connected piece of cord, followed down through
    the pieces that start within CONTINUES_MM below its end (the cord past a slice the
    segmentation missed); None when there is no cord, it reaches the image's lowest slice
    (the image cuts the cord) or it spans less than CONUS_CORD_MM along S (too little cord
    to trust its end)."""
    found = _cord_to_conus(labels)
    return None if found is None else found[0]


def _cord_to_conus(labels: LabelVolume) -> tuple[np.ndarray, float] | None:
    """The conus tip (`conus_tip`) and the top (S, mm) of the cord that ends there."""
    cord = np.isin(np.asarray(labels.array), _cord_ids(labels))
    if not cord.any():
        return None
    pieces, _ = ndimage.label(cord, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(pieces.ravel())
    sizes[0] = 0
    chain = [int(np.argmax(sizes))]
    spans = {}
    for index, box in enumerate(ndimage.find_objects(pieces), start=1):
        s = labels.world(np.argwhere(pieces[box] == index) + [b.start for b in box])[:, 2]
        spans[index] = (float(s.min()), float(s.max()))
    end = spans[chain[0]][0]
    for index in sorted(spans, key=lambda i: -spans[i][1]):
        low, top = spans[index]
        if index != chain[0] and end - CONTINUES_MM <= top < end:
            chain.append(index)
            end = min(end, low)
    ijk = np.argwhere(np.isin(pieces, chain))
    xyz = labels.world(ijk)
    lowest = np.argmin(xyz[:, 2])
    if ijk[lowest, 2] == 0 or np.ptp(xyz[:, 2]) < CONUS_CORD_MM:
        return None  # the image cuts the cord, or too little cord to trust its end
    # the tip: the centroid of the last 2 mm of cord, not a single voxel
    tip_zone = xyz[xyz[:, 2] <= xyz[lowest, 2] + 2.0]
    centre = tip_zone.mean(axis=0)
    centre[2] = xyz[lowest, 2]
    return centre, float(xyz[:, 2].max())


def _describe_point(xyz: np.ndarray, discs: list[_Disc], names: list[str]) -> str:
    """'L1 lower third' or 'L1/L2 disc' for a point, from the disc planes around it."""
    level, fraction = _levels_of(np.asarray(xyz)[None], discs)
    signed = [float(_signed(xyz, d)) for d in discs]
    for d, s in zip(discs, signed):
        if abs(s) <= d.height / 2:
            return f"{names[d.position]}/{names[d.position + 1]} disc"
    name = names[int(level[0]) + 1]
    if int(level[0]) < 0 or int(level[0]) >= discs[-1].position:
        return f"{name} (beyond the discs in view)"
    third = ("upper", "middle", "lower")[min(2, int(fraction[0] * 3))]
    return f"{name} {third} third"
