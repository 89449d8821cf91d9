import numpy as np
import pytest

from cordmap.learn.metrics import evaluate_arrays
from cordmap.protocol.schema import LabelSchema
from cordmap.study.agreement import compare_labels
from cordmap.surface import hausdorff95
from cordmap.volume import LabelVolume


def _brute_hd95(a, b, spacing):
    def surface(m):
        pts = []
        for i, j, k in np.argwhere(m):
            neighbours = [
                (i + 1, j, k),
                (i - 1, j, k),
                (i, j + 1, k),
                (i, j - 1, k),
                (i, j, k + 1),
                (i, j, k - 1),
            ]
            if any(
                not (0 <= x < m.shape[0] and 0 <= y < m.shape[1] and 0 <= z < m.shape[2])
                or not m[x, y, z]
                for x, y, z in neighbours
            ):
                pts.append((i, j, k))
        return np.array(pts) * np.array(spacing)

    sa, sb = surface(a), surface(b)
    d = np.linalg.norm(sa[:, None] - sb[None], axis=2)
    return max(np.percentile(d.min(axis=1), 95), np.percentile(d.min(axis=0), 95))


def test_one_hd95_for_evaluation_and_agreement():
    """`cordmap evaluate` and `cordmap agree` report the same HD95 for the same masks."""
    spacing = (0.8, 0.8, 3.0)
    a = np.zeros((14, 14, 8), bool)
    b = np.zeros_like(a)
    a[3:9, 3:9, 2:6] = True
    b[4:12, 3:9, 1:6] = True  # larger on one side: the two directed distances differ
    expected = _brute_hd95(a, b, spacing)
    assert hausdorff95(a, b, spacing) == pytest.approx(expected)
    evaluated = evaluate_arrays(a.astype(int), b.astype(int), ["bg", "x"], spacing)
    assert evaluated["per_class"]["x"]["hd95_mm"] == pytest.approx(expected)
    schema = LabelSchema.load()
    affine = np.diag([*spacing, 1.0])
    agreement = compare_labels(
        LabelVolume(a.astype(np.uint16) * 2, affine, schema=schema),
        LabelVolume(b.astype(np.uint16) * 2, affine, schema=schema),
    )
    assert next(r for r in agreement.labels if r.id == 2).hd95_mm == pytest.approx(expected)
