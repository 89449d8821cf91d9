"""A worked example: a synthetic study of phantom participants in two groups, end to end.

`build_demo_study(out)` makes one lumbosacral phantom per participant (cordmap.anatomy's
phantom, seed = study seed + participant number; 2 mm pixels, 3 mm slices, 48 axial
slices around the enlargement), imports it as a case folder with its exact labels,
plans it with cordmap.planning (default paddle, Specify 5-6-5), registers participant, scan,
plan and surgery in a new study database, compares the groups and writes the report.
The anatomy and the coverages are computed; the rest is SYNTHETIC, drawn with a fixed
seed from these documented distributions (not patient data):

- participants: sex F with probability 0.3; age at implant N(38, 10) years clipped to
  18-70; years since injury U(1, 15) capped at age - 16; injury level uniform over
  C5..T10; AIS grade A/B/C with probabilities 0.5/0.3/0.2; groups alternate.
- placement achieved, "3d-planned": the array's rostral end at the planner's best
  position, displaced along the cord by N(0, 2) mm (surgical error).
- placement achieved, "conventional" (no 3D model): the rostral end aimed at the middle of
  the T11 body, the usual fluoroscopic target, displaced by N(0, 6) mm.
- coverage: the share of the enlargement's volume (L1..S2) under the array at that
  position, as cordmap.planning computes it; planned coverage (3d-planned only): the best.
- surgery time: N(180, 30) min (3d-planned) or N(215, 40) min (conventional), at least 60.
"""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cordmap.atomic import write_text
from cordmap.errors import CordmapError
from cordmap.protocol.levels import SEGMENTS
from cordmap.study.csvimport import COLUMNS, import_participants_csv
from cordmap.study.registry import Registry, init_registry
from cordmap.study.report import study_report
from cordmap.study.stats import Comparison

GROUPS = ("3d-planned", "conventional")
PLACEMENT_SD_MM = {"3d-planned": 2.0, "conventional": 6.0}
CONVENTIONAL_TARGET = "T11 middle"
SURGERY_MIN = {"3d-planned": (180.0, 30.0), "conventional": (215.0, 40.0)}
INJURY_LEVELS = SEGMENTS[SEGMENTS.index("C5") : SEGMENTS.index("T10") + 1]
PHANTOM_GRID: dict[str, Any] = {
    "pixel_mm": 2.0,
    "fov_mm": (80.0, 80.0),
    "slice_thickness": 3.0,
    "n_slices": 48,
}


@dataclass(frozen=True)
class DemoStudy:
    database: Path
    csv: Path
    report: Path
    cases: Path
    comparisons: list[Comparison]


def build_demo_study(
    out: str | Path,
    *,
    participants: int = 50,
    seed: int = 0,
    on_participant: Callable[[str], None] | None = None,
) -> DemoStudy:
    """Write the synthetic study into the new folder `out` (see module docstring).

    On failure everything written is removed again.
    """
    out = Path(out)
    existed = out.exists()
    if existed and (not out.is_dir() or any(out.iterdir())):
        raise CordmapError(f"{out} is not an empty folder; pass a new folder for the demo study")
    if participants < 4:
        raise CordmapError("the demo needs at least 4 participants (2 per group)")
    try:
        comparisons = _build(out, participants, seed, on_participant or (lambda _: None))
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        if existed:
            out.mkdir()
        raise
    return DemoStudy(
        out / "study.db", out / "participants.csv", out / "report.html", out / "cases", comparisons
    )


def _build(
    out: Path, participants: int, seed: int, progress: Callable[[str], None]
) -> list[Comparison]:
    rng = np.random.default_rng(seed)
    rows = _participants(rng, participants)
    csv_path = write_text(out / "participants.csv", _csv(rows))
    database = out / "study.db"
    init_registry(database)
    with Registry.open(database) as registry:
        import_participants_csv(registry, csv_path)
        for number, row in enumerate(rows):
            progress(row["id"])
            _operate(registry, row, out, seed + number, rng)
        return study_report(
            registry,
            out / "report.html",
            by="group",
            metrics=("coverage", "surgery_time"),
            seed=seed,
            title="Synthetic study: 3D-planned vs conventional paddle placement",
            note="Phantom anatomy planned with cordmap.planning; participants, placement errors "
            "and surgery times are SYNTHETIC, drawn from the documented distributions of "
            "cordmap.study.demo - not patient data.",
        )


def _operate(
    registry: Registry, row: dict, out: Path, phantom_seed: int, rng: np.random.Generator
) -> None:
    """Phantom -> case folder -> plan -> the surgery as achieved, all registered."""
    from cordmap.anatomy.phantom import make_phantom, write_phantom
    from cordmap.pipeline.imports import import_case
    from cordmap.planning.planner import Planner

    subject = f"sub-{row['id']}"
    phantom = make_phantom(phantom_seed, **PHANTOM_GRID)
    image, labels = write_phantom(phantom, out / "phantoms" / subject, dicom=False)[:2]
    case_dir = out / "cases" / subject
    import_case(image, case_dir, labels_source=labels, subject=subject)
    scan_id = registry.add_scan(row["id"], case_dir, made_by={"manual": f"phantom-{phantom_seed}"})

    planner = Planner.prepare(phantom.labels, source=str(labels))
    best = planner.plan(top=1).best
    group = row["group"]
    if group == GROUPS[0]:
        registry.add_plan(
            row["id"],
            scan_id=scan_id,
            paddle=planner.paddle.name,
            rostral_edge=best.rostral_edge,
            coverage_pct=best.coverage.volume_pct,
        )
        aim = best.coverage.rostral
    else:
        aim = planner.position_of(rostral=CONVENTIONAL_TARGET)
    achieved = planner.placement(aim + rng.normal(0.0, PLACEMENT_SD_MM[group]))
    registry.record_surgery(
        row["id"],
        placement=f"rostral edge: {achieved.rostral_edge}",
        coverage_pct=achieved.coverage.volume_pct,
        duration_min=round(max(60.0, rng.normal(*SURGERY_MIN[group])), 1),
    )


def _participants(rng: np.random.Generator, count: int) -> list[dict]:
    rows = []
    for n in range(count):
        age = float(np.clip(rng.normal(38, 10), 18, 70))
        rows.append(
            {
                "id": f"P{n + 1:03d}",
                "sex": "F" if rng.random() < 0.3 else "M",
                "age_at_implant": round(age, 1),
                "years_since_injury": round(min(rng.uniform(1, 15), age - 16), 1),
                "injury_level": str(rng.choice(INJURY_LEVELS)),
                "ais_grade": str(rng.choice(["A", "B", "C"], p=[0.5, 0.3, 0.2])),
                "stimulator": "Specify 5-6-5",
                "group": GROUPS[n % 2],
            }
        )
    return rows


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
