"""Study commands: rater agreement, the registry and cohort statistics (`cordmap study`),
batch runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cordmap.cli.common import app, command, console
from cordmap.errors import CordmapError


@command()
def agree(
    labels_a: Annotated[Path, typer.Argument(help="First rater's label NIfTI.")],
    labels_b: Annotated[Path, typer.Argument(help="Second rater's label NIfTI, same grid.")],
    worst: Annotated[int, typer.Option(help="How many most-disagreeing axial slices to list.")] = 5,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the results as JSON.")
    ] = None,
    protocol: Annotated[
        Path | None, typer.Option(help="Annotation protocol JSON (default: shipped).")
    ] = None,
):
    """Agreement of two labellings: kappa, Dice, IoU, surface distances, worst slices."""
    import json

    from rich.table import Table

    from cordmap.atomic import write_text
    from cordmap.protocol.schema import LabelSchema
    from cordmap.study.agreement import agree_files

    result = agree_files(labels_a, labels_b, schema=LabelSchema.load(protocol), worst=worst)
    console.print(f"Cohen's kappa over all voxels: [bold]{result.kappa:.3f}[/]")
    table = Table(title="per label", title_justify="left")
    for column in (
        "id",
        "label",
        "voxels A",
        "voxels B",
        "kappa",
        "Dice",
        "IoU",
        "mean surf. mm",
        "HD95 mm",
    ):
        table.add_column(column, justify="left" if column == "label" else "right")
    mm = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for r in result.labels:
        table.add_row(
            str(r.id),
            r.name,
            str(r.voxels_a),
            str(r.voxels_b),
            f"{r.kappa:.3f}",
            f"{r.dice:.3f}",
            f"{r.iou:.3f}",
            mm(r.mean_surface_mm),
            mm(r.hd95_mm),
        )
    console.print(table)
    classes = Table(title="per structure (all labels of a class together)", title_justify="left")
    for column in ("structure", "voxels A", "voxels B", "kappa", "Dice", "IoU"):
        classes.add_column(column, justify="left" if column == "structure" else "right")
    for s in result.structures:
        classes.add_row(
            s.structure,
            str(s.voxels_a),
            str(s.voxels_b),
            f"{s.kappa:.3f}",
            f"{s.dice:.3f}",
            f"{s.iou:.3f}",
        )
    console.print(classes)
    for w in result.worst_slices:
        console.print(
            f"slice k={w.k} (S {w.s_mm:.1f} mm): {w.differing_voxels} of {w.labelled_voxels} "
            f"labelled voxels differ, mostly {w.confused_a} (A) vs {w.confused_b} (B)"
        )
    if json_out:
        write_text(json_out, json.dumps(result.to_dict(), indent=1) + "\n")
        console.print(f"written {json_out}")


study_app = typer.Typer(
    help="Study registry, cohort statistics and the study report.", no_args_is_help=True
)
app.add_typer(study_app, name="study")
_DB = Annotated[str, typer.Argument(help="Study database: a SQLite file or a SQLAlchemy URL.")]


@command("init", group=study_app)
def study_init(db: _DB):
    """Create a study database, or upgrade one made by an earlier cordmap."""
    from cordmap.study.registry import init_registry

    opened = init_registry(db)
    applied = ", ".join(map(str, opened.applied)) or "none (already up to date)"
    console.print(f"{db}: schema version {opened.version}; migrations applied: {applied}")


@command("add", group=study_app)
def study_add(
    db: _DB,
    participant_id: Annotated[
        str, typer.Option("--id", help="Pseudonymous participant id, e.g. P001.")
    ],
    sex: Annotated[str | None, typer.Option(help="F, M or X.")] = None,
    age: Annotated[float | None, typer.Option(help="Age at implant, years.")] = None,
    years_since_injury: Annotated[
        float | None, typer.Option(help="Years from injury to implant.")
    ] = None,
    injury_level: Annotated[
        str | None, typer.Option(help="Neurological level of injury, e.g. T4.")
    ] = None,
    ais: Annotated[str | None, typer.Option(help="AIS grade A..E.")] = None,
    stimulator: Annotated[str | None, typer.Option(help="Stimulator / paddle model.")] = None,
    group: Annotated[str | None, typer.Option(help="Study group.")] = None,
):
    """Register one participant (no names or birth dates: a pseudonym and clinical fields)."""
    from cordmap.study.registry import Registry, validate_participant

    fields = validate_participant(
        {
            "id": participant_id,
            "sex": sex,
            "age_at_implant": age,
            "years_since_injury": years_since_injury,
            "injury_level": injury_level,
            "ais_grade": ais,
            "stimulator": stimulator,
            "group": group,
        }
    )
    with Registry.open(db) as registry:
        registry.add_participants([fields])
    console.print(f"registered {participant_id}")


@command("import-csv", group=study_app)
def study_import_csv(
    db: _DB, csv_file: Annotated[Path, typer.Argument(help="CSV of participants.")]
):
    """Register the participants of a CSV file: all rows, or none when any row is wrong."""
    from cordmap.study.csvimport import import_participants_csv
    from cordmap.study.registry import Registry

    with Registry.open(db) as registry:
        ids = import_participants_csv(registry, csv_file)
    console.print(f"registered {len(ids)} participants from {csv_file}")


@command("list", group=study_app)
def study_list(db: _DB, group: Annotated[str | None, typer.Option(help="Only this group.")] = None):
    """List the participants."""
    from rich.table import Table

    from cordmap.study.registry import PARTICIPANT_FIELDS, Registry

    with Registry.open(db) as registry:
        participants = registry.participants(group)
    table = Table(title=f"{len(participants)} participants", title_justify="left")
    for name, _, _ in PARTICIPANT_FIELDS:
        table.add_column(name)

    for p in participants:
        table.add_row(
            *(
                ""
                if getattr(p, n) is None
                else f"{getattr(p, n):g}"
                if isinstance(getattr(p, n), float)
                else escape(str(getattr(p, n)))
                for n, _, _ in PARTICIPANT_FIELDS
            )
        )
    console.print(table)


@command("show", group=study_app)
def study_show(db: _DB, participant_id: Annotated[str, typer.Argument(help="Participant id.")]):
    """Show everything registered about one participant (as JSON)."""
    from cordmap.study.registry import Registry

    with Registry.open(db) as registry:
        record = registry.participant(participant_id)
    console.print_json(data=record)


@command("add-scan", group=study_app)
def study_add_scan(
    db: _DB,
    participant_id: Annotated[str, typer.Argument(help="Participant id.")],
    case_dir: Annotated[Path, typer.Argument(help="Case folder (made by `cordmap import`).")],
    made_by: Annotated[
        list[str] | None,
        typer.Option(
            help="Who made a label source, SOURCE=NAME, e.g. manual=rater-A or unet=unet-v1."
        ),
    ] = None,
):
    """Register a case folder of a participant, with its segmentations."""
    from cordmap.study.registry import Registry

    makers = {}
    for item in made_by or []:
        source, sep, name = item.partition("=")
        if not sep or not name:
            raise CordmapError(f"--made-by '{item}' must be SOURCE=NAME, e.g. manual=rater-A")
        makers[source] = name
    with Registry.open(db) as registry:
        scan_id = registry.add_scan(participant_id, case_dir, made_by=makers)
        record = registry.participant(participant_id)
    scan = next(s for s in record["scans"] if s["id"] == scan_id)
    console.print(f"scan {scan_id}: {scan['case_dir']}")
    for s in scan["segmentations"]:
        console.print(f"  segmentation {s['id']}: {s['source']} ({s['labels_file']})")


@command("review", group=study_app)
def study_review(
    db: _DB,
    segmentation_id: Annotated[int, typer.Argument(help="Segmentation id (see `study show`).")],
    reviewer: Annotated[str, typer.Option(help="Reviewer's pseudonym.")],
):
    """Mark a segmentation as reviewed; reviewed segmentations form the training set."""
    from cordmap.study.registry import Registry

    with Registry.open(db) as registry:
        registry.review(segmentation_id, reviewer)
    console.print(f"segmentation {segmentation_id} reviewed by {reviewer}")


@command("dataset", group=study_app)
def study_dataset(db: _DB, out: Annotated[Path, typer.Argument(help="JSON file to write.")]):
    """Write the case folders with reviewed segmentations as a JSON list (a training set)."""
    from cordmap.study.registry import Registry, write_training_list

    with Registry.open(db) as registry:
        cases = write_training_list(registry, out)
    console.print(f"written {out}: {len(cases)} case folders")


@command("surgery", group=study_app)
def study_surgery(
    db: _DB,
    participant_id: Annotated[str, typer.Argument(help="Participant id.")],
    placement: Annotated[
        str | None, typer.Option(help="Placement achieved, e.g. 'rostral edge mid-T11'.")
    ] = None,
    coverage: Annotated[
        float | None, typer.Option(help="Enlargement coverage achieved, %.")
    ] = None,
    time: Annotated[float | None, typer.Option(help="Surgery time, minutes.")] = None,
):
    """Record the implant as achieved: placement, coverage, surgery time."""
    from cordmap.study.registry import Registry

    with Registry.open(db) as registry:
        registry.record_surgery(
            participant_id, placement=placement, coverage_pct=coverage, duration_min=time
        )
    console.print(f"surgery of {participant_id} recorded")


@command("plan", group=study_app)
def study_plan(
    db: _DB,
    participant_id: Annotated[str, typer.Argument(help="Participant id.")],
    paddle: Annotated[str | None, typer.Option(help="Paddle model.")] = None,
    rostral_edge: Annotated[
        str | None, typer.Option(help="Planned rostral edge, e.g. mid-T11.")
    ] = None,
    coverage: Annotated[float | None, typer.Option(help="Planned enlargement coverage, %.")] = None,
    plan_file: Annotated[str | None, typer.Option(help="The plan.json it came from.")] = None,
):
    """Record a placement plan of a participant."""
    from cordmap.study.registry import Registry

    with Registry.open(db) as registry:
        plan_id = registry.add_plan(
            participant_id,
            paddle=paddle,
            rostral_edge=rostral_edge,
            coverage_pct=coverage,
            plan_file=plan_file,
        )
    console.print(f"plan {plan_id} of {participant_id} recorded")


@command("outcome", group=study_app)
def study_outcome(
    db: _DB,
    participant_id: Annotated[str, typer.Argument(help="Participant id.")],
    measure: Annotated[str, typer.Argument(help="Measure name, e.g. walking_distance_m.")],
    value: Annotated[float, typer.Argument(help="Its value.")],
    weeks: Annotated[float | None, typer.Option(help="Weeks after implant.")] = None,
):
    """Record a numeric outcome of a participant."""
    from cordmap.study.registry import Registry

    with Registry.open(db) as registry:
        registry.add_outcome(participant_id, measure, value, weeks)
    console.print(f"{measure} = {value:g} recorded for {participant_id}")


@command("deidentify", group=study_app)
def study_deidentify(
    source: Annotated[Path, typer.Argument(help="Folder of a DICOM export.")],
    out: Annotated[Path, typer.Argument(help="New folder for the de-identified copy.")],
    participant: Annotated[
        str, typer.Option(help="Pseudonym written as PatientName and PatientID.")
    ],
):
    """Copy a DICOM export without names, birth dates, dates, institutions or private tags."""
    from cordmap.study.deid import deidentify_dicom

    count = deidentify_dicom(source, out, participant)
    console.print(f"written {count} de-identified DICOM files to {out}")


def _groups(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    names = tuple(n.strip() for n in text.split(","))
    if len(names) != 2 or not all(names):
        raise CordmapError(f"--groups '{text}' must name two groups: A,B")
    return names


@command("stats", group=study_app)
def study_stats(
    db: _DB,
    by: Annotated[str, typer.Option(help="Participant field that splits the groups.")] = "group",
    metric: Annotated[
        list[str] | None,
        typer.Option(
            help="Metric to compare (repeat): coverage, surgery_time, planned_coverage, age_at_implant, "
            "years_since_injury or an outcome measure."
        ),
    ] = None,
    test: Annotated[str, typer.Option(help="mann-whitney (default) or welch.")] = "mann-whitney",
    groups: Annotated[str | None, typer.Option(help="The two groups to compare, A,B.")] = None,
    report: Annotated[
        Path | None, typer.Option(help="Also write the HTML study report here.")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the results as JSON.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and the plot jitter.")] = 0,
):
    """Compare two groups: test, p-value, effect size, confidence interval; box plots in the report."""
    import json

    from cordmap.atomic import write_text
    from cordmap.study.figures import format_p
    from cordmap.study.registry import Registry
    from cordmap.study.report import study_report
    from cordmap.study.stats import compare_cohort

    metrics = tuple(metric or ("coverage", "surgery_time"))
    with Registry.open(db) as registry:
        if report:
            comparisons = study_report(
                registry,
                report,
                by=by,
                metrics=metrics,
                test=test,
                groups=_groups(groups),
                seed=seed,
            )
        else:
            comparisons = compare_cohort(
                registry.cohort(),
                by=by,
                metrics=metrics,
                test=test,
                groups=_groups(groups),
                seed=seed,
            )
    for c in comparisons:
        (a, b), unit = c.groups, f" {c.unit}" if c.unit else ""
        console.print(
            f"[bold]{c.metric}[/]: {a.name} median {a.median:.1f}{unit} (n={a.n}) vs {b.name} "
            f"{b.median:.1f}{unit} (n={b.n}); {c.test} {c.statistic:.3g}, {format_p(c.p_value)}, "
            f"{c.effect_name} {c.effect:.2f}, {c.difference_name} {c.difference:.1f}{unit} "
            f"({c.confidence:.0%} CI {c.ci_low:.1f} to {c.ci_high:.1f})"
        )
    if json_out:
        write_text(json_out, json.dumps([c.to_dict() for c in comparisons], indent=1) + "\n")
    if report:
        console.print(f"written {report}")


@command("demo", group=study_app)
def study_demo(
    out: Annotated[Path, typer.Argument(help="New folder for the synthetic study.")],
    participants: Annotated[int, typer.Option(help="Number of synthetic participants.")] = 50,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
):
    """Build a synthetic two-group study of planned phantoms, with statistics and report."""
    from cordmap.study.demo import build_demo_study
    from cordmap.study.figures import format_p

    with console.status("building the demo study") as status:
        study = build_demo_study(
            out,
            participants=participants,
            seed=seed,
            on_participant=lambda pid: status.update(f"{pid}: phantom, case folder, plan, surgery"),
        )
    for c in study.comparisons:
        a, b = c.groups
        console.print(
            f"{c.metric}: {a.name} median {a.median:.1f} vs {b.name} {b.median:.1f} {c.unit}, "
            f"{format_p(c.p_value)}"
        )
    console.print(f"written {study.database}, {study.csv}, {study.cases}/ and {study.report}")


@command()
def batch(
    study: Annotated[str, typer.Argument(help="Study database, or a folder of case folders.")],
    stage: Annotated[
        str, typer.Option(help="Stage to run on every case: mesh, plan, view, segment or report.")
    ],
    scheduler: Annotated[
        str | None,
        typer.Option(help="Address of an existing Dask scheduler (default: a local cluster)."),
    ] = None,
    workers: Annotated[int, typer.Option(help="Workers of the local cluster.")] = 2,
    processes: Annotated[
        bool,
        typer.Option(
            "--processes/--threads",
            help="Local workers as processes, or threads (quicker to start).",
        ),
    ] = True,
    model: Annotated[Path | None, typer.Option(help="Model file, for --stage segment.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Re-run cases that are up to date.")
    ] = False,
):
    """Run one stage over all cases of a study in parallel (Dask); failures do not stop the others."""
    from cordmap.study.batch import run_batch

    def show(outcome):
        colour = {"done": "green", "up to date": "blue", "failed": "red"}[outcome.status]
        detail = f": {outcome.message}" if outcome.message else f" ({outcome.seconds:.1f} s)"
        console.print(f"[{colour}]{outcome.status}[/] {outcome.case}{detail}", highlight=False)

    options = {"model": str(model)} if model else {}
    outcomes = run_batch(
        study,
        stage,
        options=options,
        scheduler=scheduler,
        workers=workers,
        processes=processes,
        force=force,
        on_result=show,
    )
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "up to date", "failed")}
    console.print(", ".join(f"{n} {s}" for s, n in counts.items()))
    if counts["failed"]:
        raise typer.Exit(1)
