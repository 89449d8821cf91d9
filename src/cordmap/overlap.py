"""Overlap of two label arrays on one grid: the confusion matrix and Dice / IoU from it.

One definition serves segmentation evaluation (`learn.metrics`, class indices) and rater
agreement (`study.agreement`, label ids), as `surface` does for their boundary distances.
"""

from __future__ import annotations

import numpy as np

from cordmap.errors import CordmapError


def confusion_matrix(
    a: np.ndarray, b: np.ndarray, ids: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """counts[i, j]: voxels of ids[i] in `a` and ids[j] in `b`, and the ids: those given
    (every value of both arrays must be one of them) or else those present in either."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise CordmapError(
            f"label arrays of shapes {a.shape} and {b.shape} cannot be compared; "
            "compare volumes on the same grid"
        )
    ids = np.union1d(np.unique(a), np.unique(b)) if ids is None else np.asarray(ids)
    n = len(ids)
    index_a, index_b = np.searchsorted(ids, a.ravel()), np.searchsorted(ids, b.ravel())
    counts = np.bincount(index_a.astype(np.int64) * n + index_b, minlength=n * n)
    return counts.reshape(n, n), ids


def dice_iou(both: int, in_a: int, in_b: int) -> tuple[float | None, float | None]:
    """Dice and IoU of two masks from their voxel counts (None, None when both are empty)."""
    if in_a + in_b == 0:
        return None, None
    return 2 * both / (in_a + in_b), both / (in_a + in_b - both)
