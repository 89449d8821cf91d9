"""Spinal Cord Toolbox (SCT) outputs as labels of the annotation protocol.

SCT and its PAM50 template label by convention, not by protocol id:

- a **cord mask** (`*_seg.nii.gz`, 1 = cord) is already a protocol label volume (id 1 is
  the cord, segment unassigned) and is imported with `--labels` as it is;
- **spinal levels** (`PAM50_spinal_levels`, SCT's spinal-level outputs): cord voxels valued
  by their spinal segment in PAM50 numbering, 1..30 = C1..S5. Value n becomes the cord
  segment of PAM50 number n (id 100 + n);
- **rootlets** (`*_rootlets.nii.gz`, SCT's `seg_spinal_rootlets_t2w` and `PAM50_rootlets`):
  dorsal rootlets valued by spinal level n in PAM50 numbering, with no side. Value n becomes
  the dorsal root of segment n, left or right by this rule: each 26-connected piece of
  one value is one side's rootlets; for each of its voxels, take its R coordinate (RAS+ mm)
  minus the R coordinate of the centre of the cord's cross-section in the voxel's axial
  plane (the mean of that plane's cord voxels; a plane without cord uses the nearest one
  with cord); the piece is the patient's right when the mean of these offsets is positive,
  else the patient's left.

Rootlets lie outside the cord: a rootlet voxel on the cord, or in a hole of the cord's axial
cross-section, is refused, as are values outside 0..30 and files on another grid than the
image. Inputs are never modified.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from cordmap.errors import CordmapError
from cordmap.io.nifti import read_nifti
from cordmap.protocol.levels import SEGMENTS, segment_name
from cordmap.protocol.schema import CORD_CLASSES
from cordmap.volume import LabelVolume, Volume

#: Protocol classes rootlets may be painted over (the CSF around the cord holds them).
ROOTLET_BACKGROUND = ("csf",)


def read_sct_levels(path: str | Path, image: Volume, what: str) -> np.ndarray:
    """A file of SCT's level convention (0 = nothing, 1..30 = PAM50 spinal level) on the
    image's grid, as an integer array in canonical RAS+ order."""
    path = Path(path)
    volume = read_nifti(path)
    image.require_same_grid(volume, f"{what} {path.name}")
    values = np.unique(volume.array)
    wrong = [v for v in values if v != round(float(v)) or not 0 <= v <= len(SEGMENTS)]
    if wrong:
        shown = ", ".join(f"{float(v):g}" for v in wrong[:5]) + (", ..." if len(wrong) > 5 else "")
        raise CordmapError(
            f"{what} {path} hold the values {shown}, outside SCT's convention (0 = none, "
            f"1..{len(SEGMENTS)} = spinal level C1..S5 in PAM50 numbering); pass the file "
            "labelled by spinal level"
        )
    return np.rint(volume.array).astype(np.uint8)


def add_spinal_levels(labels: LabelVolume, levels: np.ndarray, source: str) -> LabelVolume:
    """`labels` with every voxel of spinal level n (PAM50 numbering) relabelled as the cord
    segment n; those voxels must be background or cord in `labels`."""
    schema = labels.schema
    inside = levels > 0
    _require_free(
        labels,
        inside,
        (0, *_ids(labels, CORD_CLASSES)),
        f"spinal levels {source}",
        "they label the cord, so they may only cover the cord or background",
    )
    array = labels.array.astype(np.uint16)
    for number in (int(n) for n in np.unique(levels[inside])):
        array[levels == number] = schema.find("segment", segment_name(number)).id
    return LabelVolume(array, labels.affine, schema=schema)


def add_rootlets(labels: LabelVolume, rootlets: np.ndarray, source: str) -> LabelVolume:
    """`labels` with SCT's dorsal rootlets (valued by PAM50 spinal level) added as the dorsal
    roots of the protocol, each piece given its side by the rule of the module docstring."""
    schema = labels.schema
    cord = np.isin(labels.array, _ids(labels, CORD_CLASSES))
    if not cord.any():
        raise CordmapError(
            f"rootlets {source} need the cord to tell left from right: pass the cord mask "
            "with `labels` (or the cord's spinal levels with `spinal_levels`)"
        )
    inside = rootlets > 0
    in_cord = _inside_cord(inside, cord)
    if in_cord:
        raise CordmapError(
            f"rootlets {source} have {in_cord} voxels inside the cord (on the cord mask or in a "
            "hole of its axial cross-section); rootlets lie outside the cord: check that the "
            "rootlets and the cord mask belong to the same image"
        )
    _require_free(
        labels,
        inside,
        (0, *_ids(labels, ROOTLET_BACKGROUND)),
        f"rootlets {source}",
        "rootlets may only cover background or CSF",
    )
    centre_r = _cord_centre_r(labels, cord)
    array = labels.array.astype(np.uint16)
    for number, box in enumerate(ndimage.find_objects(rootlets), start=1):
        if box is None:
            continue
        mask = rootlets[box] == number
        pieces, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
        ijk = np.argwhere(mask) + [s.start for s in box]
        offsets = labels.world(ijk)[:, 0] - centre_r[ijk[:, 2]]
        piece = pieces[mask]
        mean_offset = np.bincount(piece, weights=offsets) / np.maximum(np.bincount(piece), 1)
        level = segment_name(number)
        ids = np.array(
            [0]
            + [
                schema.find("dorsal_root", level, "right" if mean_offset[p] > 0 else "left").id
                for p in range(1, count + 1)
            ],
            dtype=np.uint16,
        )
        array[box][mask] = ids[piece]
    return LabelVolume(array, labels.affine, schema=schema)


def _inside_cord(mask: np.ndarray, cord: np.ndarray) -> int:
    """Voxels of `mask` on the cord or enclosed by it in their axial plane."""
    planes = np.flatnonzero(mask.any(axis=(0, 1)) & cord.any(axis=(0, 1)))
    return sum(
        int((ndimage.binary_fill_holes(cord[:, :, k]) & mask[:, :, k]).sum()) for k in planes
    )


def _cord_centre_r(labels: LabelVolume, cord: np.ndarray) -> np.ndarray:
    """R coordinate (RAS+ mm) of the centre of the cord's cross-section in each axial plane
    k (the mean of its cord voxels; a plane without cord takes the nearest plane with cord)."""
    planes = np.flatnonzero(cord.any(axis=(0, 1)))
    centres = np.array([[*np.argwhere(cord[:, :, k]).mean(axis=0), k] for k in planes])
    all_planes = np.arange(cord.shape[2])
    nearest = np.abs(all_planes[:, None] - planes[None, :]).argmin(axis=1)
    centre_ijk = centres[nearest]
    centre_ijk[:, 2] = all_planes  # the centre's (i, j), carried into the voxel's own plane
    return labels.world(centre_ijk)[:, 0]


def _ids(labels: LabelVolume, classes: tuple[str, ...]) -> list[int]:
    return [label.id for label in labels.schema.of_class(*classes)]


def _require_free(labels: LabelVolume, mask: np.ndarray, allowed, what: str, rule: str) -> None:
    """Refuse `mask` covering voxels of `labels` other than the `allowed` ids."""
    covered = labels.array[mask & ~np.isin(labels.array, allowed)]
    if covered.size:
        names = sorted(
            {
                labels.schema[int(i)].name if int(i) in labels.schema else str(int(i))
                for i in np.unique(covered)
            }
        )
        raise CordmapError(
            f"{what} cover {covered.size} voxels of {', '.join(names)} in the labels; {rule}"
        )
