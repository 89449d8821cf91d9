"""Surface distances between two binary masks in millimetres: the field's boundary metrics.

One definition serves segmentation evaluation (`cordmap evaluate`) and rater agreement
(`cordmap agree`): the surface of a mask is its voxels with a face neighbour outside it;
HD95 is the larger of the two directed 95th percentiles (as MONAI and medpy compute it).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cordmap.errors import CordmapError

_FACE_NEIGHBOURS = ndimage.generate_binary_structure(3, 1)


def surface_distances(
    mask_a: np.ndarray, mask_b: np.ndarray, spacing
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of A to B's surface, and from B's to A's."""
    mask_a, mask_b = np.asarray(mask_a, bool), np.asarray(mask_b, bool)
    if not mask_a.any() or not mask_b.any():
        raise CordmapError("surface distances need both masks to be non-empty")
    box = _bounding_box(mask_a | mask_b)
    surface_a = _surface(mask_a[box])
    surface_b = _surface(mask_b[box])
    to_b = ndimage.distance_transform_edt(~surface_b, sampling=spacing)
    to_a = ndimage.distance_transform_edt(~surface_a, sampling=spacing)
    return to_b[surface_a], to_a[surface_b]


def hausdorff95(mask_a: np.ndarray, mask_b: np.ndarray, spacing) -> float | None:
    """95th-percentile Hausdorff distance (mm); None when either mask is empty."""
    if not np.any(mask_a) or not np.any(mask_b):
        return None
    return hd95_of(*surface_distances(mask_a, mask_b, spacing))


def hd95_of(a_to_b: np.ndarray, b_to_a: np.ndarray) -> float:
    """HD95 from the two directed surface distance sets of `surface_distances`."""
    return float(max(np.percentile(a_to_b, 95), np.percentile(b_to_a, 95)))


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, _FACE_NEIGHBOURS, border_value=0)


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """The box around `mask` grown by one voxel (within the array)."""
    where = np.nonzero(mask)
    return tuple(slice(max(int(w.min()) - 1, 0), int(w.max()) + 2) for w in where)
