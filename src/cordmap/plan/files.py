"""Planning at the file edge: a case folder or a plain label NIfTI in, plan.json out.

With a case folder the result goes to `CASE/plan/plan.json` (or `assessment.json`) and the
stage is recorded in case.json; with a label file, `--out` names the JSON to write. Inputs
are never modified and a failure writes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from cordmap.anatomy.schema import LabelSchema
from cordmap.atomic import write_text
from cordmap.errors import CordmapError
from cordmap.plan.planner import Planner

PLAN_FILE = "plan/plan.json"
ASSESSMENT_FILE = "plan/assessment.json"


def _open(target: Path, out: Path | None, default: str):
    """(labels, labels path, case or None, output path) for a case folder or a label file."""
    if target.is_dir():
        from cordmap.case import Case

        case = Case.open(target)
        sources = case.label_sources()
        labels_path = case.labels_path(sources[0]) if sources else None
        labels = case.labels()
        return labels, labels_path, case, out or case.path(default)
    if out is None:
        raise CordmapError(f"{target} is a label file, not a case folder; pass --out FILE.json "
                           "to say where the result goes")
    if out.suffix.lower() != ".json":
        raise CordmapError(f"--out {out} must end in .json")
    from cordmap.io.nifti import read_labels

    return read_labels(target, LabelSchema.load()), target, None, out


def plan_file(target: str | Path, out: str | Path | None = None, *, paddle: str | None = None,
              paddles_file: str | Path | None = None, enlargement: str | None = None,
              top: int = 3, step: float | None = None, separation: float | None = None) -> tuple[dict, Path]:
    """Plan a case folder or a label NIfTI; write plan.json; return it and its path."""
    target = Path(target)
    labels, labels_path, case, out = _open(target, Path(out) if out else None, PLAN_FILE)
    options = {k: v for k, v in dict(paddle=paddle, paddles_file=paddles_file,
                                     enlargement=enlargement).items() if v is not None}
    planner = Planner.prepare(labels, source=str(labels_path), **options)
    search = {k: v for k, v in dict(step=step, separation=separation).items() if v is not None}
    result = planner.plan(top=top, **search)
    _write(out, result, case, "plan", labels_path, paddles_file,
           dict(options, top=top, **search, paddles_file=None))
    return result, out


def assess_file(target: str | Path, out: str | Path | None = None, *, rostral: str | None = None,
                caudal: str | None = None, compare: str | None = None, paddle: str | None = None,
                paddles_file: str | Path | None = None,
                enlargement: str | None = None) -> tuple[dict, Path]:
    """Score a placement read from X-ray landmarks; write assessment.json; return it and its path."""
    target = Path(target)
    labels, labels_path, case, out = _open(target, Path(out) if out else None, ASSESSMENT_FILE)
    options = {k: v for k, v in dict(paddle=paddle, paddles_file=paddles_file,
                                     enlargement=enlargement).items() if v is not None}
    planner = Planner.prepare(labels, source=str(labels_path), **options)
    result = planner.assess(rostral=rostral, caudal=caudal, compare=compare)
    _write(out, result, case, "assess", labels_path, paddles_file,
           dict(options, rostral=rostral, caudal=caudal, compare=compare, paddles_file=None))
    return result, out


def _write(out: Path, result: dict, case, stage: str, labels_path, paddles_file, parameters):
    write_text(out, json.dumps(result, indent=1) + "\n")
    if case is not None:
        inputs = [labels_path] + ([Path(paddles_file)] if paddles_file else [])
        parameters = {k: v for k, v in parameters.items() if v is not None}
        case.record(stage, inputs=inputs, outputs=[out], parameters=parameters)
