"""Planning at the file edge: a label NIfTI in, plan.json (or assessment.json) out.

A `Job` is what is asked (a plan's search or an assessment's landmarks, with the paddle
and enlargement) and how to compute it from labels; `plan_file` and `assess_file` run one
on a label file, `cordmap.pipeline.plan` on a case folder. Inputs are never modified and a
failure writes nothing.
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
from cordmap.volume import LabelVolume

#: What a job makes: a Plan (plan.json) or an Assessment (assessment.json).
R = TypeVar("R", Plan, Assessment)


@dataclass(frozen=True)
class Written(Generic[R]):
    result: R  # what the JSON written holds
    path: Path
    up_to_date: bool  # a case stage found unchanged: the recorded result was reused


@dataclass(frozen=True)
class Job(Generic[R]):
    """A plan or an assessment to make: the planner's `options` (paddle, enlargement), the
    search's options or the landmarks (`extra`), and what to compute with the planner."""

    kind: type[R]
    options: dict
    extra: dict
    compute: Callable[[Planner], R]

    @property
    def parameters(self) -> dict:
        """Everything asked, as case.json records it."""
        return {**self.options, **self.extra}

    def run(self, labels: LabelVolume, paddles_file: str | Path | None, source: str) -> R:
        """The result for `labels` (`source` names them in messages)."""
        planner = Planner.prepare(labels, paddles_file=paddles_file, source=source, **self.options)
        return self.compute(planner)


def plan_job(
    *,
    paddle: str | None = None,
    enlargement: str | None = None,
    top: int = 3,
    step: float | None = None,
    separation: float | None = None,
    targets: str | None = None,
    sides: str | None = None,
) -> Job[Plan]:
    """A placement search. `targets` ("L2,L3,L4,S1") and `sides` (both, left, right) rank
    the placements by the target-root score too."""
    if sides is not None and targets is None:
        raise CordmapError("`sides` chooses the sides of `targets`; add e.g. `targets` L2,L3,L4,S1")
    search = _given(top=top, step=step, separation=separation, targets=targets, sides=sides)
    return Job(
        Plan,
        _given(paddle=paddle, enlargement=enlargement),
        search,
        lambda planner: planner.plan(**search),
    )


def assess_job(
    *,
    rostral: str | None = None,
    caudal: str | None = None,
    compare: str | None = None,
    paddle: str | None = None,
    enlargement: str | None = None,
) -> Job[Assessment]:
    """Scoring a placement read from X-ray landmarks."""
    landmarks = _given(rostral=rostral, caudal=caudal, compare=compare)
    return Job(
        Assessment,
        _given(paddle=paddle, enlargement=enlargement),
        landmarks,
        lambda planner: planner.assess(**landmarks),
    )


def plan_file(
    labels_path: str | Path,
    out: str | Path | None,
    *,
    paddles_file: str | Path | None = None,
    protocol: str | Path | None = None,
    **options,
) -> tuple[Plan, Path]:
    """Plan a label NIfTI (of `protocol`, default the shipped one) and write plan.json to
    `out`; return the plan and its path (options as `plan_job`)."""
    return run_file(plan_job(**options), labels_path, out, paddles_file, protocol)


def assess_file(
    labels_path: str | Path,
    out: str | Path | None,
    *,
    paddles_file: str | Path | None = None,
    protocol: str | Path | None = None,
    **options,
) -> tuple[Assessment, Path]:
    """Score a placement read from X-ray landmarks on a label NIfTI, write assessment.json
    to `out`; return it and its path (options as `assess_job`)."""
    return run_file(assess_job(**options), labels_path, out, paddles_file, protocol)


def run_file(
    job: Job[R],
    labels_path: str | Path,
    out: str | Path | None,
    paddles_file: str | Path | None = None,
    protocol: str | Path | None = None,
) -> tuple[R, Path]:
    """Run `job` on a label NIfTI (of `protocol`, default the shipped one), write its JSON
    to `out`; return the result and the path."""
    from cordmap.io.nifti import read_labels

    if out is None:
        raise CordmapError(
            f"{labels_path} is a label file, not a case folder; pass `out` "
            "FILE.json to say where the result goes"
        )
    out = json_path(out)
    labels = read_labels(labels_path, LabelSchema.load(protocol))
    result = job.run(labels, paddles_file, str(Path(labels_path)))
    write_result(result, out)
    return result, out


def json_path(out: str | Path) -> Path:
    """`out` as a Path, refused unless it ends in .json."""
    out = Path(out)
    if out.suffix.lower() != ".json":
        raise CordmapError(f"`out` {out} must end in .json")
    return out


def write_result(result: Plan | Assessment, out: Path) -> None:
    """Write a plan.json or an assessment.json (atomically)."""
    write_text(out, json.dumps(result.to_json(), indent=1) + "\n")


@overload
def read_result(path: Path, kind: type[Plan] = ...) -> Plan: ...
@overload
def read_result(path: Path, kind: type[Assessment]) -> Assessment: ...
def read_result(path: Path, kind: type[Plan] | type[Assessment] = Plan) -> Plan | Assessment:
    """A plan.json (or with `kind` Assessment, an assessment.json) read back."""
    return kind.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


def _given(**options) -> dict:
    return {k: v for k, v in options.items() if v is not None}
