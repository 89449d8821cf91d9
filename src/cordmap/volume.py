"""Volumes in canonical RAS+ orientation, with their geometry in millimetres.

A `Volume` is a 3D array plus a 4x4 affine mapping voxel indices (i, j, k) to world
RAS+ millimetres (the NIfTI / nibabel convention). Arrays are always held in the
closest canonical voxel order: i increases towards the patient's Right, j towards
Anterior, k towards Superior, so an axial slice is `array[:, :, k]`. Readers convert on
load; writers keep the canonical order.

A `LabelVolume` is an integer volume whose values are label ids of a `LabelSchema`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from nibabel import orientations

from cordmap.errors import CordmapError

if TYPE_CHECKING:
    from cordmap.protocol.schema import LabelSchema

#: Geometry tolerance (mm) when comparing two grids.
GRID_TOLERANCE_MM = 1e-3


#: Plausible voxel sizes (mm) of a medical image.
SPACING_RANGE_MM = (1e-3, 1e3)
#: Largest |cosine| between two voxel axes: beyond it the grid is sheared, not rotated.
SHEAR_TOLERANCE = 1e-3


def check_affine(affine: np.ndarray) -> None:
    """Refuse a voxel-to-world affine that is not finite, singular, sheared or of an
    implausible voxel size: every later measurement in mm would be meaningless."""
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise CordmapError(
            "the volume's affine must be a finite 4x4 matrix; the file's "
            "header is damaged: re-export the image"
        )
    axes = affine[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    if abs(np.linalg.det(axes)) < 1e-12 or spacing.min() == 0:
        raise CordmapError(
            "the volume's affine is singular (a voxel size of 0): the file's "
            "header is damaged; re-export the image"
        )
    low, high = SPACING_RANGE_MM
    if spacing.min() < low or spacing.max() > high:
        raise CordmapError(
            f"voxel size {' x '.join(f'{s:g}' for s in spacing)} mm is not "
            f"plausible for an MRI ({low:g} to {high:g} mm); the header's "
            "spacing is wrong: re-export the image"
        )
    unit = axes / spacing
    cosines = np.abs(unit.T @ unit - np.eye(3))
    if cosines.max() > SHEAR_TOLERANCE:
        raise CordmapError(
            "the volume's axes are not perpendicular (a sheared grid, as "
            "from a tilted-gantry acquisition); resample it to an orthogonal "
            "grid first (e.g. dcm2niix does)"
        )


def to_canonical(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorder (flip / permute) `array` so its axes run R, A, S; return the new pair.

    Only axis flips and permutations are applied (no resampling), so voxel values are
    untouched; an oblique acquisition keeps its rotation in the affine.
    """
    affine = np.asarray(affine, dtype=float)
    check_affine(affine)
    ornt = orientations.io_orientation(affine)
    target = orientations.axcodes2ornt(("R", "A", "S"))
    transform = orientations.ornt_transform(ornt, target)
    if np.array_equal(transform, [[0, 1], [1, 1], [2, 1]]):
        return array, affine
    new_array = orientations.apply_orientation(array, transform)
    new_affine = affine @ orientations.inv_ornt_aff(transform, array.shape[:3])
    return np.ascontiguousarray(new_array), new_affine


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D image in canonical RAS+ voxel order; `affine` maps voxels to RAS+ mm."""

    array: np.ndarray
    affine: np.ndarray

    def __post_init__(self):
        if self.array.ndim != 3:
            raise CordmapError(
                f"expected a 3D volume, got an array of shape {self.array.shape}; "
                "pass one 3D image (not a time series or a single slice)"
            )
        affine = np.asarray(self.affine, dtype=float)
        check_affine(affine)
        object.__setattr__(self, "affine", affine)

    @classmethod
    def from_any_orientation(cls, array: np.ndarray, affine: np.ndarray, **extra) -> Volume:
        """Build a volume from data in any voxel order, reordered to canonical RAS+."""
        array, affine = to_canonical(np.asarray(array), affine)
        return cls(array, affine, **extra)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along i, j, k in mm."""
        x, y, z = np.linalg.norm(self.affine[:3, :3], axis=0)
        return float(x), float(y), float(z)

    @property
    def voxel_volume(self) -> float:
        """Volume of one voxel in mm³."""
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    def world(self, ijk) -> np.ndarray:
        """RAS+ mm of voxel indices (..., 3)."""
        ijk = np.asarray(ijk, dtype=float)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def voxel(self, xyz) -> np.ndarray:
        """Continuous voxel indices of RAS+ mm points (..., 3)."""
        inv = np.linalg.inv(self.affine)
        xyz = np.asarray(xyz, dtype=float)
        return xyz @ inv[:3, :3].T + inv[:3, 3]

    def same_grid(self, other: Volume, tolerance_mm: float = GRID_TOLERANCE_MM) -> bool:
        """True when both volumes have the same shape and voxel-to-world mapping."""
        return self.shape == other.shape and np.allclose(
            self.affine, other.affine, atol=tolerance_mm
        )

    def require_same_grid(self, other: Volume, what: str = "labels") -> None:
        """Raise a clear error when `other` does not lie on this volume's grid."""
        if self.same_grid(other):
            return
        raise CordmapError(
            f"the {what} do not match the image grid: image {self.shape} voxels of "
            f"{_fmt(self.spacing)} mm, {what} {other.shape} voxels of {_fmt(other.spacing)} mm"
            f"; resample the {what} onto the image "
            "(e.g. with ITK-SNAP or sct_register_multimodal) before importing"
        )


@dataclass(frozen=True, eq=False)
class LabelVolume(Volume):
    """An integer volume of label ids defined by `schema`."""

    schema: LabelSchema

    def __post_init__(self):
        super().__post_init__()
        if self.schema is None:
            raise CordmapError("a label volume needs a label schema")
        if not np.issubdtype(self.array.dtype, np.integer):
            rounded = np.rint(self.array)
            if not np.array_equal(rounded, self.array):
                raise CordmapError(
                    "a label volume must hold whole-number label ids, but it has "
                    "fractional values; was an image passed where labels were expected?"
                )
            object.__setattr__(self, "array", rounded.astype(np.uint16))

    def ids(self) -> list[int]:
        """Label ids present in the volume (background 0 excluded), ascending."""
        return [int(v) for v in np.unique(self.array) if v != 0]

    def unknown_ids(self) -> list[int]:
        """Ids present in the volume that the schema does not define."""
        return [i for i in self.ids() if i not in self.schema]

    def require_known_ids(self) -> None:
        unknown = self.unknown_ids()
        if unknown:
            raise CordmapError(
                f"label ids {unknown} are not in the annotation protocol "
                f"'{self.schema.name}'; relabel them or pass a schema that defines them"
            )

    def counts(self) -> dict[int, int]:
        """Voxel count of each present label id."""
        values, counts = np.unique(self.array, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts) if v != 0}


def _fmt(spacing) -> str:
    return " x ".join(f"{s:g}" for s in spacing)


def piece_centres(pieces: np.ndarray, count: int) -> np.ndarray:
    """(count, 3) centres, in voxel indices, of pieces 1..count of a labelled array (as
    `scipy.ndimage.label` makes it): one pass over its non-zero voxels, several times
    faster than `ndimage.center_of_mass` on a large, sparse array."""
    ijk = np.nonzero(pieces)
    which = pieces[ijk]
    sizes = np.bincount(which, minlength=count + 1)[1:]
    sums = [np.bincount(which, weights=axis, minlength=count + 1)[1:] for axis in ijk]
    return np.stack(sums, axis=1) / sizes[:, None]
