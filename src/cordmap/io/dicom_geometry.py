"""Geometry of DICOM slice stacks: plane orientation, slice order and spacing, LPS <-> RAS.

DICOM places each 2D image by ImagePositionPatient (the centre of its first pixel) and
ImageOrientationPatient (the direction along a row, then down a column) in LPS
millimetres; cordmap works in RAS+. These functions are pure numpy: they turn the
positions of a series' slices into one voxel grid (checking that the slices really form
one evenly spaced, untilted stack), and a voxel grid back into slice planes for writing.

Voxel order of a stacked series: array[c, r, s] is column c, row r of slice s, so
axis 0 runs along a row, axis 1 down a column and axis 2 along the slice normal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from nibabel import orientations

from cordmap.errors import CordmapError

#: Flips x and y: maps LPS to RAS coordinates (and back: it is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: A plane whose normal lies more than this off the nearest axis is called "oblique".
OBLIQUE_DEGREES = 10.0
#: Slices stacked more than this off their normal are refused as tilted (gantry tilt).
TILT_DEGREES = 0.05
#: Two slices closer than this along the normal are at the same position.
DUPLICATE_MM = 1e-3
#: Allowed jitter of slice steps, as a fraction of the step (DICOM stores decimal strings).
STEP_TOLERANCE = 0.01
#: Two orientation cosines or spacings differing less than this are the same.
SAME_TOLERANCE = 1e-4

#: Voxel axes (column, row, slice) of written series, as RAS axis codes; these are the
#: radiological display conventions (axial: patient's left on the image right, anterior up).
DISPLAY_AXES = {
    2: ("L", "P", "S"),  # axial slices
    1: ("L", "I", "P"),  # coronal slices
    0: ("P", "I", "R"),  # sagittal slices
}
PLANE_NAMES = ("sagittal", "coronal", "axial")  # by the LPS axis the slice normal follows


def plane_axes(orientation, label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit row direction, column direction and slice normal (LPS) of ImageOrientationPatient."""
    cosines = np.asarray(orientation, dtype=float).reshape(-1)
    if cosines.shape != (6,) or not np.all(np.isfinite(cosines)):
        raise CordmapError(
            f"{label} has a malformed ImageOrientationPatient {list(cosines)}; "
            "re-export the series from the scanner or PACS"
        )
    row, col = cosines[:3], cosines[3:]
    norms = np.linalg.norm(row), np.linalg.norm(col)
    if min(norms) < 0.5:
        raise CordmapError(
            f"{label} has a malformed ImageOrientationPatient {list(cosines)}; "
            "re-export the series from the scanner or PACS"
        )
    row, col = row / norms[0], col / norms[1]
    if abs(row @ col) > 1e-3:
        raise CordmapError(
            f"{label} has non-orthogonal image axes (ImageOrientationPatient {list(cosines)}); "
            "convert it with dcm2niix and pass the .nii.gz"
        )
    return row, col, np.cross(row, col)


def plane_name(orientation) -> str:
    """'axial', 'sagittal', 'coronal' or 'oblique' for an ImageOrientationPatient."""
    try:
        normal = plane_axes(orientation, "image")[2]
    except CordmapError:
        return "unknown"
    axis = int(np.argmax(np.abs(normal)))
    if abs(normal[axis]) < np.cos(np.radians(OBLIQUE_DEGREES)):
        return "oblique"
    return PLANE_NAMES[axis]


@dataclass(frozen=True)
class Stack:
    """A series' slices ordered along their normal, and the voxel grid they form."""

    order: np.ndarray  # indices of the input slices, in ascending position along the normal
    spacing: float  # mm between slice centres
    affine: np.ndarray  # RAS+ affine of array[c, r, s]


def stack_slices(
    positions,
    orientation,
    pixel_spacing,
    names: list[str],
    label: str,
    single_slice_spacing: float | None = None,
) -> Stack:
    """Order slices by position along their normal and check they form one regular stack.

    `positions` are the ImagePositionPatient (n, 3) of the slices, `names` their file names
    (for messages). Refuses duplicate positions, missing slices, unequal spacing and
    stacking off the normal (gantry tilt). A single slice takes `single_slice_spacing`.
    """
    row, col, normal = plane_axes(orientation, label)
    positions = np.asarray(positions, dtype=float).reshape(-1, 3)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along, positions = along[order], positions[order]
    ordered_names = [names[i] for i in order]
    if len(order) == 1:
        if not single_slice_spacing or single_slice_spacing <= 0:
            raise CordmapError(
                f"{label} has a single slice without SliceThickness; a volume needs its "
                "slice thickness: re-export the series with its full header"
            )
        spacing = float(single_slice_spacing)
    else:
        _require_distinct(along, ordered_names, label)
        _require_on_normal(positions, along, normal, ordered_names, label)
        _require_regular(along, ordered_names, label)
        spacing = float((along[-1] - along[0]) / (len(along) - 1))
    row_spacing, col_spacing = (float(s) for s in pixel_spacing)
    lps = np.eye(4)
    lps[:3, 0] = row * col_spacing  # one column further along the row
    lps[:3, 1] = col * row_spacing  # one row further down the column
    lps[:3, 2] = normal * spacing
    lps[:3, 3] = positions[0]
    return Stack(order=order, spacing=spacing, affine=LPS_TO_RAS @ lps)


def _require_distinct(along, names, label):
    steps = np.diff(along)
    same = np.nonzero(steps < DUPLICATE_MM)[0]
    if same.size:
        i = int(same[0])
        raise CordmapError(
            f"{label} has {same.size + 1 if same.size == 1 else 'several'} images at the same "
            f"position ({names[i]} and {names[i + 1]} at {along[i]:.2f} mm along the slice normal): "
            "it holds more than one volume (echoes, repetitions or diffusion directions); "
            "split it with dcm2niix and pass one .nii.gz, or choose another series"
        )


def _require_on_normal(positions, along, normal, names, label):
    sideways = (positions - positions[0]) - np.outer(along - along[0], normal)
    shift = np.linalg.norm(sideways, axis=1)
    allowed = 0.01 + np.tan(np.radians(TILT_DEGREES)) * (along - along[0])
    worst = int(np.argmax(shift - allowed))
    if shift[worst] > allowed[worst]:
        tilt = np.degrees(np.arctan2(shift[-1], along[-1] - along[0]))
        raise CordmapError(
            f"{label} is not stacked along its slice normal ({names[worst]} lies "
            f"{shift[worst]:.2f} mm sideways; gantry tilt of about {tilt:.1f} degrees or "
            "non-orthogonal stacking), which cordmap does not resample; convert the series "
            "with dcm2niix (it corrects gantry tilt) and pass the .nii.gz"
        )


def _require_regular(along, names, label):
    steps = np.diff(along)
    step = float(steps.min())
    multiples = np.rint(steps / step)
    tolerance = max(STEP_TOLERANCE * step, DUPLICATE_MM)
    if np.any(np.abs(steps - multiples * step) > tolerance):
        distinct = sorted({round(float(s), 2) for s in steps})
        shown = ", ".join(f"{s:g}" for s in distinct[:5])
        raise CordmapError(
            f"{label} has unequal slice spacing ({shown} mm between neighbouring slices); "
            "re-export the series, or convert it with dcm2niix and pass the .nii.gz"
        )
    gaps = np.nonzero(multiples > 1)[0]
    if gaps.size:
        missing = [along[i] + m * step for i in gaps for m in range(1, int(multiples[i]))]
        shown = ", ".join(f"{p:.2f}" for p in missing[:5]) + (" ..." if len(missing) > 5 else "")
        i = int(gaps[0])
        raise CordmapError(
            f"{label} is missing {len(missing)} slice{'s' if len(missing) > 1 else ''} "
            f"(a gap at {shown} mm along the slice normal, first between {names[i]} and "
            f"{names[i + 1]}; slices are {step:g} mm apart); copy the complete series again "
            "from the scanner or PACS"
        )


@dataclass(frozen=True)
class SlicePlanes:
    """DICOM placement of the slices of a voxel grid whose third axis is the slice axis."""

    orientation: np.ndarray  # ImageOrientationPatient (6,)
    pixel_spacing: tuple[float, float]  # (between rows, between columns) mm
    positions: np.ndarray  # ImagePositionPatient of each slice (n, 3), LPS mm
    spacing: float  # mm between slices
    along: np.ndarray  # each slice's position along the normal (SliceLocation)


def display_order(array: np.ndarray, affine: np.ndarray, slice_axis: int):
    """Reorder a volume so axes are (column, row, slice) in display convention; new pair."""
    if slice_axis not in DISPLAY_AXES:
        raise CordmapError(f"slice axis {slice_axis} is not 0 (sagittal), 1 (coronal) or 2 (axial)")
    current = orientations.io_orientation(affine)
    target = orientations.axcodes2ornt(DISPLAY_AXES[slice_axis])
    transform = orientations.ornt_transform(current, target)
    new_array = orientations.apply_orientation(array, transform)
    new_affine = affine @ orientations.inv_ornt_aff(transform, array.shape[:3])
    return new_array, new_affine


def slice_planes(affine: np.ndarray, n_slices: int) -> SlicePlanes:
    """Slice placement of a grid array[c, r, s] with RAS+ `affine` (inverse of stack_slices)."""
    lps = LPS_TO_RAS @ np.asarray(affine, dtype=float)
    col_step, row_step, slice_step = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    col_spacing, row_spacing, spacing = (float(np.linalg.norm(v)) for v in lps[:3, :3].T)
    row_dir, col_dir = col_step / col_spacing, row_step / row_spacing
    normal = np.cross(row_dir, col_dir)
    if (
        abs(row_dir @ col_dir) > SAME_TOLERANCE
        or np.linalg.norm(np.cross(normal, slice_step / spacing)) > SAME_TOLERANCE
    ):
        raise CordmapError(
            "the volume's voxel grid is sheared (its axes are not orthogonal), which DICOM "
            "slices cannot represent; resample it onto an orthogonal grid first"
        )
    positions = lps[:3, 3] + np.outer(np.arange(n_slices), slice_step)
    return SlicePlanes(
        orientation=np.concatenate([row_dir, col_dir]),
        pixel_spacing=(row_spacing, col_spacing),
        positions=positions,
        spacing=spacing,
        along=positions @ normal,
    )
