"""Where the bundled model ends the cord on real lumbar T2 scans, against the image.

Usage: .venv/bin/python benchmarks/conus_core.py [--model FILE] [--data ../shared/data]
       [--out FILE]

No real lumbar scan here labels the cord, so the conus tip the model gives (after
`anatomy.cord_extent`, as `cordmap segment` does) is checked against the image itself:
on T2 the cord is darker than the CSF around it, and the conus medullaris tapers to its
tip. On the tip's sagittal slice and its two neighbours, the canal (the model's cord and
CSF, grown by a voxel) is scanned from the tip downward, 1 mm at a time, counting the
voxels darker than the midpoint between the cord's and the CSF's median intensity over
the 30 mm above the tip (the "core"). The core ends where fewer than CORE_VOXELS remain
for GAP_MM or more; its distance below the model's tip is reported (None when the core
does not end within SEARCH_MM: too little contrast to judge). A proxy, not a label:
roots of the cauda equina right below the conus can extend the core, and partial volume
shortens it. Every T2 lumbar scan with a conus tip is scored, its split named. The proxy
itself is checked on phantoms (seed 0, the demo's, and the held-out 1000-1003), whose
true tip is known: the model's tip error beside the core the proxy finds below it.
Writes benchmarks/results/conus_core.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from cordmap.anatomy.cord_extent import tidy_cord
from cordmap.anatomy.numbering import conus_tip
from cordmap.anatomy.phantom import make_phantom
from cordmap.atomic import write_text
from cordmap.learn.bundled import model_path
from cordmap.learn.infer import predict
from cordmap.learn.modelfile import load_model
from cordmap.learn.recipe import contrast, lumbar_split, read_lumbar
from cordmap.protocol.schema import CORD_CLASSES, LabelSchema

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_MM = 30
CORE_VOXELS = 2
GAP_MM = 3
SEARCH_MM = 60
PHANTOMS = (0, 1000, 1001, 1002, 1003)


def core_below_tip(image, class_map, names, tip) -> dict:
    """The cord-like core below the tip (see the module notes)."""
    array = ndimage.gaussian_filter(np.asarray(image.array, float), (0, 0.7, 0.7))
    cord, csf = class_map == names.index("cord"), class_map == names.index("csf")
    i, _, k = np.rint(image.voxel(tip)).astype(int)
    above = slice(k, k + REFERENCE_MM)
    cord_median = float(np.median(array[:, :, above][cord[:, :, above]]))
    csf_median = float(np.median(array[:, :, above][csf[:, :, above]]))
    midpoint = (cord_median + csf_median) / 2
    darker = cord_median < csf_median  # T2: the cord darker than the CSF
    canal = ndimage.binary_dilation(cord | csf)
    sagittal = slice(max(i - 1, 0), i + 2)
    areas, end, below = [], None, 0
    for depth in range(SEARCH_MM):
        if k - depth < 0:
            break
        values = array[sagittal, :, k - depth][canal[sagittal, :, k - depth]]
        area = int(np.sum(values < midpoint if darker else values > midpoint))
        areas.append(area)
        below = below + 1 if area < CORE_VOXELS else 0
        if below >= GAP_MM:
            end = depth - GAP_MM  # the last mm with core
            break
    return {
        "cord_median": cord_median,
        "csf_median": csf_median,
        "core_areas_per_mm": areas,
        "core_below_tip_mm": None if end is None else max(end, 0),
    }


def segmented_tip(model, image, name):
    """The model's class map of `image` and the conus tip of its corrected cord."""
    class_map = predict(model, image, name)
    tidy = tidy_cord(image, model.mapping.decode(class_map, image.affine)).labels
    return class_map, conus_tip(tidy)


def phantom_check(model, seed: int) -> dict:
    """The proxy on a phantom: the model tip's true error (mm, + too high) beside it."""
    phantom = make_phantom(seed)
    schema = phantom.labels.schema
    cord = np.isin(np.asarray(phantom.labels.array), [x.id for x in schema.of_class(*CORD_CLASSES)])
    true_tip = float(phantom.labels.world([0, 0, int(np.nonzero(cord)[2].min())])[2])
    class_map, tip = segmented_tip(model, phantom.image, f"phantom {seed}")
    row = {"seed": seed, "tip_error_mm": None if tip is None else tip[2] - true_tip}
    if tip is not None:
        found = core_below_tip(phantom.image, class_map, model.mapping.names, tip)
        row["core_below_tip_mm"] = found["core_below_tip_mm"]
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
            class_map, tip = segmented_tip(model, image, name)
            row = {"case": name, "split": part, "tip_s_mm": None if tip is None else tip[2]}
            if tip is not None:
                row.update(core_below_tip(image, class_map, model.mapping.names, tip))
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
