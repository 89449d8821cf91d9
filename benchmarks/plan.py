"""Speed of planning a 48 x 512 x 512 case (target: under 2 s on the project machine).

The case is the lumbosacral phantom acquired as 48 axial 3 mm slices of 512 x 512 pixels
(the published network input), or, with --synthetic, a straight synthetic cord on the same
grid. Times (best of --repeat runs) each step of `Planner.prepare` + `Planner.plan`, and a
baseline in the same run: the naive search that, for every position, rescans the whole
label volume for the enlargement's voxels and sums those whose arc length falls under the
array (timed on --baseline-positions positions, extrapolated to the full search).
Prints a table and writes JSON. Usage:

    .venv/bin/python benchmarks/plan.py [--synthetic] [--repeat 3] [--out benchmarks/results/plan.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from cordmap.atomic import write_text
from cordmap.planning.enlargement import find_enlargement
from cordmap.planning.geometry import measure_cord
from cordmap.planning.paddles import get_paddle
from cordmap.planning.planner import Planner
from cordmap.planning.search import best_positions, search_positions
from cordmap.planning.vertebral import VertebralMap

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (512, 512, 48)


def make_case(synthetic: bool):
    if synthetic:
        from cordmap.planning.synthetic import synthetic_cord

        segments = [
            ("T12", 20.0),
            ("L1", 15.0),
            ("L2", 12.0),
            ("L3", 11.0),
            ("L4", 10.0),
            ("L5", 8.0),
            ("S1", 7.0),
            ("S2", 7.0),
            ("S3", 6.0),
            ("S4", 5.0),
            ("S5", 4.0),
        ]
        return "synthetic straight cord", synthetic_cord(
            SHAPE,
            (0.3125, 0.3125, 3.0),
            segments,
            radius=4.0,
            top_mm=140.0,
            vertebrae=[("T11", 0.0, 25.0), ("T12", 30.0, 55.0), ("L1", 60.0, 85.0)],
        )
    from cordmap.anatomy.phantom import make_phantom

    phantom = make_phantom(0, pixel_mm=160.0 / SHAPE[0], n_slices=SHAPE[2])
    return "phantom seed 0", phantom.labels


def timed(function, repeat):
    best, result = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def naive_curve(labels, geometry, enlargement, paddle, positions):
    """Per position: find the enlargement's voxels in the whole volume again, project them
    onto the centreline, and add up the volume of those under the array."""
    ids = [labels.schema.find("segment", name).id for name in enlargement.segments]
    out = []
    for rostral in positions:
        ijk = np.argwhere(np.isin(labels.array, ids))
        s, _ = geometry.centreline.project(labels.world(ijk))
        covered = (s >= rostral) & (s < rostral + paddle.array_length_mm)
        out.append(100 * covered.sum() / len(s))
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", action="store_true", help="use a synthetic cord")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline-positions", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "plan.json")
    args = parser.parse_args()

    what, labels = make_case(args.synthetic)
    paddle = get_paddle()
    steps = {}
    steps["geometry"], geometry = timed(lambda: measure_cord(labels), args.repeat)
    steps["enlargement"], enlargement = timed(
        lambda: find_enlargement(geometry, labels.schema), args.repeat
    )
    steps["vertebrae"], _ = timed(
        lambda: VertebralMap.from_geometry(geometry, labels.schema), args.repeat
    )
    steps["search"], curve = timed(
        lambda: search_positions(geometry, paddle, enlargement), args.repeat
    )
    steps["candidates"], _ = timed(lambda: best_positions(curve, 3), args.repeat)
    total, plan = timed(lambda: Planner.prepare(labels).plan(top=3), args.repeat)

    sample = curve.positions[:: max(len(curve.positions) // args.baseline_positions, 1)]
    sample = sample[: args.baseline_positions]
    baseline, naive = timed(lambda: naive_curve(labels, geometry, enlargement, paddle, sample), 1)
    per_position = baseline / len(sample)
    fast = np.interp(sample, curve.positions, curve.volume_pct)
    best = plan.best

    print(
        f"planning {what}: {labels.shape[0]} x {labels.shape[1]} x {labels.shape[2]} voxels, "
        f"spacing {' x '.join(f'{s:g}' for s in labels.spacing)} mm, "
        f"{len(curve.positions)} positions searched"
    )
    print(f"{'step':<34}{'seconds':>10}")
    for name, seconds in steps.items():
        print(f"{name:<34}{seconds:>10.3f}")
    print(f"{'total: prepare + plan (top 3)':<34}{total:>10.3f}   target < 2 s")
    print(f"{'naive baseline, per position':<34}{per_position:>10.3f}")
    print(
        f"{'naive baseline, whole search':<34}{per_position * len(curve.positions):>10.1f}"
        f"   (extrapolated from {len(sample)} positions)"
    )
    print(
        f"largest difference fast vs naive: {np.abs(fast - naive).max():.2f} percentage points "
        "(sub-voxel spreading vs voxel centres)"
    )
    print(
        f"best: rostral edge {best.rostral_edge}, caudal edge {best.caudal_edge}, "
        f"{best.coverage.volume_pct:.1f} % of the enlargement"
    )

    result = {
        "case": what,
        "shape": list(labels.shape),
        "spacing_mm": list(labels.spacing),
        "positions": len(curve.positions),
        "repeat": args.repeat,
        "seconds": {**{k: round(v, 4) for k, v in steps.items()}, "total": round(total, 4)},
        "target_seconds": 2.0,
        "within_target": bool(total < 2.0),
        "baseline": {
            "method": "per position, rescan the full volume and project the voxels",
            "seconds_per_position": round(per_position, 4),
            "seconds_whole_search_extrapolated": round(per_position * len(curve.positions), 2),
            "positions_timed": len(sample),
            "max_difference_pct_points": round(float(np.abs(fast - naive).max()), 3),
        },
        "best": {
            k: best.to_json()[k]
            for k in ("rostral_edge", "caudal_edge", "rostral_mm", "volume_pct")
        },
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
