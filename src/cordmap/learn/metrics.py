"""Segmentation metrics on class-index arrays: confusion matrix, IoU, Dice, mIoU, pixel
accuracy and the 95th-percentile Hausdorff distance in mm.

Conventions: a class absent from both reference and prediction has no IoU / Dice (None,
left out of means); mean IoU averages the foreground classes present in either volume;
HD95 is the 95th percentile of the symmetric surface-to-surface distances (mm), None when
either volume lacks the class.
"""

from __future__ import annotations

import numpy as np

from cordmap import overlap
from cordmap.surface import hausdorff95


def confusion_matrix(reference: np.ndarray, prediction: np.ndarray, classes: int) -> np.ndarray:
    """counts[r, p]: voxels of reference class r predicted as class p."""
    return overlap.confusion_matrix(reference, prediction, np.arange(classes))[0]


def scores(confusion: np.ndarray, names: list[str]) -> dict:
    """Per-class IoU and Dice, mean IoU (foreground), mean Dice, pixel accuracy."""
    confusion = np.asarray(confusion, dtype=np.int64)
    true_pos = np.diag(confusion)
    in_reference, in_prediction = confusion.sum(axis=1), confusion.sum(axis=0)
    per_class = {}
    for index, name in enumerate(names):
        dice, iou = overlap.dice_iou(
            int(true_pos[index]), int(in_reference[index]), int(in_prediction[index])
        )
        per_class[name] = {
            "iou": iou,
            "dice": dice,
            "reference_voxels": int(in_reference[index]),
            "predicted_voxels": int(in_prediction[index]),
        }
    foreground = [per_class[n] for n in names[1:] if per_class[n]["iou"] is not None]
    return {
        "per_class": per_class,
        "mean_iou": _mean([c["iou"] for c in foreground]),
        "mean_dice": _mean([c["dice"] for c in foreground]),
        "pixel_accuracy": float(true_pos.sum() / max(1, confusion.sum())),
        "confusion": confusion.tolist(),
    }


def evaluate_arrays(
    reference: np.ndarray, prediction: np.ndarray, names: list[str], spacing
) -> dict:
    """All metrics of one volume: `scores` plus per-class HD95 (mm)."""
    result = scores(confusion_matrix(reference, prediction, len(names)), names)
    for index, name in enumerate(names[1:], start=1):
        result["per_class"][name]["hd95_mm"] = hausdorff95(
            reference == index, prediction == index, spacing
        )
    return result


def _mean(values) -> float | None:
    return float(np.mean(values)) if values else None
