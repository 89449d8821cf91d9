"""How fast the phantom is made: the default acquisition, the published network input
(48 axial slices of 512 x 512) and a sagittal series. Prints a table and writes JSON.

    .venv/bin/python benchmarks/phantom_speed.py [--repeats 3]
        [--out benchmarks/results/phantom_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from cordmap.anatomy.phantom import make_phantom, sagittal_series

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "default (3 mm axial, 0.8 mm, T9-sacrum)": dict(),
    "network input 48 x 512 x 512": dict(pixel_mm=160.0 / 512, n_slices=48),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "phantom_speed.json"
    )
    args = parser.parse_args()
    rows = []
    for name, options in CASES.items():
        timings = [_timed(make_phantom, seed, **options) for seed in range(args.repeats)]
        phantom = timings[-1][2]
        rows.append(
            {
                "case": name,
                "shape": list(phantom.image.shape),
                "seconds": [t[0] for t in timings],
                "cpu_seconds": [t[1] for t in timings],
            }
        )
    timings = [_timed(sagittal_series, phantom) for _ in range(args.repeats)]
    rows.append(
        {
            "case": "sagittal series (15 x 3 mm, 0.8 mm)",
            "shape": list(timings[-1][2][0].shape),
            "seconds": [t[0] for t in timings],
            "cpu_seconds": [t[1] for t in timings],
        }
    )
    load = os.getloadavg()[0]
    print(
        f"{'case':<42} {'shape':>16} {'best s':>7} {'median s':>9} {'best CPU s':>11}"
        f"   (load {load:.1f}, {os.cpu_count()} cores)"
    )
    for row in rows:
        seconds = sorted(row["seconds"])
        print(
            f"{row['case']:<42} {' x '.join(map(str, row['shape'])):>16} "
            f"{seconds[0]:>7.2f} {seconds[len(seconds) // 2]:>9.2f} "
            f"{min(row['cpu_seconds']):>11.2f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"rows": rows, "load_average": load, "cpu_count": os.cpu_count()}, indent=1)
        + "\n"
    )
    print(f"written {args.out}")


def _timed(function, *args, **options):
    """(wall seconds, CPU seconds of this process, result) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **options)
    return time.perf_counter() - wall, time.process_time() - cpu, result


if __name__ == "__main__":
    main()
