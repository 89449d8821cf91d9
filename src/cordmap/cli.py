"""The `cordmap` command: each command parses its options, calls one function, prints.

No logic lives here. Errors of the CordmapError family are printed as one line and
exit with status 1; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from cordmap import __version__
from cordmap.errors import CordmapError

app = typer.Typer(
    help="Plan epidural stimulation over the lumbosacral spinal cord from MRI.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}


def command(func_or_name=None, /, **options):
    """Register a command whose CordmapErrors become one-line messages and exit code 1.

    Use as `@command`, `@command()` or `@command("name", help=...)`.
    """
    if callable(func_or_name):
        return command()(func_or_name)

    def register(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except CordmapError as exc:
                if _state["debug"]:
                    raise
                err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
                raise typer.Exit(1) from None

        return app.command(func_or_name, **options)(wrapper)

    return register


def _version(value: bool):
    if value:
        console.print(f"cordmap {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version.")] = None,
):
    _state["debug"] = debug


def _spacing(text: Optional[str]) -> Optional[tuple[float, float, float]]:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) <= 0:
        raise CordmapError(f"--spacing '{text}' must be three positive mm values: X,Y,SLICE (e.g. 0.8,0.8,3)")
    return values


@command("import")
def import_(
    image: Annotated[Path, typer.Argument(help="NIfTI file, DICOM folder or folder of PNG/TIFF slices.")],
    case_dir: Annotated[Path, typer.Argument(help="Case folder to create or refresh.")],
    labels: Annotated[Optional[Path], typer.Option(help="Label NIfTI or folder of per-slice masks.")] = None,
    subject: Annotated[str, typer.Option(help="BIDS subject label.")] = "sub-01",
    series: Annotated[Optional[str], typer.Option(help="DICOM series: number, UID or description.")] = None,
    spacing: Annotated[Optional[str], typer.Option(help="Slice stacks: X,Y,SLICE spacing in mm.")] = None,
    protocol: Annotated[Optional[Path], typer.Option(help="Annotation protocol JSON (default: shipped).")] = None,
):
    """Build a case folder from an MRI and (optionally) its annotations."""
    from cordmap.ingest import import_case

    result = import_case(image, case_dir, labels_source=labels, subject=subject, series=series,
                         spacing=_spacing(spacing), protocol=protocol)
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
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the results as JSON.")] = None,
    protocol: Annotated[Optional[Path], typer.Option(help="Annotation protocol JSON (default: shipped).")] = None,
):
    """Agreement of two labellings: kappa, Dice, IoU, surface distances, worst slices."""
    import json

    from rich.table import Table

    from cordmap.anatomy.schema import LabelSchema
    from cordmap.atomic import write_text
    from cordmap.study.agreement import agree_files

    result = agree_files(labels_a, labels_b, schema=LabelSchema.load(protocol), worst=worst)
    console.print(f"Cohen's kappa over all voxels: [bold]{result.kappa:.3f}[/]")
    table = Table(title="per label", title_justify="left")
    for column in ("id", "label", "voxels A", "voxels B", "kappa", "Dice", "IoU", "mean surf. mm", "HD95 mm"):
        table.add_column(column, justify="left" if column == "label" else "right")
    mm = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for r in result.labels:
        table.add_row(str(r.id), r.name, str(r.voxels_a), str(r.voxels_b), f"{r.kappa:.3f}",
                      f"{r.dice:.3f}", f"{r.iou:.3f}", mm(r.mean_surface_mm), mm(r.hd95_mm))
    console.print(table)
    for s in result.worst_slices:
        console.print(f"slice k={s.k} (S {s.s_mm:.1f} mm): {s.differing_voxels} of {s.labelled_voxels} "
                      f"labelled voxels differ, mostly {s.confused_a} (A) vs {s.confused_b} (B)")
    if json_out:
        write_text(json_out, json.dumps(result.to_dict(), indent=1) + "\n")
        console.print(f"written {json_out}")


@command()
def series(folder: Annotated[Path, typer.Argument(help="Folder of a DICOM export (searched recursively).")]):
    """List the DICOM series in a folder: number, description, orientation, size, spacing."""
    from rich.table import Table

    from cordmap.io.dicom import list_series

    infos = list_series(folder)
    table = Table(title=f"{len(infos)} DICOM series in {folder}", title_justify="left")
    for column in ("#", "description", "modality", "plane", "images", "size", "pixel mm",
                   "slice mm"):
        table.add_column(column, justify="left" if column == "description" else "right")
    for s in infos:
        pixel = "-" if s.pixel_spacing is None else " x ".join(f"{v:g}" for v in s.pixel_spacing)
        table.add_row("-" if s.number is None else str(s.number), s.description, s.modality,
                      s.orientation, str(s.n_files), f"{s.rows} x {s.cols}", pixel,
                      "-" if s.slice_spacing is None else f"{s.slice_spacing:g}")
    console.print(table)
    for s in infos:
        console.print(f"#{'-' if s.number is None else s.number} UID {s.uid}", highlight=False,
                      soft_wrap=True)
    console.print("choose one with --series NUMBER (or a UID, or part of the description)")


@command("validate")
def validate_labels(
    labels: Annotated[Path, typer.Argument(help="Label volume (NIfTI) to check.")],
    schema: Annotated[Optional[Path], typer.Option(help="Annotation protocol JSON (default: shipped).")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the report as JSON to this file.")] = None,
):
    """Check a label volume against the annotation protocol; exit status 1 when it has errors."""
    import json

    from cordmap.anatomy.schema import LabelSchema
    from cordmap.anatomy.validate import validate
    from cordmap.atomic import write_text
    from cordmap.io.nifti import read_labels

    report = validate(read_labels(labels, LabelSchema.load(schema)))
    console.print(report.as_text(), markup=False, highlight=False, soft_wrap=True)
    if json_out is not None:
        write_text(json_out, json.dumps(report.to_dict(), indent=1) + "\n")
        console.print(f"report written to {json_out}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@command("protocol")
def protocol_export(
    format: Annotated[str, typer.Option("--format", help="itksnap, slicer, neuroglancer or table.")] = "table",
    out: Annotated[Optional[Path], typer.Option(help="Write to this file instead of printing.")] = None,
    schema: Annotated[Optional[Path], typer.Option(help="Annotation protocol JSON (default: shipped).")] = None,
):
    """Print or write the annotation protocol for ITK-SNAP, 3D Slicer, Neuroglancer or as a table."""
    from cordmap.anatomy.schema import LabelSchema
    from cordmap.atomic import write_text

    text = LabelSchema.load(schema).export(format)
    if out is None:
        typer.echo(text, nl=False)
    else:
        write_text(out, text)
        console.print(f"{format} protocol written to {out}", highlight=False)


@command()
def view(
    case_dir: Annotated[Path, typer.Argument(help="Case folder (with labels).")],
    port: Annotated[Optional[int], typer.Option(help="Port on 127.0.0.1 (default: a free one).")] = None,
    static: Annotated[Optional[Path], typer.Option(
        "--static", help="Write a self-contained site (client + data + index.html) here instead.")] = None,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a web browser.")] = False,
):
    """Show the case in 3D in Neuroglancer, served from this machine (offline)."""
    from cordmap.viewer import export_case, serve_case

    if static is not None:
        folder = export_case(case_dir, static)
        console.print(f"viewer site written to {folder}; host the folder on any web server "
                      "and open its index.html")
        return
    server = serve_case(case_dir, port)
    console.print(f"viewer at {server.url}  (Ctrl-C to stop)")
    if not no_browser:
        import webbrowser

        webbrowser.open(server.url)
    server.serve_until_interrupted()
    console.print("viewer stopped")
