"""Ingest: read an MRI (NIfTI, DICOM series or slice stack) and its annotations into a case folder.

Annotations are protocol labels (a NIfTI label volume or per-slice masks), optionally
completed by Spinal Cord Toolbox outputs in SCT's own conventions: the cord's spinal levels
and the dorsal rootlets by spinal level (see cordmap.io.sct).

Everything is read and checked in memory first; only then are files written, each
atomically, so bad input leaves nothing behind. Inputs are never modified. Re-running
with the same inputs and parameters finds the case up to date and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from cordmap import __version__
from cordmap.atomic import atomic_dir, clean_stale, write_text
from cordmap.case import MANIFEST, PROTOCOL, Case, check_subject
from cordmap.errors import CordmapError
from cordmap.io.nifti import is_nifti, read_labels, read_nifti, write_nifti
from cordmap.io.slices import SLICE_SUFFIXES, read_masks, read_slice_stack
from cordmap.protocol.schema import DEFAULT_PROTOCOL, LabelSchema
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


@dataclass(frozen=True)
class ImportResult:
    case: Case
    up_to_date: bool


def import_case(
    image_source: str | Path,
    out: str | Path,
    *,
    labels_source: str | Path | None = None,
    subject: str = "sub-01",
    series: str | None = None,
    spacing: tuple[float, float, float] | None = None,
    orientation: str = "axial",
    reverse: bool = False,
    colour_table: str | Path | None = None,
    protocol: str | Path | None = None,
    spinal_levels: str | Path | None = None,
    rootlets: str | Path | None = None,
) -> ImportResult:
    """Build (or refresh) the case folder `out` from an image and optional annotations:
    `labels_source` in the protocol's ids, `spinal_levels` and `rootlets` in SCT's conventions
    (see cordmap.io.sct), all merged into the case's manual labels."""
    out = Path(out)
    check_subject(subject)
    parameters = {
        "subject": subject,
        "series": series,
        "spacing_mm": list(spacing) if spacing else None,
        "orientation": orientation,
        "reverse": reverse,
        "protocol": str(protocol) if protocol else None,
    }
    sct_inputs = {"spinal_levels": spinal_levels, "rootlets": rootlets}
    parameters |= {key: Path(path).name for key, path in sct_inputs.items() if path}
    inputs = [
        Path(p) for p in (image_source, labels_source, colour_table, *sct_inputs.values()) if p
    ]
    previous = {}
    clean_stale(out)
    if (out / MANIFEST).is_file():
        existing = Case.open(out)
        if existing.subject != subject:
            raise CordmapError(
                f"{out} holds subject {existing.subject}; importing {subject} into it would mix "
                "two subjects' files: choose a new case folder (or delete this one)"
            )
        if existing.is_up_to_date("import", inputs=inputs, parameters=parameters):
            return ImportResult(existing, True)
        previous = existing.manifest
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CordmapError(
            f"{out} exists and is not a cordmap case folder; choose a new or empty folder"
        )

    schema_file = Path(protocol) if protocol else DEFAULT_PROTOCOL
    schema = LabelSchema.load(schema_file)
    image, source = read_image(
        image_source, series=series, spacing=spacing, orientation=orientation, reverse=reverse
    )
    labels = (
        read_annotations(labels_source, image, schema, colour_table=colour_table)
        if labels_source
        else None
    )
    if spinal_levels or rootlets:
        labels = read_sct_annotations(
            image, labels, schema, spinal_levels=spinal_levels, rootlets=rootlets
        )

    manifest = {
        **previous,
        "subject": subject,
        "cordmap_version": __version__,
        "source": source,
        "protocol": {"name": schema.name, "version": schema.version, "file": PROTOCOL},
    }
    manifest.setdefault("created", datetime.now(UTC).isoformat(timespec="seconds"))
    if previous:  # refresh in place: each file is replaced atomically, case.json last
        return ImportResult(
            _write_case(Case(out, manifest), schema_file, image, labels, inputs, parameters), False
        )
    with atomic_dir(out) as tmp:  # a new case appears whole or not at all
        _write_case(Case(tmp, manifest), schema_file, image, labels, inputs, parameters)
    return ImportResult(Case.open(out), False)


def _write_case(
    case: Case, schema_file: Path, image: Volume, labels: LabelVolume | None, inputs, parameters
) -> Case:
    root = case.root
    write_text(root / PROTOCOL, schema_file.read_text(encoding="utf-8"))
    write_nifti(image, case.image_path)
    outputs = [root / PROTOCOL, case.image_path]
    if labels is not None:
        write_nifti(labels, case.labels_path("manual"))
        outputs.append(case.labels_path("manual"))
    elif case.labels_path("manual").exists():
        case.labels_path("manual").unlink()  # labels of a previous import no longer apply
    case.record("import", inputs=inputs, outputs=outputs, parameters=parameters)
    return case


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
