"""From an unlabelled scan to a checked plan, unattended (`cordmap auto IMAGE CASE`).

import -> segment with the bundled model (vertebrae and discs numbered, `anatomy.numbering`)
-> validate -> mesh -> plan -> viewer site -> report. Every stage is recorded in case.json
as when run alone, and a stage whose inputs and parameters are unchanged is reused, so
re-running is quick. A case folder created by a failed run is removed: no partial case.
A scan that shows too little to plan from (the enlargement above the image, say) is no
failure: the other stages run, and the report and the result say why there is no plan.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cordmap.errors import CordmapError

if TYPE_CHECKING:
    from cordmap.planning.results import Plan

VIEWER_SITE = "viewer-site"


@dataclass
class AutoResult:
    case: Path
    report: Path
    site: Path
    plan: Plan | None
    levels: dict
    warnings: list[str] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)  # stages reused as they were
    no_plan: str | None = None  # why the planner refused the scan, when it did


def run_auto(
    image: str | Path,
    case_dir: str | Path,
    *,
    series: str | None = None,
    subject: str = "sub-01",
    anchor: str | None = None,
    model: str | Path | None = None,
    on_step: Callable[[str], None] = lambda step: None,
) -> AutoResult:
    """Run every stage on `image` into `case_dir` (see the module notes)."""
    case_dir = Path(case_dir)
    fresh = not case_dir.exists() or (case_dir.is_dir() and not any(case_dir.iterdir()))
    try:
        return _run(image, case_dir, series, subject, anchor, model, on_step)
    except BaseException:
        if fresh and case_dir.is_dir():
            shutil.rmtree(case_dir, ignore_errors=True)
        raise


def _run(image, case_dir: Path, series, subject, anchor, model, on_step) -> AutoResult:
    from cordmap.anatomy.validate import validate
    from cordmap.pipeline.imports import import_case
    from cordmap.pipeline.mesh import mesh_case
    from cordmap.pipeline.plan import plan_or_refusal
    from cordmap.pipeline.report import write_case_report
    from cordmap.pipeline.segment import segment_case
    from cordmap.pipeline.view import export_case
    from cordmap.planning.geometry import cord_ids

    reused = []
    on_step("import")
    imported = import_case(image, case_dir, subject=subject, series=series)
    if imported.up_to_date:
        reused.append("import")
    if "manual" in imported.case.label_sources():
        raise CordmapError(
            f"{case_dir} holds manual labels, which every later stage would "
            "use instead of the automatic ones; run `cordmap auto` into a new "
            "case folder"
        )
    on_step("segment")
    segmentation = segment_case(case_dir, model, anchor=anchor, require_levels=True)
    if segmentation.up_to_date:
        reused.append("segment")
    if segmentation.levels is None:
        raise CordmapError(f"{case_dir}: the vertebral levels could not be numbered")
    labels = imported.case.labels("unet")
    if not set(cord_ids(labels)) & set(labels.ids()):
        raise CordmapError(
            f"no spinal cord found in {image}: a plan needs the cord in view "
            "(the scan may lie below the conus); check the image"
        )
    on_step("validate")
    report = validate(labels, partial=True)
    warnings = list(segmentation.warnings)
    warnings += [f.as_text() for f in report.findings]
    on_step("mesh")
    if mesh_case(case_dir, formats=("glb", "stl")).up_to_date:
        reused.append("mesh")
    on_step("plan")
    planned, refusal = plan_or_refusal(imported.case)
    if planned is not None and planned.up_to_date:
        reused.append("plan")
    on_step("viewer")
    site = export_case(case_dir, case_dir / VIEWER_SITE)
    on_step("report")
    written = write_case_report(case_dir, site=site, planned=(planned, refusal))
    return AutoResult(
        case_dir,
        written.path,
        site,
        written.plan,
        segmentation.levels,
        warnings,
        reused,
        written.no_plan,
    )
