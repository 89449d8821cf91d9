"""A worked example: a synthetic study of 50 participants in two groups, end to end.

`build_demo_study(out)` writes a participants CSV, imports it into a new registry,
records a plan (3D-planned group only), the surgery and its coverage for everyone, then
compares the groups and writes the HTML report with box plots. All numbers are SYNTHETIC,
drawn with a fixed seed from these documented distributions (not patient data):

- participants: sex F with probability 0.3; age at implant N(38, 10) years clipped to
  18-70; years since injury U(1, 15) capped at age - 16; injury level uniform over
  C5..T10; AIS grade A/B/C with probabilities 0.5/0.3/0.2.
- anatomy ("phantom-like", straight cord): enlargement (L1..S2) length N(50, 6) mm,
  clipped to 35-70 mm.
- paddle: the array length of cordmap.plan's default paddle (Specify 5-6-5, 46.5 mm).
- planned coverage (group "3d-planned"): the best length coverage, the array centred on
  the enlargement: min(1, array / enlargement) x 100 %.
- achieved coverage: length coverage with the array's centre displaced from the
  enlargement's centre by N(0, 3) mm (3d-planned) or N(0, 12) mm (conventional).
- surgery time: N(180, 30) min (3d-planned) or N(215, 40) min (conventional), at least 60.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cordmap.anatomy.levels import SEGMENTS
from cordmap.atomic import atomic_dir, write_text
from cordmap.errors import CordmapError
from cordmap.study.csvimport import COLUMNS, import_participants_csv
from cordmap.study.registry import Registry, init_registry
from cordmap.study.report import study_report
from cordmap.study.stats import Comparison

GROUPS = ("3d-planned", "conventional")
PLACEMENT_SD_MM = {"3d-planned": 3.0, "conventional": 12.0}
SURGERY_MIN = {"3d-planned": (180.0, 30.0), "conventional": (215.0, 40.0)}
ENLARGEMENT_MM = (50.0, 6.0)
INJURY_LEVELS = SEGMENTS[SEGMENTS.index("C5"):SEGMENTS.index("T10") + 1]


@dataclass(frozen=True)
class DemoStudy:
    database: Path
    csv: Path
    report: Path
    comparisons: list[Comparison]


def length_coverage(array_mm: float, enlargement_mm: float, offset_mm: float) -> float:
    """% of a straight enlargement covered by an array whose centre is `offset_mm` off its centre."""
    low = max(-enlargement_mm / 2, offset_mm - array_mm / 2)
    high = min(enlargement_mm / 2, offset_mm + array_mm / 2)
    return min(100.0, 100.0 * max(0.0, high - low) / enlargement_mm)


def build_demo_study(out: str | Path, *, participants: int = 50, seed: int = 0) -> DemoStudy:
    """Write the synthetic study into the new folder `out` (see module docstring)."""
    from cordmap.plan.paddles import get_paddle

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise CordmapError(f"{out} is not empty; pass a new folder for the demo study")
    if participants < 4:
        raise CordmapError("the demo needs at least 4 participants (2 per group)")
    with atomic_dir(out) as tmp:
        comparisons = _build(tmp, participants, seed, get_paddle())
    return DemoStudy(out / "study.db", out / "participants.csv", out / "report.html", comparisons)


def _build(folder: Path, participants: int, seed: int, paddle) -> list[Comparison]:
    rng = np.random.default_rng(seed)
    rows = _participants(rng, participants)
    csv_path = write_text(folder / "participants.csv", _csv(rows))
    database = folder / "study.db"
    init_registry(database)
    array_mm = paddle.array_length_mm
    with Registry.open(database) as registry:
        import_participants_csv(registry, csv_path)
        for row in rows:
            group = row["group"]
            enlargement = float(np.clip(rng.normal(*ENLARGEMENT_MM), 35, 70))
            if group == GROUPS[0]:
                registry.add_plan(row["id"], paddle=paddle.name,
                                  coverage_pct=length_coverage(array_mm, enlargement, 0.0))
            offset = rng.normal(0.0, PLACEMENT_SD_MM[group])
            registry.record_surgery(
                row["id"], placement=f"centre {offset:+.1f} mm from the enlargement's centre",
                coverage_pct=round(length_coverage(array_mm, enlargement, offset), 2),
                duration_min=round(max(60.0, rng.normal(*SURGERY_MIN[group])), 1))
        return study_report(
            registry, folder / "report.html", by="group", metrics=("coverage", "surgery_time"), seed=seed,
            title="Synthetic study: 3D-planned vs conventional paddle placement",
            note="SYNTHETIC DATA drawn from the documented distributions of cordmap.study.demo; "
                 "not patient data.")


def _participants(rng: np.random.Generator, count: int) -> list[dict]:
    rows = []
    for n in range(count):
        age = float(np.clip(rng.normal(38, 10), 18, 70))
        rows.append({
            "id": f"P{n + 1:03d}",
            "sex": "F" if rng.random() < 0.3 else "M",
            "age_at_implant": round(age, 1),
            "years_since_injury": round(min(rng.uniform(1, 15), age - 16), 1),
            "injury_level": str(rng.choice(INJURY_LEVELS)),
            "ais_grade": str(rng.choice(["A", "B", "C"], p=[0.5, 0.3, 0.2])),
            "stimulator": "Specify 5-6-5",
            "group": GROUPS[n % 2],
        })
    return rows


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
