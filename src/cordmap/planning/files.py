"""Planning at the file edge: a case folder or a plain label NIfTI in, plan.json out.

With a case folder the result goes to `CASE/plan/plan.json` (or `assessment.json`) and the
stage is recorded in case.json; re-running it with unchanged labels, paddle file and
parameters reuses the recorded result. With a label file, `--out` names the JSON to write.
Inputs are never modified and a failure writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar, overload

from cordmap.atomic import write_text
from cordmap.errors import CordmapError
from cordmap.planning.planner import Planner
from cordmap.planning.results import Assessment, Plan
from cordmap.protocol.schema import LabelSchema

PLAN_FILE = "plan/plan.json"
ASSESSMENT_FILE = "plan/assessment.json"

#: What a stage writes: a Plan (plan.json) or an Assessment (assessment.json).
R = TypeVar("R", Plan, Assessment)


@dataclass(frozen=True)
class Written(Generic[R]):
    result: R  # what the JSON written holds
    path: Path
    up_to_date: bool  # a case stage found unchanged: the recorded result was reused


def plan_file(target: str | Path, out: str | Path | None = None, **options) -> tuple[Plan, Path]:
    """Plan a case folder or a label NIfTI, write plan.json; return it and its path (options
    as `run_plan`)."""
    written = run_plan(target, out, **options)
    return written.result, written.path


def assess_file(
    target: str | Path, out: str | Path | None = None, **options
) -> tuple[Assessment, Path]:
    """Score a placement read from X-ray landmarks, write assessment.json; return it and its
    path (options as `run_assess`)."""
    written = run_assess(target, out, **options)
    return written.result, written.path


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
    if sides is not None and targets is None:
        raise CordmapError("`sides` chooses the sides of `targets`; add e.g. `targets` L2,L3,L4,S1")
    search = _given(top=top, step=step, separation=separation, targets=targets, sides=sides)
    return _run(
        "plan",
        Plan,
        target,
        out,
        PLAN_FILE,
        paddles_file,
        protocol,
        _given(paddle=paddle, enlargement=enlargement),
        search,
        lambda planner: planner.plan(**search),
    )


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
    landmarks = _given(rostral=rostral, caudal=caudal, compare=compare)
    return _run(
        "assess",
        Assessment,
        target,
        out,
        ASSESSMENT_FILE,
        paddles_file,
        protocol,
        _given(paddle=paddle, enlargement=enlargement),
        landmarks,
        lambda planner: planner.assess(**landmarks),
    )


@overload
def read_result(path: Path, kind: type[Plan] = ...) -> Plan: ...
@overload
def read_result(path: Path, kind: type[Assessment]) -> Assessment: ...
def read_result(path: Path, kind: type[Plan] | type[Assessment] = Plan) -> Plan | Assessment:
    """A plan.json (or with `kind` Assessment, an assessment.json) read back."""
    return kind.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


def _given(**options) -> dict:
    return {k: v for k, v in options.items() if v is not None}


def _run(
    stage: str,
    kind: type[R],
    target,
    out,
    default: str,
    paddles_file,
    protocol,
    options: dict,
    extra: dict,
    compute: Callable[[Planner], R],
) -> Written[R]:
    target = Path(target)
    out = Path(out) if out else None
    if target.is_dir():
        from cordmap.case import Case

        case = Case.open(target)
        sources = case.label_sources()
        labels_path = case.labels_path(sources[0]) if sources else None
        out = out or case.path(default)
    else:
        case, labels_path = None, target
        if out is None:
            raise CordmapError(
                f"{target} is a label file, not a case folder; pass `out` "
                "FILE.json to say where the result goes"
            )
    if out.suffix.lower() != ".json":
        raise CordmapError(f"`out` {out} must end in .json")
    inputs = [p for p in (labels_path, Path(paddles_file) if paddles_file else None) if p]
    parameters = {**options, **extra}
    if (
        case is not None
        and out.is_file()
        and case.is_up_to_date(stage, inputs=inputs, parameters=parameters)
    ):
        return Written(read_result(out, kind), out, True)

    if case is not None:
        labels = case.labels()
    else:
        from cordmap.io.nifti import read_labels

        labels = read_labels(target, LabelSchema.load(protocol))
    planner = Planner.prepare(labels, paddles_file=paddles_file, source=str(labels_path), **options)
    result = compute(planner)
    write_text(out, json.dumps(result.to_json(), indent=1) + "\n")
    if case is not None:
        case.record(stage, inputs=inputs, outputs=[out], parameters=parameters)
    return Written(result, out, False)
