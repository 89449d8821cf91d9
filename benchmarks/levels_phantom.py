"""Vertebral numbering on phantoms cropped to random fields of view (exact levels known).

Usage: .venv/bin/python benchmarks/levels_phantom.py [--phantoms 10] [--crops 6]

Each phantom (T9..S1, 3 mm axial slices) is cropped along S at random; its vertebrae and
discs lose their levels and `anatomy.numbering` numbers them again. Half the crops keep the
bottom of the phantom (the whole sacrum in view). Per crop: whether the whole sacrum is in
view, the anchor used, the uncertain flag, and how many structures are named right (those
with at least a quarter of their voxels in view: a sliver at the edge of the field of view,
its disc out of view, cannot be told apart). Writes benchmarks/results/levels_phantom.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cordmap.anatomy.numbering import number_vertebrae
from cordmap.anatomy.phantom import make_phantom
from cordmap.atomic import write_text
from cordmap.errors import CordmapError
from cordmap.volume import LabelVolume

ROOT = Path(__file__).resolve().parents[1]
SACRUM = 50


def numbered_row(row: dict, labels: LabelVolume, truth: np.ndarray, whole: np.ndarray) -> dict:
    """`row` with how `labels` were numbered and how many levelled structures of the
    cropped `truth` with at least a quarter of their `whole` voxel count in view are named
    right (most of their voxels), or why the numbering refused them."""
    try:
        numbered = number_vertebrae(labels)
    except CordmapError as exc:
        return {**row, "refused": str(exc)}
    out = np.asarray(numbered.labels.array)
    levelled = [label.id for label in labels.schema.of_class("vertebra", "disc") if label.level]
    right = total = 0
    for label_id in np.unique(truth[np.isin(truth, levelled)]):
        voxels = out[truth == label_id]
        if len(voxels) < 0.25 * whole[label_id]:
            continue
        values, counts = np.unique(voxels, return_counts=True)
        total += 1
        right += int(values[np.argmax(counts)] == label_id)
    return {
        **row,
        "anchor": numbered.anchor,
        "uncertain": numbered.uncertain,
        "right": right,
        "total": total,
    }


def crop_and_number(labels: LabelVolume, lo: int, hi: int) -> dict:
    truth = np.asarray(labels.array)[:, :, lo:hi]
    affine = labels.affine.copy()
    affine[:3, 3] += affine[:3, 2] * lo
    schema = labels.schema
    stripped = truth.copy()
    stripped[np.isin(truth, [label.id for label in schema.of_class("vertebra")])] = 3
    stripped[np.isin(truth, [label.id for label in schema.of_class("disc")])] = 4
    whole_sacrum = (truth == SACRUM).sum() == (np.asarray(labels.array) == SACRUM).sum() > 0
    row = {"slices": [lo, hi], "whole_sacrum": bool(whole_sacrum)}
    whole = np.bincount(np.asarray(labels.array).ravel())
    return numbered_row(row, LabelVolume(stripped, affine, schema=schema), truth, whole)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phantoms", type=int, default=10)
    parser.add_argument("--crops", type=int, default=6)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/levels_phantom.json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(args.phantoms):
        labels = make_phantom(seed).labels
        n = labels.shape[2]
        for crop in range(args.crops):
            lo = 0 if crop % 2 == 0 else int(rng.integers(1, n // 3))
            hi = int(rng.integers(lo + n // 3, n + 1))
            rows.append({"phantom": seed, **crop_and_number(labels, lo, hi)})
    numbered = [r for r in rows if "refused" not in r]
    groups = {
        "whole sacrum in view": [r for r in numbered if r["whole_sacrum"]],
        "no whole sacrum": [r for r in numbered if not r["whole_sacrum"]],
    }
    summary = {}
    for name, group in groups.items():
        certain = [r for r in group if not r["uncertain"]]
        summary[name] = {
            "crops": len(group),
            "certain": len(certain),
            "certain_all_right": sum(r["right"] == r["total"] for r in certain),
            "uncertain_all_right": sum(r["right"] == r["total"] for r in group if r["uncertain"]),
            "structures_right": f"{sum(r['right'] for r in group)}/{sum(r['total'] for r in group)}",
        }
    summary["refused"] = len(rows) - len(numbered)
    write_text(args.out, json.dumps({"summary": summary, "crops": rows}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
