"""The import stage: an MRI and its annotations into a case folder (`cordmap import`).

Everything is read and checked in memory first (`cordmap.ingest`); only then are files
written, each atomically, so bad input leaves nothing behind. Inputs are never modified.
Re-running with the same inputs and parameters finds the case up to date and writes
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cordmap import __version__
from cordmap.atomic import atomic_dir, clean_stale, write_text
from cordmap.case import MANIFEST, PROTOCOL, Case, check_subject
from cordmap.errors import CordmapError
from cordmap.ingest import read_annotations, read_image, read_sct_annotations
from cordmap.io.nifti import write_nifti
from cordmap.protocol.schema import DEFAULT_PROTOCOL, LabelSchema
from cordmap.volume import LabelVolume, Volume

STAGE = "import"


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
        if existing.is_up_to_date(STAGE, inputs=inputs, parameters=parameters):
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
    case.record(STAGE, inputs=inputs, outputs=outputs, parameters=parameters)
    return case
