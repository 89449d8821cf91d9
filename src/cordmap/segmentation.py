"""A case's automatic segmentation as the segment stage recorded it, and numbering its
vertebrae again: plain files and numbers, no neural network (so `cordmap levels` and the
report need no `cordmap[learn]`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cordmap.anatomy.numbering import number_vertebrae
from cordmap.errors import CordmapError


@dataclass
class Segmentation:
    """What `segment_case` wrote and found."""

    path: Path
    warnings: list[str]  # plausibility of the segmentation, then of the levels
    levels: dict | None  # `Numbering.to_dict()`, None when the levels could not be numbered
    up_to_date: bool = False

    @classmethod
    def from_results(cls, path: Path, results: dict, up_to_date: bool = False) -> Segmentation:
        """From the `results` recorded in case.json by the segment stage."""
        return cls(path, segmentation_warnings(results), results.get("levels"), up_to_date)


def segmentation_warnings(results: dict) -> list[str]:
    """What needs a look in a segment stage's `results`: the plausibility warnings, why
    the levels were not numbered, then the numbering's warnings."""
    levels = results.get("levels")
    warnings = list(results.get("warnings", []))
    if results.get("levels_error"):
        warnings.append(f"vertebral levels not numbered: {results['levels_error']}")
    return warnings + (levels["warnings"] if levels else [])


def renumber_case(case_dir: str | Path, anchor: str | None = None) -> Segmentation:
    """Number the vertebrae and discs of a case's desc-unet labels again (an `anchor` from
    the user, say); rewrite them and update the segment stage's record."""
    from cordmap.case import Case
    from cordmap.io.nifti import write_nifti

    case = Case.open(case_dir)
    entry = case.manifest.get("stages", {}).get("segment")
    path = case.labels_path("unet")
    if entry is None or not path.is_file():
        raise CordmapError(
            f"{case.root} has no U-Net segmentation to number; run "
            f"`cordmap segment {case.root}` first"
        )
    numbering = number_vertebrae(case.labels("unet"), anchor, source=str(path))
    write_nifti(numbering.labels, path)
    results = {**entry.get("results", {}), "levels": numbering.to_dict(), "levels_error": None}
    case.record(
        "segment",
        inputs=[case.image_path, Path(entry["parameters"]["model"])],
        outputs=[path],
        parameters={**entry["parameters"], "anchor": anchor},
        results=results,
    )
    return Segmentation.from_results(path, results)
