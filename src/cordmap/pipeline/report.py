"""The report stage: the case report, `CASE/report/<subject>_report.html`.

`write_case_report(CASE)` takes the case's current plan (`current_plan`: planned first
when `CASE/plan/plan.json` is missing or stale, with the options the plan was last made
with) and the mesh stage's meshes (`case_meshes`), draws the figures and writes the page
(`cordmap.report.case_report`). The "report" stage is recorded in case.json. Nothing is
written when anything fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cordmap.atomic import write_text
from cordmap.case import Case
from cordmap.errors import CordmapError
from cordmap.pipeline.plan import current_plan
from cordmap.pipeline.segment import Segmentation
from cordmap.pipeline.stages import REPORT_DIR, recorded, stage_inputs
from cordmap.planning.results import Plan
from cordmap.report.case_report import draw_figures, render_html

STAGE = "report"


@dataclass(frozen=True)
class CaseReport:
    path: Path
    plan: Plan
    images: dict[str, bytes]  # figure name -> PNG


def write_case_report(
    case_dir: str | Path, out: str | Path | None = None, site: str | Path | None = None
) -> CaseReport:
    """Plan when needed, draw the figures, write the HTML (default
    CASE/report/<subject>_report.html) and record the stage. `site`: a static viewer site
    (`cordmap view CASE --static DIR`) to link to, relative to the page."""
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
    plan = current_plan(case).result
    image = case.image()
    automatic = automatic_steps(case)
    from cordmap.pipeline.mesh import case_meshes  # zmesh and trimesh load slowly

    images = draw_figures(image, labels, plan, case_meshes(case.root), automatic)
    page = render_html(case.subject, plan, images, case.root, out, site, automatic)
    write_text(out, page)
    case.record(
        STAGE,
        inputs=stage_inputs(case, STAGE),
        outputs=[out],
        parameters={"site": str(site) if site else None},
    )
    return CaseReport(out, plan, images)


def automatic_steps(case: Case) -> dict | None:
    """What the automatic segmentation did, when the case's labels are the U-Net's: the
    model (and the card of a bundled one), the vertebral levels and the warnings."""
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
    return {"model": model.name, "card": card, "levels": found.levels, "warnings": found.warnings}
