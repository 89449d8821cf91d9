"""The `cordmap` command: each command parses its options, calls one function, prints.

No logic lives here. Errors of the CordmapError family are printed as one line and
exit with status 1; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from cordmap import __version__
from cordmap.errors import CordmapError, missing_extra

if TYPE_CHECKING:
    from cordmap.planning.results import Assessment, Placement, Plan

app = typer.Typer(
    help="Plan epidural stimulation over the lumbosacral spinal cord from MRI.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}


def command(func_or_name=None, /, *, group: typer.Typer | None = None, **options):
    """Register a command whose CordmapErrors (and failed file operations, and a missing
    optional extra) become one-line messages and exit code 1.

    Use as `@command`, `@command()` or `@command("name", help=...)`; `group` registers it
    in a sub-app (e.g. `cordmap study ...`) instead of the main one.
    """
    if callable(func_or_name):
        return command()(func_or_name)

    def register(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except (CordmapError, OSError, ModuleNotFoundError) as exc:
                if _state["debug"] or (
                    isinstance(exc, ModuleNotFoundError) and missing_extra(exc) is None
                ):
                    raise
                err_console.print(
                    f"[bold red]error:[/] {escape(_message(exc))}", highlight=False, soft_wrap=True
                )
                raise typer.Exit(1) from None

        return (group or app).command(func_or_name, **options)(wrapper)

    return register


def _message(exc: Exception) -> str:
    """One line for an error: a CordmapError's message; for a missing optional package,
    the extra to install; for a failed file operation (a read-only folder, a name too long,
    a device instead of a file) what failed, on what."""
    if isinstance(exc, CordmapError):
        return str(exc)
    if isinstance(exc, ModuleNotFoundError):
        return str(missing_extra(exc))
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f)
    return (
        f"{exc.strerror or type(exc).__name__}{': ' + where if where else ''}; check the "
        "path and its permissions (nothing half-written was left)"
    )


def _version(value: bool):
    if value:
        console.print(f"cordmap {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = None,
):
    _state["debug"] = debug


def _spacing(text: str | None) -> tuple[float, float, float] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) <= 0:
        raise CordmapError(
            f"--spacing '{text}' must be three positive mm values: X,Y,SLICE (e.g. 0.8,0.8,3)"
        )
    return values


@command("import")
def import_(
    image: Annotated[
        Path, typer.Argument(help="NIfTI file, DICOM folder or folder of PNG/TIFF slices.")
    ],
    case_dir: Annotated[Path, typer.Argument(help="Case folder to create or refresh.")],
    labels: Annotated[
        Path | None, typer.Option(help="Label NIfTI or folder of per-slice masks.")
    ] = None,
    subject: Annotated[str, typer.Option(help="BIDS subject label.")] = "sub-01",
    series: Annotated[
        str | None, typer.Option(help="DICOM series: number, UID or description.")
    ] = None,
    spacing: Annotated[
        str | None, typer.Option(help="Slice stacks: X,Y,SLICE spacing in mm.")
    ] = None,
    orientation: Annotated[
        str, typer.Option(help="Slice stacks: axial, coronal or sagittal.")
    ] = "axial",
    reverse: Annotated[
        bool,
        typer.Option(
            help="Slice stacks: the first file is the most superior (anterior, right) slice."
        ),
    ] = False,
    colour_table: Annotated[
        Path | None, typer.Option(help="Colour-coded masks: colour -> label file.")
    ] = None,
    protocol: Annotated[
        Path | None, typer.Option(help="Annotation protocol JSON (default: shipped).")
    ] = None,
    spinal_levels: Annotated[
        Path | None,
        typer.Option(
            help="SCT convention: the cord labelled by spinal level (1..30 = C1..S5) -> cord segments."
        ),
    ] = None,
    rootlets: Annotated[
        Path | None,
        typer.Option(
            help="SCT convention: dorsal rootlets by spinal level -> dorsal roots, side from the cord."
        ),
    ] = None,
):
    """Build a case folder from an MRI and (optionally) its annotations."""
    from cordmap.ingest import import_case

    result = import_case(
        image,
        case_dir,
        labels_source=labels,
        subject=subject,
        series=series,
        spacing=_spacing(spacing),
        orientation=orientation,
        reverse=reverse,
        colour_table=colour_table,
        protocol=protocol,
        spinal_levels=spinal_levels,
        rootlets=rootlets,
    )
    state = "up to date" if result.up_to_date else "written"
    console.print(f"case {result.case.root} {state}")
    _print_summary(result.case.summary())


@command()
def info(case_dir: Annotated[Path, typer.Argument(help="Case folder.")]):
    """Summarise a case: image geometry, structures and their volumes, stages run."""
    from cordmap.case import Case

    _print_summary(Case.open(case_dir).summary())


def _print_summary(summary: dict) -> None:
    from rich.table import Table

    image = summary["image"]
    console.print(
        f"[bold]{summary['subject']}[/]  image {' x '.join(map(str, image['shape']))} voxels, "
        f"{' x '.join(f'{s:g}' for s in image['spacing_mm'])} mm, field of view "
        f"{' x '.join(f'{s:g}' for s in image['field_of_view_mm'])} mm"
    )
    for source, structures in summary["labels"].items():
        table = Table(title=f"labels ({source})", title_justify="left")
        for column in ("id", "structure", "voxels", "volume mm³"):
            table.add_column(column, justify="left" if column == "structure" else "right")
        for name, row in structures.items():
            table.add_row(str(row["id"]), name, str(row["voxels"]), f"{row['volume_mm3']:.1f}")
        console.print(table)
    if summary["stages"]:
        console.print("stages: " + ", ".join(summary["stages"]))


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
    for s in result.worst_slices:
        console.print(
            f"slice k={s.k} (S {s.s_mm:.1f} mm): {s.differing_voxels} of {s.labelled_voxels} "
            f"labelled voxels differ, mostly {s.confused_a} (A) vs {s.confused_b} (B)"
        )
    if json_out:
        write_text(json_out, json.dumps(result.to_dict(), indent=1) + "\n")
        console.print(f"written {json_out}")


@command()
def series(
    folder: Annotated[
        Path, typer.Argument(help="Folder of a DICOM export (searched recursively).")
    ],
):
    """List the DICOM series in a folder: number, description, orientation, size, spacing."""
    from rich.table import Table

    from cordmap.io.dicom import scan_series

    infos, unreadable = scan_series(folder)
    table = Table(title=f"{len(infos)} DICOM series in {folder}", title_justify="left")
    for column in (
        "#",
        "description",
        "modality",
        "plane",
        "images",
        "size",
        "pixel mm",
        "slice mm",
    ):
        table.add_column(column, justify="left" if column == "description" else "right")
    for s in infos:
        pixel = "-" if s.pixel_spacing is None else " x ".join(f"{v:g}" for v in s.pixel_spacing)
        table.add_row(
            "-" if s.number is None else str(s.number),
            s.description,
            s.modality,
            s.orientation,
            str(s.n_files),
            f"{s.rows} x {s.cols}",
            pixel,
            "-" if s.slice_spacing is None else f"{s.slice_spacing:g}",
        )
    console.print(table)
    for s in infos:
        console.print(
            f"#{'-' if s.number is None else s.number} UID {s.uid}", highlight=False, soft_wrap=True
        )
    for path in unreadable:
        console.print(
            f"[yellow]unreadable:[/yellow] {path} (empty, truncated or damaged)",
            highlight=False,
            soft_wrap=True,
        )
    console.print("choose one with --series NUMBER (or a UID, or part of the description)")


@command("validate")
def validate_labels(
    labels: Annotated[Path, typer.Argument(help="Label volume (NIfTI) to check.")],
    schema: Annotated[
        Path | None, typer.Option(help="Annotation protocol JSON (default: shipped).")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the report as JSON to this file.")
    ] = None,
    partial: Annotated[
        bool,
        typer.Option(
            help="Part of the anatomy on purpose (e.g. SCT's cord and "
            "rootlets): do not ask for the required structures."
        ),
    ] = False,
):
    """Check a label volume against the annotation protocol; exit status 1 when it has errors."""
    import json

    from cordmap.anatomy.validate import validate
    from cordmap.atomic import write_text
    from cordmap.io.nifti import read_labels
    from cordmap.protocol.schema import LabelSchema

    report = validate(read_labels(labels, LabelSchema.load(schema)), partial=partial)
    console.print(report.as_text(), markup=False, highlight=False, soft_wrap=True)
    if json_out is not None:
        write_text(json_out, json.dumps(report.to_dict(), indent=1) + "\n")
        console.print(f"report written to {json_out}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@command("protocol")
def protocol_export(
    format: Annotated[
        str, typer.Option("--format", help="itksnap, slicer, neuroglancer or table.")
    ] = "table",
    out: Annotated[
        Path | None, typer.Option(help="Write to this file instead of printing.")
    ] = None,
    schema: Annotated[
        Path | None, typer.Option(help="Annotation protocol JSON (default: shipped).")
    ] = None,
):
    """Print or write the annotation protocol for ITK-SNAP, 3D Slicer, Neuroglancer or as a table."""
    from cordmap.atomic import write_text
    from cordmap.protocol.schema import LabelSchema

    text = LabelSchema.load(schema).export(format)
    if out is None:
        typer.echo(text, nl=False)
    else:
        write_text(out, text)
        console.print(f"{format} protocol written to {out}", highlight=False)


@command()
def view(
    case_dir: Annotated[Path, typer.Argument(help="Case folder (with labels).")],
    port: Annotated[
        int | None, typer.Option(help="Port on 127.0.0.1 (default: a free one).")
    ] = None,
    static: Annotated[
        Path | None,
        typer.Option(
            "--static",
            help="Write a self-contained site (client + data + index.html) here instead.",
        ),
    ] = None,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Do not open a web browser.")
    ] = False,
):
    """Show the case in 3D in Neuroglancer, served from this machine (offline)."""
    from cordmap.viewer import export_case, serve_case

    if static is not None:
        folder = export_case(case_dir, static)
        console.print(
            f"viewer site written to {folder}; host the folder on any web server "
            "and open its index.html"
        )
        return
    server = serve_case(case_dir, port)
    console.print(f"viewer at {server.url}  (Ctrl-C to stop)")
    if not no_browser:
        import webbrowser

        webbrowser.open(server.url)
    server.serve_until_interrupted()
    console.print("viewer stopped")


# -- study: registry, statistics, reports ----------------------------------------------------
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


@command
def phantom(
    out_dir: Annotated[
        Path, typer.Argument(help="Folder to write (new, empty or an earlier phantom).")
    ],
    seed: Annotated[
        int, typer.Option(help="Anatomy seed (lengths, enlargement, conus level, curvature).")
    ] = 0,
    slice_thickness: Annotated[
        float | None,
        typer.Option(
            "--slice-thickness",
            help="Axial slice thickness in mm; omit for 3 mm, 0 to draw it from the seed.",
        ),
    ] = None,
    pixel: Annotated[float, typer.Option("--pixel", help="In-plane pixel size in mm.")] = 0.8,
    slices: Annotated[
        int | None,
        typer.Option(
            help="Number of axial slices centred on the enlargement (default: T9 to sacrum)."
        ),
    ] = None,
    dicom: Annotated[bool, typer.Option(help="Also write axial and sagittal DICOM series.")] = True,
):
    """Generate the synthetic lumbosacral phantom with exact ground truth."""
    from cordmap.anatomy.phantom import make_phantom, write_phantom

    thickness = 3.0 if slice_thickness is None else (slice_thickness or None)
    result = make_phantom(seed, slice_thickness=thickness, pixel_mm=pixel, n_slices=slices)
    files = write_phantom(result, out_dir, dicom=dicom)
    truth = result.truth
    console.print(
        f"phantom {seed}: {' x '.join(map(str, result.image.shape))} voxels of "
        f"{' x '.join(f'{s:g}' for s in result.image.spacing)} mm; conus tip at "
        f"{truth.conus['tip_level']}, enlargement {truth.enlargement['length_mm']:.0f} mm over "
        f"{truth.enlargement['superior_level']}..{truth.enlargement['inferior_level']}, widest in "
        f"segment {truth.max_cord_area['segment']}"
    )
    for path in files:
        console.print(f"written {path}")


def _names(text: str | None) -> tuple[str, ...]:
    """'cord,csf' -> ('cord', 'csf')."""
    return tuple(n.strip() for n in text.split(",") if n.strip()) if text else ()


def _train_options(
    epochs,
    patches,
    batch_size,
    patch,
    seed,
    augment,
    extra_augmentation,
    balance_classes,
    accelerator,
    devices,
    strategy,
    progress,
    **extra,
):
    from cordmap.learn.train import TrainConfig, parse_patch

    return TrainConfig(
        epochs=epochs,
        patches_per_epoch=patches,
        batch_size=batch_size,
        patch=parse_patch(patch),
        seed=seed,
        augment=augment,
        extra_augmentation=_names(extra_augmentation),
        balance_classes=balance_classes,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        progress=progress,
        **extra,
    )


_EPOCHS = typer.Option(help="Maximum number of epochs (the best validation loss is kept).")
_PATCHES = typer.Option("--patches", help="Training patches drawn per epoch.")
_PATCH = typer.Option(help="Patch / sliding-window size X,Y,Z in voxels (default: the config's).")
_ACCEL = typer.Option(help="Lightning accelerator: auto, cpu, gpu.")
_DEVICES = typer.Option(help="Lightning devices: auto, 1, 2, ...")
_STRATEGY = typer.Option(help="Lightning strategy: auto, ddp, ...")
_EXTRA = typer.Option(
    help="Extra augmentations, comma-separated: intensity, bias, elastic, scale, tilt."
)
_KEEP_LARGEST = typer.Option(help="Classes to keep only the largest connected piece of, e.g. cord.")
_BALANCE = typer.Option(
    help="Class-weighted cross-entropy (--no-balance-classes: the published plain loss)."
)


@command()
def train(
    cases: Annotated[list[Path] | None, typer.Argument(help="Annotated case folders.")] = None,
    out: Annotated[
        Path, typer.Option(help="Run folder (re-run the same command to resume).")
    ] = Path("unet-run"),
    phantoms: Annotated[int, typer.Option(help="Add N generated phantom cases.")] = 0,
    phantom_seed: Annotated[int, typer.Option(help="Seed of the first phantom.")] = 0,
    config: Annotated[
        str, typer.Option(help="Network: small (default, CPU) or published.")
    ] = "small",
    classes: Annotated[
        str,
        typer.Option(
            help="Training classes: published (7), spine (cord, CSF, vertebra, disc) or cord."
        ),
    ] = "published",
    epochs: Annotated[int, _EPOCHS] = 30,
    patches: Annotated[int, _PATCHES] = 24,
    batch_size: Annotated[int, typer.Option(help="Patches per optimiser step.")] = 2,
    patch: Annotated[str | None, _PATCH] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split, sampling and weights.")] = 0,
    augment: Annotated[bool, typer.Option(help="Published rotation + noise augmentation.")] = True,
    extra_augmentation: Annotated[str | None, _EXTRA] = None,
    balance_classes: Annotated[bool, _BALANCE] = True,
    accelerator: Annotated[str, _ACCEL] = "auto",
    devices: Annotated[str, _DEVICES] = "auto",
    strategy: Annotated[str, _STRATEGY] = "auto",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    recipe: Annotated[
        str | None,
        typer.Option(
            help="Train a recipe with its own data and settings: default (the bundled model)."
        ),
    ] = None,
    data: Annotated[
        Path,
        typer.Option(
            help="With --recipe: the folder holding lumbar-mri/, pam50/ and pam50-small/."
        ),
    ] = Path("../shared/data"),
):
    """Train the 3D U-Net on annotated cases and/or phantoms, or a recipe (resumable)."""
    from cordmap.learn.data import gather_cases
    from cordmap.learn.train import train as run_training

    if recipe is not None:
        from cordmap.learn.recipe import train_recipe
        from cordmap.protocol.schema import LabelSchema

        if cases or phantoms:
            raise CordmapError("--recipe brings its own data: pass no case folders or --phantoms")
        result = train_recipe(recipe, data, out, LabelSchema.load(), progress=progress)
        console.print(
            f"trained {result.epochs_run} epochs; best validation loss {result.best_val_loss:.4f}"
        )
        console.print(f"written {result.model_path} and {result.loss_plot}")
        return
    settings = _train_options(
        epochs,
        patches,
        batch_size,
        patch,
        seed,
        augment,
        extra_augmentation,
        balance_classes,
        accelerator,
        devices,
        strategy,
        progress,
        model=config,
        classes=classes,
    )
    data, schema = gather_cases(cases or [], phantoms, phantom_seed)
    result = run_training(data, out, schema, settings)
    console.print(
        f"trained {result.epochs_run} epochs; best validation loss "
        f"{result.best_val_loss:.4f}; split { ({k: len(v) for k, v in result.split.items()}) }"
    )
    console.print(f"written {result.model_path} and {result.loss_plot}")


@command()
def evaluate(
    cases: Annotated[list[Path], typer.Argument(help="Case folders with manual labels.")],
    model: Annotated[
        Path | None, typer.Option(help="Model file; omit to score the stored desc-unet labels.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the full report (JSON) here.")] = None,
    keep_largest: Annotated[str | None, _KEEP_LARGEST] = None,
):
    """Score segmentations against manual labels: IoU, Dice, HD95, mIoU, pixel accuracy."""
    from cordmap.learn.evaluate import evaluate_case_dirs, report_table, write_report

    report = evaluate_case_dirs(cases, model, _names(keep_largest))
    console.print(report_table(report))
    if out is not None:
        console.print(f"written {write_report(report, out)}")


_ANCHOR = typer.Option(
    help="Vertebral anchor: 'L5' (the lowest vertebra in view), 'T12/L1 disc' (the lowest disc in view), '...@S' for the one nearest S mm."
)


@command()
def segment(
    case_dir: Annotated[Path, typer.Argument(help="Case folder.")],
    model: Annotated[
        Path | None,
        typer.Option(help="Model file written by `cordmap train` (default: the bundled model)."),
    ] = None,
    overlap: Annotated[float, typer.Option(help="Sliding-window overlap (0..0.9).")] = 0.25,
    device: Annotated[str, typer.Option(help="Torch device: cpu, cuda, cuda:1 ...")] = "cpu",
    keep_largest: Annotated[str | None, _KEEP_LARGEST] = None,
    anchor: Annotated[str | None, _ANCHOR] = None,
):
    """Segment a case with a U-Net (the bundled model by default) and number its vertebrae;
    writes its desc-unet labels."""
    from cordmap.learn.infer import segment_case

    result = segment_case(
        case_dir,
        model,
        overlap=overlap,
        device=device,
        keep_largest=_names(keep_largest),
        anchor=anchor,
    )
    _print_segmentation(result)


@command()
def levels(
    case_dir: Annotated[Path, typer.Argument(help="Case folder segmented by `cordmap segment`.")],
    anchor: Annotated[str | None, _ANCHOR] = None,
):
    """Number the vertebrae and discs of a case's segmentation again (e.g. from an anchor)."""
    from cordmap.segmentation import renumber_case

    _print_segmentation(renumber_case(case_dir, anchor))


def _print_segmentation(result) -> None:
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    if result.levels:
        console.print(f"{result.levels['summary']}: {', '.join(result.levels['vertebrae'])}")
        if result.levels["conus_level"]:
            console.print(f"conus tip at {result.levels['conus_level']}")
    state = "up to date" if result.up_to_date else "written"
    console.print(f"{state} {result.path}")


@command()
def auto(
    image: Annotated[
        Path, typer.Argument(help="NIfTI file, DICOM folder or slice folder of the scan.")
    ],
    case_dir: Annotated[Path, typer.Argument(help="Case folder to create (or refresh).")],
    series: Annotated[
        str | None, typer.Option(help="DICOM series: number, UID or description.")
    ] = None,
    subject: Annotated[str, typer.Option(help="BIDS subject label.")] = "sub-01",
    anchor: Annotated[str | None, _ANCHOR] = None,
    model: Annotated[
        Path | None, typer.Option(help="Model file (default: the bundled model).")
    ] = None,
):
    """From an unlabelled scan to a plan: import, segment, levels, validate, mesh, plan,
    viewer site and report, unattended."""
    from rich.progress import Progress

    from cordmap.auto import run_auto

    stages = ("import", "segment", "validate", "mesh", "plan", "viewer", "report")
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("cordmap auto", total=len(stages))

        def on_step(stage: str) -> None:
            progress.update(task, completed=stages.index(stage), description=stage)

        result = run_auto(
            image,
            case_dir,
            series=series,
            subject=subject,
            anchor=anchor,
            model=model,
            on_step=on_step,
        )
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    levels = result.levels
    console.print(f"{levels['summary']}: {', '.join(levels['vertebrae'])}")
    if levels["conus_level"]:
        console.print(f"conus tip at {levels['conus_level']}")
    _plan_best(result.plan, f" ({result.plan.enlargement.span})")
    if result.up_to_date:
        console.print(f"up to date: {', '.join(result.up_to_date)}")
    console.print(f"written {result.report} and {result.site}")


@command()
def models():
    """List the segmentation models bundled with cordmap, with their model cards."""
    from cordmap.learn.bundled import bundled_models

    found = bundled_models()
    if not found:
        console.print("no bundled models in this installation")
    for item in found:
        card = item.card
        console.print(f"[bold]{item.name}[/bold]  {item.path}")
        for key in ("summary", "classes", "command", "hardware", "training_time"):
            if key in card:
                console.print(f"  {key}: {card[key]}")
        for name, scores in card.get("heldout", {}).items():
            console.print(f"  held out, {name}: {scores}", highlight=False)


@command()
def finetune(
    model: Annotated[Path, typer.Argument(help="Trained model file.")],
    cases: Annotated[list[Path], typer.Argument(help="Annotated case folders to adapt to.")],
    out: Annotated[Path, typer.Option(help="Run folder of the fine-tuning.")] = Path(
        "unet-finetune"
    ),
    heldout: Annotated[
        list[Path] | None,
        typer.Option(help="Held-out case folder scored before and after (repeat)."),
    ] = None,
    freeze_encoder: Annotated[bool, typer.Option(help="Train the decoder only.")] = False,
    annotated: Annotated[
        str | None,
        typer.Option(help="Classes annotated in the cases, e.g. cord,csf (default: all)."),
    ] = None,
    epochs: Annotated[int, _EPOCHS] = 10,
    patches: Annotated[int, _PATCHES] = 24,
    batch_size: Annotated[int, typer.Option(help="Patches per optimiser step.")] = 2,
    patch: Annotated[str | None, _PATCH] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sampling.")] = 0,
    augment: Annotated[bool, typer.Option(help="Published rotation + noise augmentation.")] = True,
    extra_augmentation: Annotated[str | None, _EXTRA] = None,
    balance_classes: Annotated[bool, _BALANCE] = True,
    accelerator: Annotated[str, _ACCEL] = "auto",
    devices: Annotated[str, _DEVICES] = "auto",
    strategy: Annotated[str, _STRATEGY] = "auto",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
):
    """Adapt a trained U-Net to a few annotated cases; report held-out cases before/after."""
    from cordmap.learn.data import gather_cases
    from cordmap.learn.evaluate import report_table
    from cordmap.learn.finetune import finetune as run_finetune

    settings = _train_options(
        epochs,
        patches,
        batch_size,
        patch,
        seed,
        augment,
        extra_augmentation,
        balance_classes,
        accelerator,
        devices,
        strategy,
        progress,
        freeze_encoder=freeze_encoder,
        annotated=_names(annotated) or None,
    )
    data, schema = gather_cases(cases)
    held = gather_cases(heldout)[0] if heldout else []
    result = run_finetune(model, data, out, schema, heldout=held, config=settings)
    for title, report in (("before", result.before), ("after", result.after)):
        if report is not None:
            console.print(report_table(report, title=f"held-out cases {title} fine-tuning"))
    console.print(f"written {result.training.model_path} and {result.report_path}")


# -- planning (cordmap.planning) ----------------------------------------------------------------

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
    from cordmap.planning.files import run_plan

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
    from cordmap.planning.files import run_assess

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


def _plan_best(plan: Plan, detail: str = "") -> None:
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


@command("mesh")
def mesh_command(
    source: Annotated[Path, typer.Argument(help="Case folder, or a label NIfTI file.")],
    format: Annotated[
        str,
        typer.Option(
            "--format", help="Comma-separated: glb (Blender, web), obj, ply, stl (3D printing)."
        ),
    ] = "glb",
    reduction: Annotated[
        float, typer.Option(help="Fraction of triangles to remove (0.9 keeps 10%; 0 keeps all).")
    ] = 0.9,
    smoothing: Annotated[int, typer.Option(help="Taubin smoothing iterations (0 = none).")] = 10,
    thin_upsample: Annotated[
        int,
        typer.Option(
            help="Thin labels (roots): 1 bridges diagonal contacts, N>=2 upsamples N times, 0 = off."
        ),
    ] = 1,
    out: Annotated[
        Path | None,
        typer.Option(help="Label file only: output folder (default: <name>_mesh beside it)."),
    ] = None,
    protocol: Annotated[
        Path | None,
        typer.Option(help="Label file only: annotation protocol JSON (default: shipped)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Processes for the per-label work (default: the usable CPU cores)."),
    ] = None,
):
    """Mesh every labelled structure (world RAS+ mm) and export for 3D tools into CASE/mesh/."""
    from rich.table import Table

    from cordmap.mesh import mesh_case, mesh_label_file, parse_formats

    options = dict(
        formats=parse_formats(format),
        smoothing=smoothing,
        reduction=reduction,
        thin_upsample=thin_upsample,
        workers=workers,
    )
    if source.is_dir():
        if out is not None or protocol is not None:
            raise CordmapError(
                "--out and --protocol apply to a label file; a case writes "
                "CASE/mesh/ with the case's own protocol"
            )
        result = mesh_case(source, **options)
        if result.up_to_date:
            console.print(
                f"mesh stage of {source} is up to date (same labels and options)",
                highlight=False,
                soft_wrap=True,
            )
    else:
        result = mesh_label_file(source, out, protocol=protocol, **options)
    table = Table(title=f"{len(result.structures)} structures meshed", title_justify="left")
    for column in ("id", "structure", "mesh mm³", "voxels mm³", "area mm²", "triangles", "closed"):
        table.add_column(column, justify="left" if column == "structure" else "right")
    for s in result.structures:
        table.add_row(
            str(s.id),
            s.name,
            f"{s.stats.volume_mm3:.1f}",
            f"{s.voxel_volume_mm3:.1f}",
            f"{s.stats.area_mm2:.1f}",
            str(s.stats.triangles),
            "yes" if s.stats.watertight else "no",
        )
    console.print(table)
    for path in result.files:
        console.print(
            f"{'kept' if result.up_to_date else 'written'} {path}", highlight=False, soft_wrap=True
        )


@command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for everything the demo makes.")] = Path(
        "cordmap-demo"
    ),
    seed: Annotated[int, typer.Option(help="Phantom seed (anatomy varies with it).")] = 0,
):
    """Run the whole pipeline on the built-in lumbosacral phantom and say what it made."""
    from rich.table import Table

    from cordmap.demo import run_demo

    with console.status("starting") as status:
        result = run_demo(
            out,
            seed=seed,
            on_step=lambda step: (console.print(f"[dim]•[/] {step}"), status.update(step)),
        )
    for note in result.notes:
        console.print(f"[green]✓[/] {note}", highlight=False)
    table = Table(title=f"made in {result.out}", title_justify="left")
    table.add_column("what")
    table.add_column("where", overflow="fold")
    for what, where in result.made:
        table.add_row(what, str(where))
    console.print(table)


@command()
def report(
    case_dir: Annotated[Path, typer.Argument(help="Case folder (with labels).")],
    out: Annotated[
        Path | None,
        typer.Option(help="HTML file to write (default CASE/report/<subject>_report.html)."),
    ] = None,
    site: Annotated[
        Path | None,
        typer.Option(help="A static viewer site (`cordmap view CASE --static DIR`) to link to."),
    ] = None,
):
    """Write the case report: one self-contained HTML page (slices, 3D view, coverage, candidates)."""
    from cordmap.report.case_report import write_case_report

    with console.status("planning if needed, drawing the figures"):
        result = write_case_report(case_dir, out, site=site)
    _plan_best(result.plan)
    console.print(f"report written to {result.path}", highlight=False, soft_wrap=True)
