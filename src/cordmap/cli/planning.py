"""Planning commands: plan and assess, and how a plan is printed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cordmap.cli.common import command, console

if TYPE_CHECKING:
    from cordmap.planning.results import Assessment, Placement, Plan


_PlanTarget = Annotated[
    Path, typer.Argument(help="Case folder, or a label NIfTI (then pass --out).")
]
_PaddleOpt = Annotated[
    str | None, typer.Option("--paddle", help="Paddle model (default: Specify 5-6-5).")
]
_PaddlesOpt = Annotated[
    Path | None, typer.Option("--paddles", help="JSON file of extra paddle models.")
]
_EnlargementOpt = Annotated[
    str | None,
    typer.Option(
        "--enlargement", help="Segments of the enlargement, FIRST..LAST (default: L1..S2)."
    ),
]
_OutOpt = Annotated[
    Path | None, typer.Option("--out", help="JSON to write (default: CASE/plan/...).")
]
_ProtocolOpt = Annotated[
    Path | None,
    typer.Option("--protocol", help="Annotation protocol JSON of a label file (default: shipped)."),
]


@command("plan")
def plan_(
    target: _PlanTarget,
    paddle: _PaddleOpt = None,
    paddles: _PaddlesOpt = None,
    enlargement: _EnlargementOpt = None,
    top: Annotated[int, typer.Option(help="How many distinct candidate placements.")] = 3,
    step: Annotated[float, typer.Option(help="Search step along the cord (mm).")] = 0.5,
    separation: Annotated[
        float, typer.Option(help="Least distance between candidates (mm).")
    ] = 5.0,
    targets: Annotated[
        str | None,
        typer.Option(
            help="Target segments, e.g. L2,L3,L4,S1: also rank placements by how the contacts "
            "reach their dorsal root entry zones."
        ),
    ] = None,
    sides: Annotated[
        str | None, typer.Option(help="Sides of the targets: both (default), left or right.")
    ] = None,
    out: _OutOpt = None,
    protocol: _ProtocolOpt = None,
):
    """Best paddle placements over the lumbosacral enlargement, in vertebral terms."""
    from cordmap.pipeline.plan import run_plan

    written = run_plan(
        target,
        out,
        paddle=paddle,
        paddles_file=paddles,
        enlargement=enlargement,
        top=top,
        step=step,
        separation=separation,
        targets=targets,
        sides=sides,
        protocol=protocol,
    )
    plan = written.result
    _plan_header(plan)
    _plan_table([(f"#{c.rank}", c) for c in plan.candidates])
    _plan_segments("#1", plan.best)
    _plan_contacts("#1", plan.best)
    if plan.targets is not None:
        ranked = plan.targets
        console.print(
            f"by target score ({', '.join(ranked.segments)}; {' and '.join(ranked.sides)}):"
        )
        _plan_table([(f"#{c.rank}", c) for c in ranked.candidates])
        diff = plan.comparison
        assert diff is not None  # a plan with targets compares the two rankings
        console.print(
            "the two rankings agree on the best placement"
            if diff.agree
            else f"the two rankings disagree: their best placements are "
            f"{diff.distance_mm:.1f} mm apart"
        )
    console.print(f"{written.path} {'up to date' if written.up_to_date else 'written'}")


@command("assess")
def assess_(
    target: _PlanTarget,
    rostral: Annotated[
        str | None,
        typer.Option(
            help="Landmark of the array's rostral end, e.g. 'T11 upper endplate' or 'T12/L1 disc'."
        ),
    ] = None,
    caudal: Annotated[str | None, typer.Option(help="Landmark of its caudal end instead.")] = None,
    compare: Annotated[
        str | None,
        typer.Option(
            help="Rostral-end landmark of a second placement: also report it and the distance."
        ),
    ] = None,
    paddle: _PaddleOpt = None,
    paddles: _PaddlesOpt = None,
    enlargement: _EnlargementOpt = None,
    out: _OutOpt = None,
    protocol: _ProtocolOpt = None,
):
    """Coverage achieved by a placement read from X-ray landmarks."""
    from cordmap.pipeline.plan import run_assess

    written = run_assess(
        target,
        out,
        rostral=rostral,
        caudal=caudal,
        compare=compare,
        paddle=paddle,
        paddles_file=paddles,
        enlargement=enlargement,
        protocol=protocol,
    )
    assessment = written.result
    _plan_header(assessment)
    rows = [("placement", assessment.placement)]
    if assessment.compared is not None:
        rows.append(("compared", assessment.compared.placement))
    _plan_table(rows)
    _plan_segments("placement", assessment.placement)
    _plan_contacts("placement", assessment.placement)
    if assessment.compared is not None:
        console.print(f"distance between the two placements: {assessment.distance_mm:.1f} mm")
    console.print(f"{written.path} {'up to date' if written.up_to_date else 'written'}")


def _plan_header(result: Plan | Assessment) -> None:
    e, p = result.enlargement, result.paddle
    how = "estimated from the CSA profile and the conus" if e.estimated else "labelled"
    console.print(
        f"enlargement {e.span} ({how}): {e.length:.1f} mm, "
        f"{e.volume_mm3:.0f} mm3; paddle {p.name} ({p.array_length_mm:g} mm array)"
    )


def print_best(plan: Plan, detail: str = "") -> None:
    best = plan.best
    console.print(
        f"best placement: rostral edge {best.rostral_edge}, caudal edge "
        f"{best.caudal_edge}: {best.coverage.volume_pct:.1f} % of the enlargement{detail}",
        highlight=False,
        soft_wrap=True,
    )


def _plan_segments(name: str, placement: Placement) -> None:
    parts = [
        f"{s.segment} {s.covered_pct:.0f} %"
        + (f" (rows {s.rows[0]}-{s.rows[-1]})" if s.rows else "")
        for s in placement.coverage.segments
    ]
    console.print(f"segments under {name}: " + ", ".join(parts))


def _plan_table(rows: list) -> None:
    from rich.table import Table

    scored = rows[0][1].target_score is not None
    table = Table(title_justify="left")
    for column in (
        "",
        "rostral edge",
        "caudal edge",
        "at mm",
        "volume %",
        "length %",
        "15x3 mm slices %",
    ) + (("target score",) if scored else ()):
        table.add_column(
            column, justify="right" if column.endswith(("%", "mm", "score")) else "left"
        )
    for name, c in rows:
        table.add_row(
            name,
            c.rostral_edge,
            c.caudal_edge,
            f"{c.coverage.rostral:.1f}",
            f"{c.coverage.volume_pct:.1f}",
            f"{c.coverage.length_pct:.1f}",
            f"{c.slice_count_pct:.1f}",
            *((f"{c.target_score:.1f}",) if scored else ()),
        )
    console.print(table)


def _plan_contacts(name: str, placement: Placement) -> None:
    from rich.table import Table

    table = Table(title=f"contacts of {name}", title_justify="left")
    for column in (
        "contact",
        "row",
        "segment",
        "side",
        "from midline mm",
        "from entry zone mm",
        "dCSF mm",
    ):
        table.add_column(column, justify="left" if column in ("segment", "side") else "right")
    for c in placement.contacts:
        table.add_row(
            str(c.number),
            str(c.row),
            c.segment or "-",
            c.side,
            f"{c.lateral_mm:+.1f}",
            f"{c.entry_zone_offset_mm:+.1f}",
            f"{c.dcsf_mm:.1f}" if c.dcsf_mm is not None else c.dcsf_note,
        )
    console.print(table)
