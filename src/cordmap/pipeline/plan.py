"""The plan and assess stages: a case's labels (or a plain label NIfTI) to plan.json.

With a case folder the result goes to `CASE/plan/plan.json` (or `assessment.json`) and the
stage is recorded in case.json; re-running it with unchanged labels, paddle file and
parameters reuses the recorded result. With a label file, `out` names the JSON to write
(`cordmap.planning.files`). Inputs are never modified and a failure writes nothing.
`current_plan(CASE)` is the plan the later stages (viewer, report) read;
`plan_or_refusal(CASE)` the same, or why there can be none.
"""

from __future__ import annotations

from pathlib import Path

from cordmap.case import Case
from cordmap.errors import CordmapError, NoPlan
from cordmap.interrupts import interrupts_held
from cordmap.pipeline.stages import (
    ASSESSMENT_FILE,
    PLAN_FILE,
    current_plan_file,
    is_current,
    labels_file,
    plan_paddles,
    recorded,
    stage_inputs,
)
from cordmap.planning.files import (
    Job,
    R,
    Written,
    assess_job,
    json_path,
    plan_job,
    read_result,
    run_file,
    write_result,
)
from cordmap.planning.results import Assessment, Plan


def run_plan(
    target: str | Path,
    out: str | Path | None = None,
    *,
    paddle: str | None = None,
    paddles_file: str | Path | None = None,
    enlargement: str | None = None,
    top: int = 3,
    step: float | None = None,
    separation: float | None = None,
    targets: str | None = None,
    sides: str | None = None,
    protocol: str | Path | None = None,
) -> Written[Plan]:
    """Plan a case folder or a label NIfTI (of `protocol`, default the shipped one; a case
    has its own) and write plan.json. `targets` ("L2,L3,L4,S1") and `sides` (both, left,
    right) rank the placements by the target-root score too; they are stage parameters."""
    job = plan_job(
        paddle=paddle,
        enlargement=enlargement,
        top=top,
        step=step,
        separation=separation,
        targets=targets,
        sides=sides,
    )
    return _run("plan", job, target, out, PLAN_FILE, paddles_file, protocol)


def run_assess(
    target: str | Path,
    out: str | Path | None = None,
    *,
    rostral: str | None = None,
    caudal: str | None = None,
    compare: str | None = None,
    paddle: str | None = None,
    paddles_file: str | Path | None = None,
    enlargement: str | None = None,
    protocol: str | Path | None = None,
) -> Written[Assessment]:
    """Score a placement read from X-ray landmarks and write assessment.json."""
    job = assess_job(
        rostral=rostral, caudal=caudal, compare=compare, paddle=paddle, enlargement=enlargement
    )
    return _run("assess", job, target, out, ASSESSMENT_FILE, paddles_file, protocol)


def current_plan(case: Case) -> Written[Plan]:
    """The case's plan.json, re-planned with its recorded options when missing or stale.

    A plan made with a user's paddle file (outside the case, recorded by name only) cannot
    be re-made here: it is used while the labels it was made from, and plan.json itself,
    are unchanged."""
    entry = recorded(case, "plan") or {}
    outside = plan_paddles(entry)
    if not outside:
        return run_plan(case.root, **entry.get("parameters", {}))
    path = current_plan_file(case)
    if path is not None:
        return Written(read_result(path), path, True)
    raise CordmapError(
        f"the plan of {case.root} was made with the paddle file {outside[0]} and is "
        f"missing or out of date; re-run `cordmap plan {case.root} --paddles "
        f"{outside[0]}` first"
    )


def plan_or_refusal(case: Case) -> tuple[Written[Plan] | None, str | None]:
    """The case's current plan (`current_plan`), or None and why the planner refused the
    case (`NoPlan`: its image does not show enough, or its cord does not support an
    estimate). A plan.json left from labels since replaced is then stale: it is removed,
    so that the viewer shows no paddles."""
    try:
        return current_plan(case), None
    except NoPlan as refusal:
        case.path(PLAN_FILE).unlink(missing_ok=True)
        return None, str(refusal)


def _run(
    stage: str,
    job: Job[R],
    target: str | Path,
    out: str | Path | None,
    default: str,
    paddles_file: str | Path | None,
    protocol: str | Path | None,
) -> Written[R]:
    target = Path(target)
    if not target.is_dir():
        result, path = run_file(job, target, out, paddles_file, protocol)
        return Written(result, path, False)
    case = Case.open(target)
    out = json_path(out or case.path(default))
    read = stage_inputs(case, stage, {"paddles_file": paddles_file})
    if out.is_file() and is_current(case, stage, read, job.parameters):
        return Written(read_result(out, job.kind), out, True)
    result = job.run(case.labels(), paddles_file, str(labels_file(case)))
    with interrupts_held():  # a Ctrl-C does not leave plan.json unrecorded
        write_result(result, out)
        case.record(stage, inputs=read, outputs=[out], parameters=job.parameters)
    return Written(result, out, False)
