"""The segment stage: a case's image through a U-Net into its desc-unet labels
(`cordmap segment`), and numbering their vertebrae again (`cordmap levels`).

The network runs in `cordmap.learn.infer.segment_image` (needs `cordmap[learn]`); reading
back what the stage recorded (`Segmentation`, `segmentation_warnings`) needs plain files and
numbers only, so that `cordmap levels` and the report need no PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cordmap.anatomy.numbering import number_vertebrae
from cordmap.case import Case
from cordmap.errors import CordmapError
from cordmap.interrupts import interrupts_held
from cordmap.io.nifti import write_nifti
from cordmap.pipeline.stages import is_current, recorded, stage_inputs

STAGE = "segment"


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


def segment_case(
    case_dir: str | Path,
    model_path: str | Path | None = None,
    *,
    overlap: float | None = None,
    device: str = "cpu",
    keep_largest: tuple[str, ...] = (),
    anchor: str | None = None,
    require_levels: bool = False,
) -> Segmentation:
    """Segment a case's image with a model file (default: the bundled model) by
    `cordmap.learn.infer.segment_image` (`overlap` default `cordmap.learn.infer.OVERLAP`),
    write and record `..._desc-unet_dseg`."""
    from cordmap.learn.infer import OVERLAP, segment_image
    from cordmap.learn.modelfile import load_model

    overlap = OVERLAP if overlap is None else overlap
    case = Case.open(case_dir)
    image_path, path = read = stage_inputs(case, STAGE, {"model": model_path})
    parameters = {
        "model": str(path.resolve()),
        "overlap": overlap,
        "keep_largest": list(keep_largest),
        "anchor": anchor,
    }
    out = case.labels_path("unet")
    if is_current(case, STAGE, read, parameters):
        return Segmentation.from_results(out, case.manifest["stages"][STAGE]["results"], True)
    model = load_model(path, case.schema)
    segmented = segment_image(
        model,
        case.image(),
        str(image_path),
        overlap=overlap,
        device=device,
        keep_largest=keep_largest,
        anchor=anchor,
        require_levels=require_levels,
    )
    results = {
        "bundled": model_path is None,
        "classes": model.mapping.names,
        "classes_not_written": model.mapping.unwritten(),
        **segmented.results(),
    }
    with interrupts_held():  # a Ctrl-C does not leave the labels unrecorded
        write_nifti(segmented.labels, out)
        case.record(STAGE, inputs=read, outputs=[out], parameters=parameters, results=results)
    return Segmentation.from_results(out, results)


def renumber_case(case_dir: str | Path, anchor: str | None = None) -> Segmentation:
    """Number the vertebrae and discs of a case's desc-unet labels again (an `anchor` from
    the user, say); rewrite them and update the segment stage's record."""
    case = Case.open(case_dir)
    entry = recorded(case, STAGE)
    path = case.labels_path("unet")
    if entry is None or not path.is_file():
        raise CordmapError(
            f"{case.root} has no U-Net segmentation to number; run "
            f"`cordmap segment {case.root}` first"
        )
    numbering = number_vertebrae(case.labels("unet"), anchor, source=str(path))
    results = {**entry.get("results", {}), "levels": numbering.to_dict(), "levels_error": None}
    with interrupts_held():  # a Ctrl-C does not leave the labels unrecorded
        write_nifti(numbering.labels, path)
        case.record(
            STAGE,
            inputs=[case.image_path, Path(entry["parameters"]["model"])],
            outputs=[path],
            parameters={**entry["parameters"], "anchor": anchor},
            results=results,
        )
    return Segmentation.from_results(path, results)
