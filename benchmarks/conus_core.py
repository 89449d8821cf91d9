"""Where the bundled model ends the cord on real lumbar T2 scans, against the image.

Usage: .venv/bin/python benchmarks/conus_core.py [--model FILE] [--data ../shared/data]
       [--out FILE]

No real lumbar scan here labels the cord, so the conus tip the model gives (after
`anatomy.cord_extent`, as `cordmap segment` does) is checked against the image itself by
`cord_extent.core_below_tip`: on T2 the cord is darker than the CSF around it and the conus
tapers to its tip, so the cord-like core of the canal is followed down from the tip on the
sagittal slab through it. A proxy, not a label: roots of the cauda equina as dark as the
cord right below the conus extend the core, and partial volume shortens it. Every T2
lumbar scan with a conus tip is scored, its split named. The proxy itself is checked on
phantoms (seed 0, the demo's, and the held-out 1000-1003), whose true tip is known: the
model's tip error beside the core found below it.
Writes benchmarks/results/conus_core.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cordmap.anatomy.cord_extent import core_below_tip, tidy_cord
from cordmap.anatomy.numbering import conus_tip
from cordmap.anatomy.phantom import make_phantom
from cordmap.atomic import write_text
from cordmap.learn.bundled import model_path
from cordmap.learn.infer import predict
from cordmap.learn.modelfile import load_model
from cordmap.learn.recipe import contrast, lumbar_split, read_lumbar
from cordmap.protocol.schema import CORD_CLASSES, LabelSchema

ROOT = Path(__file__).resolve().parents[1]
PHANTOMS = (0, 1000, 1001, 1002, 1003)


def segmented_tip(model, image, name):
    """The corrected segmentation of `image` and its conus tip, as `cordmap segment` makes."""
    found = model.mapping.decode(predict(model, image, name), image.affine)
    labels = tidy_cord(image, found).labels
    return labels, conus_tip(labels)


def phantom_check(model, seed: int) -> dict:
    """The proxy on a phantom: the model tip's true error (mm, + too high) beside it."""
    phantom = make_phantom(seed)
    schema = phantom.labels.schema
    cord = np.isin(np.asarray(phantom.labels.array), [x.id for x in schema.of_class(*CORD_CLASSES)])
    true_tip = float(phantom.labels.world([0, 0, int(np.nonzero(cord)[2].min())])[2])
    labels, tip = segmented_tip(model, phantom.image, f"phantom {seed}")
    row = {"seed": seed, "tip_error_mm": None if tip is None else float(tip[2] - true_tip)}
    if tip is not None:
        row["core_below_tip_mm"] = core_below_tip(phantom.image, labels, tip)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/conus_core.json")
    args = parser.parse_args()
    schema = LabelSchema.load()
    model = load_model(model_path(args.model), schema)
    folder = args.data / "lumbar-mri"
    rows = []
    for part, names in lumbar_split(folder).items():
        for name in names:
            if contrast(name) != "T2":
                continue
            image, _ = read_lumbar(folder, name, schema)
            labels, tip = segmented_tip(model, image, name)
            row = {"case": name, "split": part, "tip_s_mm": None if tip is None else float(tip[2])}
            if tip is not None:
                row["core_below_tip_mm"] = core_below_tip(image, labels, tip)
            rows.append(row)
            print(name, part, row.get("core_below_tip_mm", "no conus tip"))
    found = [r["core_below_tip_mm"] for r in rows if r.get("core_below_tip_mm") is not None]
    summary = {
        "scans": len(rows),
        "with_tip": sum(r["tip_s_mm"] is not None for r in rows),
        "core_ends_found": len(found),
        "core_below_tip_mm_median": float(np.median(found)) if found else None,
        "core_below_tip_mm_range": [min(found), max(found)] if found else None,
    }
    phantoms = [phantom_check(model, seed) for seed in PHANTOMS]
    result = {"summary": summary, "scans": rows, "phantoms": phantoms}
    write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(summary)
    for row in phantoms:
        print("phantom", row)
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
