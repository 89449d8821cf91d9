"""Time the contact map and the target ranking add to `cordmap plan` (512 x 512 x 48).

The case is the lumbosacral phantom acquired as 48 axial 3 mm slices of 512 x 512 pixels
(as benchmarks/plan.py). Timed, best of --repeat, in one run:

- baseline: `Planner.prepare` + `plan(top=3)` of the code before the contact map (the
  commit --baseline-ref, exported with `git archive` and run in a subprocess); both sides
  read the same labels from one temporary NIfTI;
- now: the same calls with the contact map of every candidate, and with
  `targets="L2,L3,L4,S1"` (the second ranking too);
- the contact map's own steps: the cord's half-axes are part of the geometry; building
  the `ContactMapper` and mapping the 16 contacts of one placement.

Prints a table and writes JSON. Usage:

    .venv/bin/python benchmarks/contacts.py [--repeat 5] [--baseline-ref 27f57e4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cordmap.atomic import write_text
from cordmap.io.nifti import write_nifti
from cordmap.planning.contacts import ContactMapper
from cordmap.planning.planner import Planner

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (512, 512, 48)
TARGETS = "L2,L3,L4,S1"
#: The last commit before the contact map (branch issue14 starts from it).
BASELINE_REF = "27f57e4"
TIMER = """
import sys, time
from cordmap.io.nifti import read_labels
from cordmap.protocol.schema import LabelSchema
from cordmap.planning.planner import Planner
labels = read_labels(sys.argv[1], LabelSchema.load())
best = float("inf")
for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    Planner.prepare(labels).plan(top=3)
    best = min(best, time.perf_counter() - start)
print(best)
"""


def timed(function, repeat):
    best, result = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def baseline_seconds(path: Path, ref: str, repeat: int) -> float:
    """Best time of prepare + plan(top=3) by the code of commit `ref`, on the labels `path`."""
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", ref, "src"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
        out = subprocess.run(
            [sys.executable, "-c", TIMER, str(path), str(repeat)],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(folder / "src")},
        )
        return float(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline-ref", default=BASELINE_REF)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "contacts.json"
    )
    args = parser.parse_args()

    from cordmap.anatomy.phantom import make_phantom
    from cordmap.io.nifti import read_labels
    from cordmap.protocol.schema import LabelSchema

    folder = tempfile.TemporaryDirectory()
    path = write_nifti(
        make_phantom(0, pixel_mm=160.0 / SHAPE[0], n_slices=SHAPE[2]).labels,
        Path(folder.name) / "labels.nii.gz",
    )
    labels = read_labels(path, LabelSchema.load())
    planner = Planner.prepare(labels)
    segments = planner.contact_map.segments
    steps = {}
    steps["contact mapper (build)"], mapper = timed(
        lambda: ContactMapper(labels, planner.geometry, segments), args.repeat
    )
    rostral = planner.plan(top=1).best.coverage.rostral
    steps["contact map of one placement"], contacts = timed(
        lambda: mapper.contacts(planner.paddle, rostral), args.repeat
    )
    steps["now: prepare + plan (top 3)"], _ = timed(
        lambda: Planner.prepare(labels).plan(top=3), args.repeat
    )
    steps["now: prepare + plan, --targets"], plan = timed(
        lambda: Planner.prepare(labels).plan(top=3, targets=TARGETS), args.repeat
    )
    baseline = baseline_seconds(path, args.baseline_ref, args.repeat)
    folder.cleanup()

    print(
        f"phantom seed 0: {' x '.join(map(str, labels.shape))} voxels, "
        f"spacing {' x '.join(f'{s:g}' for s in labels.spacing)} mm; best of {args.repeat}"
    )
    print(f"{'step':<44}{'seconds':>9}")
    print(f"{'baseline: prepare + plan (' + args.baseline_ref + ')':<44}{baseline:>9.3f}")
    for name, seconds in steps.items():
        print(f"{name:<44}{seconds:>9.3f}")
    added = steps["now: prepare + plan, --targets"] - baseline
    print(
        f"added by the contact map and --targets: {added:+.3f} s; "
        f"total {steps['now: prepare + plan, --targets']:.3f} s (target < 2 s)"
    )
    result = {
        "case": "phantom seed 0",
        "shape": list(labels.shape),
        "spacing_mm": list(labels.spacing),
        "repeat": args.repeat,
        "targets": TARGETS,
        "seconds": {
            "baseline_prepare_plan": round(baseline, 4),
            **{k: round(v, 4) for k, v in steps.items()},
        },
        "baseline": {
            "what": "Planner.prepare + plan(top=3) of the code before the contact map",
            "ref": args.baseline_ref,
        },
        "added_seconds": round(added, 4),
        "target_seconds": 2.0,
        "within_target": bool(steps["now: prepare + plan, --targets"] < 2.0),
        "contacts_mapped": len(contacts),
        "best_by_volume_mm": round(plan.best.coverage.rostral, 2),
        "best_by_targets_mm": round(plan.targets.best.coverage.rostral, 2),
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
        },
    }
    write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
