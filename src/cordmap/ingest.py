"""Ingest: read an MRI (NIfTI, DICOM series or slice stack) and its annotations into memory.

Annotations are protocol labels (a NIfTI label volume or per-slice masks), optionally
completed by Spinal Cord Toolbox outputs in SCT's own conventions: the cord's spinal levels
and the dorsal rootlets by spinal level (see cordmap.io.sct). Everything is checked as it is
read; `cordmap.pipeline.imports` writes it into a case folder. Inputs are never modified.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cordmap.errors import CordmapError
from cordmap.io.nifti import is_nifti, read_labels, read_nifti
from cordmap.io.slices import SLICE_SUFFIXES, read_masks, read_slice_stack
from cordmap.protocol.schema import LabelSchema
from cordmap.volume import LabelVolume, Volume


def read_image(
    source: str | Path,
    *,
    series: str | int | None = None,
    spacing: tuple[float, float, float] | None = None,
    orientation: str = "axial",
    reverse: bool = False,
) -> tuple[Volume, dict]:
    """Read an MRI from a NIfTI file, a folder holding a DICOM export, or a folder of slices
    (`spacing`, `orientation` and `reverse` apply to slices: see cordmap.io.slices).

    Returns the volume and a description of its source for the case manifest: its format
    and, for DICOM, whether the export was de-identified (PatientIdentityRemoved)."""
    source = Path(source)
    if not source.exists():
        raise CordmapError(f"{source} does not exist")
    if not source.is_file() and not source.is_dir():
        raise CordmapError(
            f"{source} is a device or pipe, not a file or folder; pass a "
            ".nii/.nii.gz file, a DICOM folder or a folder of PNG/TIFF slices"
        )
    if source.is_file():
        if is_nifti(source):
            return _finite(read_nifti(source), source), {"format": "nifti"}
        raise CordmapError(
            f"{source} is not a NIfTI file; pass a .nii/.nii.gz file, a DICOM folder or a "
            "folder of PNG/TIFF slices"
        )
    if _has_slices(source):
        volume: Volume = read_slice_stack(
            source, spacing=spacing, orientation=orientation, reverse=reverse
        )
        return volume, {"format": "slices"}
    from cordmap.io.dicom import identity_removed, read_dicom_with_info

    volume, info = read_dicom_with_info(source, series=series)
    return volume, {"format": "dicom", "patient_identity_removed": identity_removed(info)}


def read_annotations(
    source: str | Path,
    image: Volume,
    schema: LabelSchema,
    *,
    colour_table: str | Path | None = None,
) -> LabelVolume:
    """Read labels for `image`: a NIfTI label volume or a folder of per-slice masks
    (one folder per structure, or colour-coded slices read with `colour_table`)."""
    source = Path(source)
    if not source.exists():
        raise CordmapError(f"labels {source} do not exist")
    if source.is_file():
        labels = read_labels(source, schema)
    else:
        labels = read_masks(source, image, schema, colour_table=colour_table)
    image.require_same_grid(labels)
    labels.require_known_ids()
    return labels


def read_sct_annotations(
    image: Volume,
    labels: LabelVolume | None,
    schema: LabelSchema,
    *,
    spinal_levels: str | Path | None = None,
    rootlets: str | Path | None = None,
) -> LabelVolume:
    """`labels` (or, without them, an empty label volume on the image's grid) completed by
    SCT's spinal levels (-> cord segments) and rootlets (-> dorsal roots, left or right)."""
    from cordmap.io import sct

    if labels is None:
        labels = LabelVolume(np.zeros(image.shape, np.uint16), image.affine, schema=schema)
    if spinal_levels is not None:
        levels = sct.read_sct_levels(spinal_levels, image, "spinal levels")
        labels = sct.add_spinal_levels(labels, levels, Path(spinal_levels).name)
    if rootlets is not None:
        found = sct.read_sct_levels(rootlets, image, "rootlets")
        labels = sct.add_rootlets(labels, found, Path(rootlets).name)
    return labels


def _finite(volume: Volume, source: Path) -> Volume:
    """Refuse an image with NaN or infinite voxels: intensities, and everything measured
    from them, would be meaningless."""
    array = np.asarray(volume.array)
    if np.issubdtype(array.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise CordmapError(
                f"{source} has {bad:,} NaN or infinite voxels of {array.size:,}; re-export "
                "the image from the scanner (or replace the bad voxels) before importing it"
            )
    return volume


def _has_slices(folder: Path) -> bool:
    return any(p.suffix.lower() in SLICE_SUFFIXES for p in folder.iterdir() if p.is_file())
