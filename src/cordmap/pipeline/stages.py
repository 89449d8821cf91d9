"""What each stage of a case folder reads and writes, and the one freshness check.

The stages' files (relative to the case folder):

    import   image, protocol, manual labels   <subject>_T2w.nii.gz, protocol.json, ..._desc-manual_dseg
    segment  U-Net labels                     <subject>_T2w_desc-unet_dseg.nii.gz
    mesh     meshes and exports               mesh/<subject>_mesh.{npz,json,glb,...}
    plan     placement plan                   plan/plan.json  (assess: plan/assessment.json)
    view     Neuroglancer dataset             viewer/
    report   the case report                  report/<subject>_report.html

`stage_inputs(case, stage)` says which of them a stage reads; `is_current` is whether a stage's
recorded output is current (`Case.is_up_to_date`, the one freshness rule).
"""

from __future__ import annotations

from pathlib import Path

from cordmap.case import Case
from cordmap.errors import CordmapError

MESH_DIR = "mesh"
PLAN_FILE = "plan/plan.json"
ASSESSMENT_FILE = "plan/assessment.json"
VIEWER_DIR = "viewer"
REPORT_DIR = "report"

#: The stages that run on an existing case folder with their default parameters (what
#: `cordmap batch` runs).
CASE_STAGES = ("mesh", "plan", "view", "segment", "report")


def labels_file(case: Case) -> Path | None:
    """The label file the stages read: the manual labels, else the U-Net's (None: neither)."""
    sources = case.label_sources()
    return case.labels_path(sources[0]) if sources else None


def mesh_file(case: Case) -> Path:
    """The mesh stage's meshes (`cordmap.mesh.read_meshes`), which the viewer and the
    report read."""
    return case.path(f"{MESH_DIR}/{case.subject}_mesh.npz")


def stage_inputs(case: Case, stage: str, options: dict | None = None) -> list[Path]:
    """The files `stage` reads now from the case (and, from `options`, the segment stage's
    `model` file, the plan and assess stages' `paddles_file`)."""
    options = options or {}
    labels = [path for path in [labels_file(case)] if path]
    if stage == "segment":
        from cordmap.learn.bundled import model_path

        return [case.image_path, model_path(options.get("model"))]
    if stage in ("mesh", "plan", "assess"):
        paddles = options.get("paddles_file")
        return labels + ([Path(paddles)] if stage != "mesh" and paddles else [])
    if stage == "view":
        mesh, plan = mesh_file(case), current_plan_file(case)
        return [
            case.image_path,
            *labels,
            *([mesh] if mesh.is_file() else []),
            *([plan] if plan else []),
        ]
    if stage == "report":
        plan = case.path(PLAN_FILE)
        return [case.image_path, *labels, *([plan] if plan.is_file() else [])]
    raise CordmapError(f"unknown stage '{stage}'; use one of {', '.join(CASE_STAGES)}")


def current_plan_file(case: Case) -> Path | None:
    """CASE/plan/plan.json when it was planned from the labels the case has now (None when
    missing, or stale: made from labels since replaced, as by a new segmentation)."""
    path, entry = case.path(PLAN_FILE), recorded(case, "plan")
    if entry is None or not path.is_file():
        return None
    return (
        path
        if is_current(case, "plan", stage_inputs(case, "plan"), outside=plan_paddles(entry))
        else None
    )


def plan_paddles(entry: dict) -> list[str]:
    """The paddle file a recorded plan read from outside the case (its name; none: the
    shipped catalogue)."""
    return [e["path"] for e in entry.get("inputs", [])[1:]]


def recorded(case: Case, stage: str) -> dict | None:
    """`stage`'s record in case.json, None when it has not run."""
    return case.manifest.get("stages", {}).get(stage)


def is_current(
    case: Case, stage: str, inputs: list[Path], parameters: dict | None = None, *, outside=()
) -> bool:
    """Whether `stage`'s recorded output is current: made from `inputs`, unchanged since,
    with `parameters` (default: whichever it was recorded with), and itself unmodified.

    `outside`: the names of recorded inputs from outside the case, taken as recorded
    (`Case.is_up_to_date`)."""
    entry = recorded(case, stage)
    if entry is None:
        return False
    if parameters is None:
        parameters = entry["parameters"]
    return case.is_up_to_date(stage, inputs=inputs, parameters=parameters, outside=outside)


def run_stage(case_dir: str | Path, stage: str, options: dict | None = None) -> None:
    """Run one of `CASE_STAGES` on a case folder with its default parameters (`options`:
    the segment stage's `model` file)."""
    options = options or {}
    if stage == "mesh":
        from cordmap.pipeline.mesh import mesh_case

        mesh_case(case_dir)
    elif stage == "plan":
        from cordmap.pipeline.plan import run_plan

        run_plan(case_dir)
    elif stage == "view":
        from cordmap.pipeline.view import build_case_viewer

        build_case_viewer(Case.open(case_dir))
    elif stage == "segment":
        from cordmap.pipeline.segment import segment_case

        segment_case(case_dir, options.get("model"))
    elif stage == "report":
        from cordmap.pipeline.report import write_case_report

        write_case_report(case_dir)
    else:
        raise CordmapError(f"unknown stage '{stage}'; use one of {', '.join(CASE_STAGES)}")
