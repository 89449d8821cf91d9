"""The built-in lumbosacral phantom: a synthetic T2 spine MRI with exact ground truth.

`make_phantom(seed)` draws an anatomy from the seed (segment lengths, enlargement size and
position, conus level, curvature of the spine, optionally slice thickness), samples it on
an axial acquisition and returns the image, its labels (the shipped protocol) and the
truth: every position the labels were drawn from, in arc length along the canal and in
world RAS+ mm. `sample_phantom` samples the same anatomy on any other grid (a sagittal
series, say) and `write_phantom` writes the BIDS-style NIfTI pair, `truth.json` and an
axial and a sagittal DICOM series. The geometry is documented in docs/phantom.md and in
`cordmap.anatomy.phantom_geometry`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from cordmap.anatomy.phantom_geometry import (
    ENLARGEMENT,
    PhantomGeometry,
    PhantomParameters,
    draw_parameters,
)
from cordmap.anatomy.phantom_image import t2_image, tissue_intensity
from cordmap.anatomy.phantom_sampling import Grid, axial_grid, rasterise, sagittal_grid
from cordmap.atomic import atomic_dir, write_text
from cordmap.errors import CordmapError
from cordmap.io.dicom import write_dicom_series
from cordmap.io.nifti import write_nifti
from cordmap.protocol.schema import default_schema
from cordmap.volume import LabelVolume, Volume

COORDINATES = (
    "s_mm: arc length along the centreline of the spinal canal, which is also the cord's "
    "centreline (so positions along the spine axis and along the cord are the same s), "
    "0 at the superior endplate of T9, increasing caudally. ras_mm: world RAS+ mm of the "
    "centreline at that s. A curvilinear point (u, v, s) (u to the right, v anterior along "
    "the sagittal normal of the centreline) lies at centre(s) + u*x + v*normal(s); "
    "vertebral endplates and segment boundaries are planes normal to the centreline."
)
PROFILE_STEP_MM = 0.5
PARTIAL_VOLUME = 3  # planes averaged through each slice's thickness for the image
CENTRELINE_STEP_MM = 1.0


@dataclass
class PhantomTruth:
    """The exact anatomy behind a phantom's labels, convertible to and from JSON."""

    seed: int
    parameters: dict
    coordinates: str
    grid: dict  # shape and affine of the labelled image
    centreline: dict  # s_mm, ras_mm, normal_ras
    cord_profile: dict  # s_mm, half_width_mm, half_depth_mm, area_mm2 (elliptic section)
    vertebrae: dict  # name -> label_id, superior/inferior s_mm and ras_mm, height_mm
    discs: dict
    segments: dict  # name -> label_id, superior/inferior s_mm and ras_mm, length_mm, levels
    conus: dict
    enlargement: dict
    lumbosacral_cord: dict
    max_cord_area: dict
    roots: list

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, data: dict) -> PhantomTruth:
        names = {f.name for f in fields(cls)}
        missing = names - set(data)
        if missing:
            raise CordmapError(
                f"phantom truth lacks {sorted(missing)}; regenerate it with `cordmap phantom`"
            )
        return cls(**{name: data[name] for name in names})

    @classmethod
    def from_json(cls, text: str) -> PhantomTruth:
        return cls.from_dict(json.loads(text))

    @classmethod
    def read(cls, path: str | Path) -> PhantomTruth:
        path = Path(path)
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CordmapError(
                f"{path} is not a readable phantom truth file ({exc}); regenerate it "
                "with `cordmap phantom`"
            ) from None


@dataclass(frozen=True, eq=False)
class Phantom:
    """A sampled phantom: T2-like image, labels on the same grid, and the exact truth."""

    image: Volume
    labels: LabelVolume
    truth: PhantomTruth
    geometry: PhantomGeometry

    @property
    def seed(self) -> int:
        return self.truth.seed

    @property
    def subject(self) -> str:
        return f"sub-phantom{self.seed}"


def make_phantom(
    seed: int = 0,
    *,
    slice_thickness: float | None = 3.0,
    pixel_mm: float = 0.8,
    fov_mm: tuple[float, float] = (160.0, 160.0),
    n_slices: int | None = None,
    partial_volume: int = PARTIAL_VOLUME,
    intensities: dict | None = None,
) -> Phantom:
    """Draw phantom `seed` and acquire it as axial slices.

    Parameters
    ----------
    seed : int
        Which phantom (0 or more): its anatomy and, unless given, its slice thickness.
    slice_thickness : float or None
        Slice thickness (mm); None draws it from the seed (2.5, 3, 3.5 or 4 mm).
    pixel_mm : float
        In-plane pixel size (mm).
    fov_mm : tuple of float
        In-plane field of view (mm).
    n_slices : int, optional
        Without it the slab covers T9 to the S1 part of the sacrum; with it (48 for the
        published network input) the slab is centred on the enlargement and conus.
    partial_volume : int
        Planes sampled per slice to make the image (see `sample_phantom`).
    intensities : dict, optional
        Tissue intensities (default: `phantom_image.T2_INTENSITY`).

    Returns
    -------
    Phantom
        The image, its exact labels (every level and segment), a description and the
        analytic geometry.
    """
    if seed < 0:
        raise CordmapError(f"phantom seed must be 0 or more, got {seed}")
    geometry = PhantomGeometry(draw_parameters(seed, slice_thickness))
    grid = axial_grid(geometry, geometry.parameters.slice_thickness, pixel_mm, fov_mm, n_slices)
    image, labels = sample_phantom(
        geometry, grid, partial_volume=partial_volume, intensities=intensities
    )
    return Phantom(image, labels, describe(geometry, grid), geometry)


def sample_phantom(
    source, grid, *, partial_volume: int = PARTIAL_VOLUME, intensities: dict | None = None
) -> tuple[Volume, LabelVolume]:
    """Image and labels of a phantom's anatomy sampled on `grid`.

    `source` is a PhantomGeometry, PhantomParameters, PhantomTruth or seed; `grid` a Grid,
    or any Volume whose grid to reuse (shape and affine). Labels are the anatomy at the
    voxel centres. The image averages the tissue intensities of `partial_volume` (odd)
    planes spread evenly through each slice's thickness, the middle one through the voxel
    centres (along the grid's thickest axis, when it is thicker than the others), as a
    thick MRI slice does, before bias and noise. `intensities` maps each Tissue to its
    noise-free intensity (default: phantom_image.T2_INTENSITY).
    """
    if partial_volume < 1 or partial_volume % 2 == 0:
        raise CordmapError(f"partial_volume must be an odd number of planes, got {partial_volume}")
    geometry = geometry_of(source)
    if not isinstance(grid, Grid):
        grid = Grid(grid.shape, grid.affine)
    spacing = np.linalg.norm(grid.affine[:3, :3], axis=0)
    axis = int(np.argmax(spacing))
    if spacing[axis] <= 1.2 * np.delete(spacing, axis).max():
        axis, partial_volume = 0, 1
    # one pass over `partial_volume` thin planes per slice; the middle ones are the grid's
    fine_shape = list(grid.shape)
    fine_shape[axis] *= partial_volume
    fine_affine = grid.affine.copy()
    fine_affine[:3, axis] /= partial_volume
    fine_affine[:3, 3] -= (partial_volume // 2) * fine_affine[:3, axis]
    fine_labels, tissue = rasterise(geometry, Grid(tuple(fine_shape), fine_affine))
    middle = [slice(None)] * 3
    middle[axis] = slice(partial_volume // 2, None, partial_volume)
    labels = np.ascontiguousarray(fine_labels[tuple(middle)])
    planes = list(grid.shape)
    planes.insert(axis + 1, partial_volume)
    intensity = tissue_intensity(tissue, intensities).reshape(planes).mean(axis=axis + 1)
    image = t2_image(intensity, grid, geometry.parameters)
    return (Volume(image, grid.affine), LabelVolume(labels, grid.affine, schema=default_schema()))


def geometry_of(source) -> PhantomGeometry:
    """The geometry of a phantom given as geometry, parameters, truth or seed."""
    if isinstance(source, PhantomGeometry):
        return source
    if isinstance(source, PhantomTruth):
        source = PhantomParameters(**source.parameters)
    if isinstance(source, PhantomParameters):
        return PhantomGeometry(source)
    if isinstance(source, (int, np.integer)):
        return PhantomGeometry(draw_parameters(int(source)))
    raise CordmapError(f"cannot make a phantom from a {type(source).__name__}")


def sagittal_series(
    phantom: Phantom, *, slice_thickness: float = 3.0, pixel_mm: float = 0.8, n_slices: int = 15
) -> tuple[Volume, LabelVolume]:
    """The same anatomy acquired as sagittal slices through the midline."""
    grid = sagittal_grid(phantom.geometry, slice_thickness, pixel_mm, n_slices=n_slices)
    return sample_phantom(phantom.geometry, grid)


# -- files -------------------------------------------------------------------------------
PHANTOM_FILES = (
    "{subject}_T2w.nii.gz",
    "{subject}_T2w_desc-truth_dseg.nii.gz",
    "truth.json",
    "dicom",
)


def write_phantom(phantom: Phantom, out_dir: str | Path, *, dicom: bool = True) -> list[Path]:
    """Write the phantom into `out_dir` (replaced whole, atomically); return the paths.

    Files: `sub-phantom<seed>_T2w.nii.gz`, `..._T2w_desc-truth_dseg.nii.gz`, `truth.json`
    and, with `dicom`, `dicom/axial` and `dicom/sagittal` (one study, two MR series; the
    sagittal one has 15 slices of the axial slice thickness and pixel size).
    `out_dir` must be new, empty or an earlier phantom folder: nothing else is replaced.
    """

    out_dir = Path(out_dir)
    _require_phantom_folder(out_dir)
    names = [name.format(subject=phantom.subject) for name in PHANTOM_FILES]
    with atomic_dir(out_dir) as tmp:
        write_nifti(phantom.image, tmp / names[0])
        write_nifti(phantom.labels, tmp / names[1])
        write_text(tmp / names[2], phantom.truth.to_json())
        if dicom:
            common = {
                "patient_id": f"PHANTOM{phantom.seed}",
                "uid_seed": f"cordmap-phantom-{phantom.seed}",
            }
            write_dicom_series(
                phantom.image,
                tmp / "dicom" / "axial",
                slice_axis=2,
                series_description="T2w axial (cordmap phantom)",
                series_number=1,
                **common,
            )
            pixel, _, thickness = phantom.image.spacing
            sagittal, _ = sagittal_series(phantom, slice_thickness=thickness, pixel_mm=pixel)
            write_dicom_series(
                sagittal,
                tmp / "dicom" / "sagittal",
                slice_axis=0,
                series_description="T2w sagittal (cordmap phantom)",
                series_number=2,
                **common,
            )
    return [out_dir / name for name in (names if dicom else names[:3])]


def _require_phantom_folder(folder: Path) -> None:
    if not folder.exists():
        return
    if not folder.is_dir():
        raise CordmapError(f"{folder} is a file; pass a folder for the phantom")
    if any(folder.iterdir()) and not (folder / "truth.json").is_file():
        raise CordmapError(
            f"{folder} already holds other files and is not a phantom folder; the phantom "
            "replaces its folder whole, so pass a new or empty folder"
        )


# -- truth -------------------------------------------------------------------------------
def describe(geometry: PhantomGeometry, grid: Grid) -> PhantomTruth:
    """The truth of a phantom sampled on `grid` (plain JSON types)."""
    g = geometry

    def place(s):
        return [round(float(c), 4) for c in g.centre(s)]

    def extent(item, **extra):
        return {
            "label_id": item.label_id,
            "superior_s_mm": _r(item.superior),
            "inferior_s_mm": _r(item.inferior),
            "superior_ras_mm": place(item.superior),
            "inferior_ras_mm": place(item.inferior),
            **extra,
        }

    first, last = (g.segment(name) for name in ENLARGEMENT)
    s = np.arange(g.model_top - 150.0, g.model_bottom + 50.0 + 1e-9, CENTRELINE_STEP_MM)
    _, normal = g.frame(s)
    profile_s = np.arange(g.segments[0].superior, g.tip + 1e-9, PROFILE_STEP_MM)
    half_width, half_depth = g.cord_semi_axes(profile_s)
    peak_area = float(g.cord_area(g.peak))
    return PhantomTruth(
        seed=g.parameters.seed,
        parameters=g.parameters.to_dict(),
        coordinates=COORDINATES,
        grid={"shape": list(grid.shape), "affine": grid.affine.round(6).tolist()},
        centreline={
            "s_mm": _r(s),
            "ras_mm": g.centre(s).round(4).tolist(),
            "normal_ras": normal.round(6).tolist(),
        },
        cord_profile={
            "s_mm": _r(profile_s),
            "half_width_mm": _r(half_width),
            "half_depth_mm": _r(half_depth),
            "area_mm2": _r(np.pi * half_width * half_depth),
        },
        vertebrae={v.name: extent(v, height_mm=_r(v.length)) for v in g.vertebrae},
        discs={d.name: extent(d, height_mm=_r(d.length)) for d in g.discs},
        segments={
            seg.name: extent(
                seg,
                length_mm=_r(seg.length),
                superior_level=g.level_at(seg.superior),
                inferior_level=g.level_at(seg.inferior),
                volume_mm3=_r(g.cord_volume(seg.superior, seg.inferior)),
            )
            for seg in g.segments
        },
        conus=extent(
            g.conus,
            length_mm=_r(g.conus.length),
            tip_s_mm=_r(g.tip),
            tip_ras_mm=place(g.tip),
            tip_level=g.level_at(g.tip),
            volume_mm3=_r(g.cord_volume(g.conus.superior, g.tip)),
        ),
        enlargement={
            "segments": list(ENLARGEMENT),
            "superior_s_mm": _r(first.superior),
            "inferior_s_mm": _r(last.inferior),
            "length_mm": _r(last.inferior - first.superior),
            "superior_ras_mm": place(first.superior),
            "inferior_ras_mm": place(last.inferior),
            "superior_level": g.level_at(first.superior),
            "inferior_level": g.level_at(last.inferior),
            "swelling_onset_s_mm": _r(g.onset),
        },
        lumbosacral_cord={
            "superior_s_mm": _r(g.segment("L1").superior),
            "tip_s_mm": _r(g.tip),
            "length_mm": _r(g.tip - g.segment("L1").superior),
        },
        max_cord_area={
            "area_mm2": _r(peak_area),
            "s_mm": _r(g.peak),
            "ras_mm": place(g.peak),
            "segment": g.segment_at(g.peak),
            "level": g.level_at(g.peak),
            "thoracic_area_mm2": _r(float(g.cord_area(g.segments[0].superior))),
        },
        roots=[
            {
                "label_id": root.label_id,
                "level": root.level,
                "side": root.side,
                "kind": root.kind,
                "radius_mm": root.radius,
                "origin_s_mm": _r(root.points[0, 2]),
                "exit_s_mm": _r(root.points[-1, 2]),
                "exit": root.exit,
                "polyline_uvs_mm": root.points.round(4).tolist(),
                "polyline_ras_mm": g.world(*root.points.T).round(4).tolist(),
            }
            for root in g.roots
        ],
    )


def _r(value):
    """Plain Python floats rounded to 0.1 µm (lists for arrays)."""
    if np.ndim(value):
        return np.round(np.asarray(value, dtype=float), 4).tolist()
    return round(float(value), 4)
