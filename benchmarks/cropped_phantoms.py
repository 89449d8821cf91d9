"""The bundled model on held-out phantoms cut short above the conus, as lumbar scans are.

Usage: .venv/bin/python benchmarks/cropped_phantoms.py [--model FILE] [--seeds 1000 1001 ...]
       [--above 20 35 50 80] [--out FILE]

A lumbar MRI often starts a few centimetres above the conus, so the cord in view is short
and the cauda equina below it, which a network may take for cord, can outweigh it. Each
held-out phantom (seeds 1000 up: no phantom of these seeds trained or selected the model)
keeps its bottom (the sacrum in view) and is cut `--above` mm above its true conus tip;
the model segments it, `anatomy.cord_extent` corrects the cord's extent and
`anatomy.numbering` numbers the levels, as `cordmap segment` does. Per crop: the conus
tip's error (mm, + is too high), the anchor, the uncertain flag and how many vertebrae and
discs are named right (those with a quarter of their voxels in view or more). Writes
benchmarks/results/cropped_phantoms.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from levels_phantom import numbered_row

from cordmap.anatomy.cord_extent import tidy_cord
from cordmap.anatomy.phantom import make_phantom
from cordmap.atomic import write_text
from cordmap.learn.bundled import model_path
from cordmap.learn.infer import predict
from cordmap.learn.modelfile import load_model
from cordmap.protocol.schema import CORD_CLASSES, LabelSchema
from cordmap.volume import Volume

ROOT = Path(__file__).resolve().parents[1]


def score(model, seed: int, above_mm: float) -> dict:
    phantom = make_phantom(seed)
    schema = phantom.labels.schema
    truth = np.asarray(phantom.labels.array)
    cord = np.isin(truth, [label.id for label in schema.of_class(*CORD_CLASSES)])
    tip_k = int(np.nonzero(cord)[2].min())
    true_tip = float(phantom.labels.world([0, 0, tip_k])[2])
    top = tip_k + int(round(above_mm / phantom.labels.spacing[2])) + 1
    image = Volume(np.asarray(phantom.image.array)[:, :, :top], phantom.image.affine)
    truth = truth[:, :, :top]
    labels = model.mapping.decode(predict(model, image, f"phantom {seed}"), image.affine)
    extent = tidy_cord(image, labels)
    row = {
        "seed": seed,
        "above_mm": above_mm,
        "tip_error_mm": None if extent.tip_s is None else round(extent.tip_s - true_tip, 1),
    }
    whole = np.bincount(np.asarray(phantom.labels.array).ravel())
    return numbered_row(row, extent.labels, truth, whole)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001, 1002, 1003, 1004])
    parser.add_argument("--above", type=float, nargs="+", default=[20.0, 35.0, 50.0, 80.0])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/cropped_phantoms.json"
    )
    args = parser.parse_args()
    model = load_model(model_path(args.model), LabelSchema.load())
    rows = []
    for seed in args.seeds:
        for above in args.above:
            rows.append(score(model, seed, above))
            print(json.dumps(rows[-1]), flush=True)
    errors = [abs(r["tip_error_mm"]) for r in rows if r["tip_error_mm"] is not None]
    numbered = [r for r in rows if "refused" not in r]
    summary = {
        "crops": len(rows),
        "tip_within_5_mm": f"{sum(e <= 5 for e in errors)}/{len(rows)}",
        "tip_error_median_mm": float(np.median(errors)) if errors else None,
        "all_levels_right": f"{sum(r['right'] == r['total'] for r in numbered)}/{len(rows)}",
        "structures_right": f"{sum(r['right'] for r in numbered)}/"
        f"{sum(r['total'] for r in numbered)}",
        "wrong_and_certain": sum(r["right"] < r["total"] and not r["uncertain"] for r in numbered),
    }
    write_text(args.out, json.dumps({"summary": summary, "crops": rows}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
