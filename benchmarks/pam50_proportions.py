"""Realism of the phantom: its lumbosacral proportions beside the PAM50 template's.

Prints a table (PAM50, the phantom's mean anatomy, and min / median / max over seeds)
and writes it as JSON. Usage:

    .venv/bin/python benchmarks/pam50_proportions.py [--pam50 ../shared/data/pam50]
        [--seeds 100] [--out benchmarks/results/pam50_proportions.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cordmap.anatomy.phantom_geometry import PhantomGeometry, draw_parameters, mean_parameters
from cordmap.anatomy.phantom_realism import (
    TOLERANCE,
    compare,
    level_name,
    pam50_proportions,
    phantom_proportions,
)

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pam50", type=Path, default=ROOT.parent / "shared" / "data" / "pam50")
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "pam50_proportions.json"
    )
    args = parser.parse_args()

    pam50 = pam50_proportions(args.pam50)
    mean = phantom_proportions(PhantomGeometry(mean_parameters()))
    seeds = [phantom_proportions(PhantomGeometry(draw_parameters(s))) for s in range(args.seeds)]
    within = [all(ok for *_, ok in compare(p, pam50).values()) for p in seeds]
    rows = {}
    for key, value in pam50.items():
        values = [p[key] for p in seeds]
        if isinstance(value, str):
            counts = {v: values.count(v) for v in sorted(set(values))}
            rows[key] = {"pam50": value, "mean_anatomy": mean[key], "seeds": counts}
        else:
            rows[key] = {
                "pam50": value,
                "mean_anatomy": mean[key],
                "seeds": [float(np.min(values)), float(np.median(values)), float(np.max(values))],
                "tolerance": TOLERANCE.get(key),
            }
    print(f"{'measure':<26} {'PAM50':>14} {'phantom mean':>14}   seeds 0..{args.seeds - 1}")
    for key, row in rows.items():
        print(
            f"{key:<26} {_show(key, row['pam50']):>14} {_show(key, row['mean_anatomy']):>14}   "
            + (
                ", ".join(f"{k} {n}" for k, n in row["seeds"].items())
                if isinstance(row["seeds"], dict)
                else " / ".join(_show(key, v) for v in row["seeds"])
            )
        )
    print(f"seeds within every tolerance: {sum(within)} of {len(within)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"rows": rows, "seeds_within_tolerance": sum(within), "n_seeds": len(within)}, indent=1
        )
        + "\n"
    )
    print(f"written {args.out}")


def _show(key: str, value) -> str:
    if isinstance(value, str):
        return value
    return level_name(value) if key.endswith("_level") else f"{value:.2f}"


if __name__ == "__main__":
    main()
