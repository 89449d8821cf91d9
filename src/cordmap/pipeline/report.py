"""The report stage: the case report, `CASE/report/<subject>_report.html`.

`write_case_report(CASE)` takes the case's current plan (`plan_or_refusal`: planned first
when `CASE/plan/plan.json` is missing or stale, with the options the plan was last made
with) and the mesh stage's meshes (`case_meshes`), draws the figures and writes the page
(`cordmap.report.case_report`). When the planner refuses the case (the enlargement out of
view, say), the page shows the labels and says why there is no plan: the segmentation,
levels and conus still help the clinician. The "report" stage is recorded in case.json.
Nothing is written when anything fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cordmap.atomic import write_text
from cordmap.case import Case
from cordmap.errors import CordmapError
from cordmap.interrupts import interrupts_held
from cordmap.pipeline.plan import plan_or_refusal
from cordmap.pipeline.segment import Segmentation
from cordmap.pipeline.stages import REPORT_DIR, recorded, stage_inputs
from cordmap.planning.files import Written
from cordmap.planning.results import Plan
from cordmap.report.case_report import draw_figures, render_html

STAGE = "report"


@dataclass(frozen=True)
class CaseReport:
    path: Path
    plan: Plan | None
    images: dict[str, bytes]  # figure name -> PNG
    no_plan: str | None = None  # why the planner refused the case, when it did


def write_case_report(
    case_dir: str | Path,
    out: str | Path | None = None,
    site: str | Path | None = None,
    *,
    planned: tuple[Written[Plan] | None, str | None] | None = None,
) -> CaseReport:
    """Plan when needed, draw the figures, write the HTML (default
    CASE/report/<subject>_report.html) and record the stage. `site`: a static viewer site
    (`cordmap view CASE --static DIR`) to link to, relative to the page. A case the
    planner refuses gets a report without a plan, saying why (`CaseReport.no_plan`).
    `planned`: what `plan_or_refusal(CASE)` just returned, when the caller has it (`cordmap
    auto`), so that a refused case is not planned twice."""
    case = Case.open(case_dir)
    labels = case.labels()  # no labels: a clear CordmapError before anything is written
    out = Path(out) if out else case.path(f"{REPORT_DIR}/{case.subject}_report.html")
    if out.suffix.lower() not in (".html", ".htm"):
        raise CordmapError(f"`out` {out} must end in .html")
    site = Path(site) if site else None
    if site is not None and not (site / "index.html").is_file():
        raise CordmapError(
            f"{site} is not a viewer site (no index.html); write one with "
            f"`cordmap view {case.root} --static DIR` or leave out `site`"
        )
    written, no_plan = planned or plan_or_refusal(case)
    plan = written.result if written else None
    image = case.image()
    automatic = automatic_steps(case)
    from cordmap.pipeline.mesh import case_meshes  # zmesh and trimesh load slowly

    images = draw_figures(image, labels, plan, case_meshes(case.root), automatic)
    source = case.labels_path(case.label_sources()[0]).name
    page = render_html(case.subject, plan, images, case.root, out, site, automatic, source, no_plan)
    with interrupts_held():  # a Ctrl-C does not leave the page unrecorded
        write_text(out, page)
        case.record(
            STAGE,
            inputs=stage_inputs(case, STAGE),
            outputs=[out],
            parameters={"site": str(site) if site else None},
        )
    return CaseReport(out, plan, images, no_plan)


def automatic_steps(case: Case) -> dict | None:
    """What the automatic segmentation did, when the case's labels are the U-Net's: the
    model (and the card of a bundled one), the vertebral levels, the warnings and how far
    the image shows the cord's core below the conus tip."""
    if case.label_sources()[:1] != ["unet"]:
        return None
    entry = recorded(case, "segment") or {}
    results = entry.get("results", {})
    from cordmap.learn.bundled import MODELS_DIR, bundled_model

    model = Path(entry.get("parameters", {}).get("model", "unknown model"))
    card = None
    if model.parent == MODELS_DIR.resolve() and (model.parent / f"{model.stem}.json").is_file():
        card = bundled_model(model.stem).card
    found = Segmentation.from_results(case.labels_path("unet"), results)
    return {
        "model": model.name,
        "card": card,
        "levels": found.levels,
        "warnings": found.warnings,
        "conus_core_mm": results.get("conus_core_mm"),
    }
