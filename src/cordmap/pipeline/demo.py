"""The built-in example: the whole pipeline on the lumbosacral phantom, end to end.

phantom (NIfTI + DICOM axial and sagittal series) -> import the axial DICOM series with the
phantom's exact labels into a case -> validate the labels against the protocol -> meshes
(GLB for Blender, STL) -> paddle placement plan -> Neuroglancer viewer with the candidate
paddles, as a static site -> the case report (one HTML page).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cordmap.errors import CordmapError


@dataclass
class DemoResult:
    out: Path
    made: list[tuple[str, Path]] = field(default_factory=list)  # (what, where)
    notes: list[str] = field(default_factory=list)  # one line per step: what it found


def run_demo(
    out: str | Path, *, seed: int = 0, on_step: Callable[[str], object] = lambda step: None
) -> DemoResult:
    """Run every stage on phantom `seed` inside `out` (re-runnable: earlier demo output is
    replaced, anything else in `out` is refused)."""
    from cordmap.anatomy.phantom import make_phantom, write_phantom
    from cordmap.anatomy.validate import validate
    from cordmap.pipeline.imports import import_case
    from cordmap.pipeline.mesh import mesh_case
    from cordmap.pipeline.plan import run_plan
    from cordmap.pipeline.report import write_case_report
    from cordmap.pipeline.view import export_case

    out = Path(out)
    _require_demo_folder(out)
    result = DemoResult(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by `cordmap demo`; safe to delete\n", encoding="utf-8")

    on_step(f"generating phantom {seed} (T9..S1, 3 mm axial slices)")
    phantom = make_phantom(seed)
    files = write_phantom(phantom, out / "phantom")
    truth_labels = next(p for p in files if p.name.endswith("_desc-truth_dseg.nii.gz"))
    result.made.append(
        ("phantom: T2 image, exact labels, truth.json, DICOM axial + sagittal", out / "phantom")
    )
    truth = phantom.truth
    result.notes.append(
        f"phantom {seed}: {phantom.image.shape[2]} axial slices of "
        f"{phantom.image.spacing[2]:g} mm, conus tip at the "
        f"{truth.conus['tip_level']} vertebra"
    )

    on_step("importing the axial DICOM series and the labels into a case folder")
    case = import_case(
        out / "phantom" / "dicom",
        out / "case",
        labels_source=truth_labels,
        subject=phantom.subject,
        series="axial",
    ).case
    result.made.append(("case folder (BIDS names, case.json manifest)", case.root))

    on_step("validating the labels against the annotation protocol")
    validation = validate(case.labels())
    if not validation.ok:
        raise CordmapError("the phantom's labels fail validation:\n" + validation.as_text())
    result.notes.append(
        f"labels valid: {len(case.labels().ids())} structures, {len(validation.warnings)} warnings"
    )

    on_step("meshing every structure (marching cubes, smoothing, simplification)")
    meshes = mesh_case(case.root, formats=("glb", "stl"))
    result.made += [(f"meshes ({path.suffix[1:].upper()})", path) for path in meshes.files]
    result.notes.append(
        f"{len(meshes.structures)} structures meshed, "
        f"{sum(s.stats.triangles for s in meshes.structures):,} triangles"
    )

    on_step("planning the paddle placement")
    planned = run_plan(case.root)
    plan = planned.result
    result.made.append(("placement plan (JSON)", planned.path))
    best = plan.best
    result.notes.append(
        f"best placement covers {best.coverage.volume_pct:.1f} % of the enlargement "
        f"({plan.enlargement.span}): "
        f"rostral edge {best.rostral_edge}, caudal edge {best.caudal_edge}"
    )

    on_step("writing the Neuroglancer viewer (with the candidate paddles) as a static site")
    site = export_case(case.root, out / "viewer-site")
    result.made.append(
        (f"3D viewer: open index.html from any web server, or `cordmap view {case.root}`", site)
    )

    on_step("writing the case report")
    report = write_case_report(case.root, site=site)
    result.made.append(("case report (one self-contained HTML page)", report.path))
    return result


MARKER = ".cordmap-demo"


def _require_demo_folder(out: Path) -> None:
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise CordmapError(
            f"{out} already holds other files; pass a new or empty folder for the demo (`out`)"
        )
