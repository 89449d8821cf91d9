"""Commands on a case folder: import, info, series, validate, protocol, view, phantom, mesh,
demo, report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cordmap.cli.common import command, console, parse_spacing
from cordmap.cli.planning import print_best
from cordmap.errors import CordmapError


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
    from cordmap.pipeline.imports import import_case

    result = import_case(
        image,
        case_dir,
        labels_source=labels,
        subject=subject,
        series=series,
        spacing=parse_spacing(spacing),
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
    from cordmap.pipeline.view import export_case, serve_case, stale_plan_note

    if note := stale_plan_note(case_dir):
        console.print(f"note: {note}")
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

    from cordmap.mesh import mesh_label_file, parse_formats
    from cordmap.pipeline.mesh import mesh_case

    formats = parse_formats(format)
    if source.is_dir():
        if out is not None or protocol is not None:
            raise CordmapError(
                "--out and --protocol apply to a label file; a case writes "
                "CASE/mesh/ with the case's own protocol"
            )
        result = mesh_case(
            source,
            formats=formats,
            smoothing=smoothing,
            reduction=reduction,
            thin_upsample=thin_upsample,
            workers=workers,
        )
        if result.up_to_date:
            console.print(
                f"mesh stage of {source} is up to date (same labels and options)",
                highlight=False,
                soft_wrap=True,
            )
    else:
        result = mesh_label_file(
            source,
            out,
            protocol=protocol,
            formats=formats,
            smoothing=smoothing,
            reduction=reduction,
            thin_upsample=thin_upsample,
            workers=workers,
        )
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

    from cordmap.pipeline.demo import run_demo

    with console.status("starting") as status:

        def show(step: str) -> None:
            console.print(f"[dim]•[/] {step}")
            status.update(step)

        result = run_demo(out, seed=seed, on_step=show)
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
    from cordmap.pipeline.report import write_case_report

    with console.status("planning if needed, drawing the figures"):
        result = write_case_report(case_dir, out, site=site)
    if result.plan is not None:
        print_best(result.plan)
    else:
        console.print(f"[yellow]no plan:[/yellow] {result.no_plan}", soft_wrap=True)
    console.print(f"report written to {result.path}", highlight=False, soft_wrap=True)
