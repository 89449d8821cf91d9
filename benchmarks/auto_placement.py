"""The automatic plan against the plan from the exact labels, on whole phantoms.

Usage: .venv/bin/python benchmarks/auto_placement.py [--model FILE] [--seeds 0 1000 ...]
       [--out FILE]

Per phantom (seed 0 is the demo's; seeds 1000 up trained and selected no model), three
plans of the same Specify 5-6-5 paddle:

- **exact**: from the phantom's labels, its cord segments labelled (the reference);
- **estimated from the exact cord**: the same labels with the segments made plain cord, so
  the enlargement is estimated from the conus tip (PAM50 distances) as on an unlabelled
  scan: what the estimate alone costs;
- **automatic**: the bundled model's segmentation, its cord's extent corrected and its
  levels numbered, as `cordmap auto` does (no labels at all).

For the last two: the distance of the best placement's rostral edge from the exact plan's
(mm, in the scanner's space; + when more caudal along the exact cord), and the volume
coverage of the labelled enlargement that placement achieves (the exact plan's curve at the
placement, against the best the labels allow). Writes benchmarks/results/auto_placement.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cordmap.anatomy.cord_extent import tidy_cord
from cordmap.anatomy.numbering import number_vertebrae
from cordmap.anatomy.phantom import make_phantom
from cordmap.api import plan
from cordmap.atomic import write_text
from cordmap.learn.bundled import model_path
from cordmap.learn.infer import predict
from cordmap.learn.modelfile import load_model
from cordmap.planning.geometry import measure_cord
from cordmap.volume import LabelVolume

ROOT = Path(__file__).resolve().parents[1]


def rostral_edge(labels: LabelVolume):
    """The best placement's rostral edge (RAS mm) and the plan."""
    made = plan(labels)
    line = measure_cord(labels).centreline
    return np.asarray(line.point(made.best.coverage.rostral)).ravel(), made


def compare(edge: np.ndarray, exact_labels: LabelVolume, exact) -> dict:
    """Where `edge` lies against the exact plan, and the labelled coverage it achieves."""
    line = measure_cord(exact_labels).centreline
    along, _ = line.project(edge[None])
    curve = exact.curve
    reference = np.asarray(line.point(exact.best.coverage.rostral)).ravel()
    return {
        "edge_distance_mm": round(float(np.linalg.norm(edge - reference)), 1),
        "along_mm": round(float(along[0]) - exact.best.coverage.rostral, 1),
        "coverage_pct": round(float(np.interp(along[0], curve.positions, curve.volume_pct)), 2),
    }


def score(model, seed: int) -> dict:
    phantom = make_phantom(seed)
    schema = phantom.labels.schema
    exact_edge, exact = rostral_edge(phantom.labels)
    plain = np.asarray(phantom.labels.array).copy()
    cord_id = schema.of_class("cord")[0].id
    plain[np.isin(plain, [label.id for label in schema.of_class("segment", "conus")])] = cord_id
    estimated_edge, _ = rostral_edge(LabelVolume(plain, phantom.labels.affine, schema=schema))
    segmented = model.mapping.decode(
        predict(model, phantom.image, f"phantom {seed}"), phantom.image.affine
    )
    automatic = number_vertebrae(tidy_cord(phantom.image, segmented).labels).labels
    automatic_edge, _ = rostral_edge(automatic)
    return {
        "seed": seed,
        "best_coverage_pct": round(exact.best.coverage.volume_pct, 2),
        "estimated_from_exact_cord": compare(estimated_edge, phantom.labels, exact),
        "automatic": compare(automatic_edge, phantom.labels, exact),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1000, 1001, 1002, 1003])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/auto_placement.json")
    args = parser.parse_args()
    model = load_model(model_path(args.model), make_phantom(0).labels.schema)
    rows = []
    for seed in args.seeds:
        rows.append(score(model, seed))
        print(json.dumps(rows[-1]), flush=True)
    summary = {
        kind: {
            "edge_distance_mm": [row[kind]["edge_distance_mm"] for row in rows],
            "mean_along_mm": round(float(np.mean([row[kind]["along_mm"] for row in rows])), 1),
            "mean_coverage_lost_pct": round(
                float(
                    np.mean([row["best_coverage_pct"] - row[kind]["coverage_pct"] for row in rows])
                ),
                2,
            ),
        }
        for kind in ("estimated_from_exact_cord", "automatic")
    }
    write_text(args.out, json.dumps({"summary": summary, "phantoms": rows}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
