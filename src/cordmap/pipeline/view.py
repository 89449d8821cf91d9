"""The view stage: build CASE/viewer/ once, then serve it or export it.

CASE/viewer/ holds the precomputed dataset (image, labels, the mesh stage's meshes,
segment names) and `state.json`, the first view, with the candidate paddles of
CASE/plan/plan.json when the case has been planned from its current labels (one annotation
layer per candidate, the best one shown; a plan made from labels since replaced is left
out, and `stale_plan_note` says so). The "view" stage is recorded in case.json with the
image, labels (and meshes and plan) it was made from, and is rebuilt only when they change.
"""

from __future__ import annotations

import json
from pathlib import Path

from cordmap.atomic import write_text
from cordmap.case import Case
from cordmap.pipeline.stages import (
    PLAN_FILE,
    VIEWER_DIR,
    current_plan_file,
    is_current,
    stage_inputs,
)
from cordmap.planning.files import read_result
from cordmap.viewer.precomputed import check_labels, write_precomputed
from cordmap.viewer.server import ViewerServer
from cordmap.viewer.site import DATA_PATH, Site, export_static
from cordmap.viewer.state import viewer_state

STATE_FILE = "state.json"
STAGE = "view"
#: Bump when the dataset layout or the first view changes, so that old cases rebuild.
VIEWER_FORMAT = 5


def build_case_viewer(case: Case) -> tuple[Path, dict]:
    """Write (or reuse, when up to date) CASE/viewer/; return its folder and state."""
    folder = case.path(VIEWER_DIR)
    parameters = {"viewer_format": VIEWER_FORMAT}
    if case.label_sources() and is_current(case, STAGE, stage_inputs(case, STAGE), parameters):
        return folder, json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    image, labels = case.image(), case.labels()  # no labels: a clear CordmapError
    check_labels(image, labels)  # before the meshing, which takes seconds
    from cordmap.pipeline.mesh import case_meshes  # zmesh and trimesh load slowly

    state = viewer_state(
        image, labels, DATA_PATH, paddles=_paddles(labels, current_plan_file(case))
    )

    def record() -> None:  # with Ctrl-C held from the dataset put in place
        write_text(folder / STATE_FILE, json.dumps(state, indent=1))
        case.record(
            STAGE, inputs=stage_inputs(case, STAGE), outputs=[folder], parameters=parameters
        )

    write_precomputed(image, labels, case_meshes(case.root), folder, then=record)
    return folder, state


def _paddles(labels, plan_path: Path | None) -> list:
    """The candidate paddles of the case's current plan.json with their strips, or none."""
    if plan_path is None:
        return []
    from cordmap.planning.geometry import candidate_strips, measure_cord

    return candidate_strips(measure_cord(labels), read_result(plan_path))


def case_site(case_dir: str | Path) -> Site:
    """The viewer site of a case (building its dataset first when needed)."""
    case = Case.open(case_dir)
    folder, state = build_case_viewer(case)
    return Site(folder, state, title=f"cordmap {case.subject}")


def serve_case(case_dir: str | Path, port: int | None = None) -> ViewerServer:
    """A server for the case's viewer on 127.0.0.1 (free port unless `port`), not started."""
    return ViewerServer(case_site(case_dir), port)


def export_case(case_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the case's viewer as a self-contained static folder (client + data + index)."""
    return export_static(case_site(case_dir), out_dir)


def stale_plan_note(case_dir: str | Path) -> str | None:
    """Why the viewer shows no paddles although the case has a plan.json, or None."""
    case = Case.open(case_dir)
    if not case.path(PLAN_FILE).is_file() or current_plan_file(case) is not None:
        return None
    return (
        f"{case.path(PLAN_FILE)} was made from labels since replaced: its paddles are not "
        f"shown; re-run `cordmap plan {case.root}` to plan on the current labels"
    )
