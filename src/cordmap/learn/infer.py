"""Inference: an image on its own grid -> training-class map on that same grid.

The image is normalised and resampled to the model's grid, segmented by sliding windows
of the training patch size (MONAI), and the class probabilities are resampled back to
the image's own grid before the arg-max, so the output shares the image's shape and
affine exactly. Optionally only the largest connected piece (26-connectivity) of some
classes is kept, the rest becoming background (`keep_largest=("cord",)`: the cord is one
piece in most scans, but not necessarily in an injured one, so this is not the default).
`segment_image` adds the plausibility checks, corrects the cord's extent (stray pieces,
the cauda equina taken for cord: `anatomy.cord_extent`, which also checks for a conus the
segmentation stopped short of) and numbers the vertebrae
(`anatomy.numbering`); `cordmap.pipeline.segment` writes its result into a case folder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from scipy import ndimage

from cordmap.anatomy.cord_extent import core_below_tip, core_note, tidy_cord
from cordmap.anatomy.numbering import Numbering, conus_tip, number_vertebrae
from cordmap.errors import CordmapError
from cordmap.learn.data import prepare
from cordmap.learn.modelfile import TrainedModel
from cordmap.protocol.schema import CORD_CLASSES
from cordmap.volume import LabelVolume, Volume

OVERLAP = 0.25
#: Sliding windows are this many training patches wide along each axis.
WINDOW_SCALE = 1
#: Windows run through the network this many at a time (several times faster on CPU than
#: one by one, with the same result: the network normalises each window on its own).
WINDOW_BATCH = 4


def predict(
    model: TrainedModel,
    image: Volume,
    name: str = "image",
    *,
    overlap: float = OVERLAP,
    device: str = "cpu",
    keep_largest: tuple[str, ...] = (),
    window: tuple[int, int, int] | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Training-class index of every voxel of `image` (uint8, the image's shape).

    `window`: the sliding window (voxels of the model grid; default WINDOW_SCALE times the
    training patch); `progress`: a progress bar over the windows."""
    indices = _class_indices(model, keep_largest)
    example = prepare(name, image, None, model.mapping, model.config)
    assert example.image is not None  # prepare gives the image on the model grid
    network = model.network.to(device).eval()
    box = body_box(example.image, example.spacing)
    window = fitted_window(
        window or [WINDOW_SCALE * n for n in model.config.patch],
        [b.stop - b.start for b in box],
        2**model.config.depth,
    )
    probabilities = np.zeros((len(model.mapping), *example.image.shape), np.float32)
    probabilities[0] = 1.0  # outside the body: background
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(example.image[box])[None, None]).to(device)
        logits = sliding_window_inference(
            x, window, WINDOW_BATCH, network, overlap=overlap, mode="gaussian", progress=progress
        )
        assert isinstance(logits, torch.Tensor)  # the network gives one tensor
        probabilities[(slice(None), *box)] = torch.softmax(logits, dim=1)[0].cpu().numpy()
    class_map = upsampled_classes(probabilities, image.shape)
    for index in indices:
        keep_largest_piece(class_map, index)
    return class_map


def upsampled_classes(probabilities: np.ndarray, shape) -> np.ndarray:
    """The most probable class (uint8) at every voxel of a grid of `shape` over the same
    field of view, the (classes, ...) probabilities interpolated linearly with voxel edges
    aligned, as `data.resample` does (in torch: several times faster on a 512 x 512 x 48
    image)."""
    with torch.no_grad():
        fine = torch.nn.functional.interpolate(
            torch.from_numpy(probabilities)[None],
            size=tuple(shape),
            mode="trilinear",
            align_corners=False,
        )
    return fine[0].argmax(dim=0).numpy().astype(np.uint8)


def fitted_window(window, shape, unit: int) -> tuple[int, int, int]:
    """The sliding window, no larger than the image (rounded up to a multiple of `unit`):
    a window padded far beyond the image would feed the network mostly padding."""
    x, y, z = (int(min(w, -(-n // unit) * unit)) for w, n in zip(window, shape))
    return x, y, z


#: Normalised intensity above which a voxel may be body (air is about 0).
BODY_THRESHOLD = 0.08
#: Margin (mm) kept around the body.
BODY_MARGIN_MM = 10.0


def body_box(image: np.ndarray, spacing) -> tuple[slice, slice, slice]:
    """The box around the body in a normalised image (air around it is left out: the
    network would only find background there)."""
    inside = ndimage.uniform_filter(image, 3) > BODY_THRESHOLD
    if not inside.any():
        x, y, z = (slice(0, n) for n in image.shape)
        return x, y, z
    box = []
    for axis, (n, s) in enumerate(zip(image.shape, spacing)):
        present = np.nonzero(inside.any(axis=tuple(a for a in range(3) if a != axis)))[0]
        margin = int(np.ceil(BODY_MARGIN_MM / s))
        box.append(slice(max(int(present[0]) - margin, 0), min(int(present[-1]) + margin + 1, n)))
    x, y, z = box
    return x, y, z


def keep_largest_piece(class_map: np.ndarray, index: int) -> np.ndarray:
    """Set the voxels of class `index` outside its largest 26-connected piece to
    background, in place; return the map."""
    pieces, count = ndimage.label(class_map == index, structure=np.ones((3, 3, 3)))
    if count > 1:
        sizes = np.bincount(pieces.ravel())
        sizes[0] = 0
        class_map[(pieces > 0) & (pieces != np.argmax(sizes))] = 0
    return class_map


def _class_indices(model: TrainedModel, names) -> list[int]:
    unknown = [n for n in names if n not in model.mapping.names[1:]]
    if unknown:
        raise CordmapError(
            f"`keep_largest` names classes {unknown} the model does not have; "
            f"use names of {', '.join(model.mapping.names[1:])}"
        )
    return [model.mapping.names.index(n) for n in names]


@dataclass(frozen=True)
class SegmentedImage:
    """A segmentation in memory: `labels` on the image's grid (vertebrae and discs levelled
    where they could be numbered), what looks implausible in it (`warnings`), the
    numbering (`levels`) or why there is none (`levels_error`), and how far (mm) the image
    shows the cord's core running on below the conus tip (`conus_core_mm`,
    `anatomy.cord_extent.core_below_tip`)."""

    labels: LabelVolume
    warnings: list[str]
    levels: Numbering | None
    levels_error: str | None
    conus_core_mm: float | None = None

    def results(self) -> dict:
        """What the segment stage records of it (`cordmap.pipeline.segment`), besides the
        model's classes."""
        return {
            "warnings": self.warnings,
            "levels": self.levels.to_dict() if self.levels else None,
            "levels_error": self.levels_error,
            "conus_core_mm": self.conus_core_mm,
        }


def segment_image(
    model: TrainedModel,
    image: Volume,
    name: str = "image",
    *,
    overlap: float = OVERLAP,
    device: str = "cpu",
    keep_largest: tuple[str, ...] = (),
    anchor: str | None = None,
    require_levels: bool = False,
) -> SegmentedImage:
    """Segment `image` with `model`, correct the cord's extent (`anatomy.cord_extent`, said
    in `warnings`), check the result's plausibility and number its vertebrae and discs
    (`anatomy.numbering`, from `anchor` if given). Where the levels cannot be numbered the
    labels stay unlevelled and `levels_error` says why (`require_levels`: raise instead).
    `name` names the image in messages."""
    check_segmentable(image, name)
    class_map = predict(
        model, image, name, overlap=overlap, device=device, keep_largest=tuple(keep_largest)
    )
    found = model.mapping.decode(class_map, image.affine)
    check_spine_found(image, found, name)
    cord = tidy_cord(image, found)
    labels = cord.labels
    warnings = plausibility_warnings(labels, model.mapping.names, name) + cord.notes()
    numbering, levels_error = None, None
    if {"vertebra", "disc"} <= set(model.mapping.names):
        try:
            numbering = number_vertebrae(labels, anchor, source=name)
        except CordmapError as exc:
            if require_levels:
                raise
            levels_error = str(exc)
    tip = numbering.conus_tip if numbering else conus_tip(labels)  # found once
    core = None if tip is None else core_below_tip(image, labels, tip)
    if tip is not None:  # a conus the segmentation stopped short of
        warnings += core_note(core, tip)
    out = numbering.labels if numbering else labels
    return SegmentedImage(out, warnings, numbering, levels_error, core)


def check_segmentable(image: Volume, source) -> None:
    """Refuse images the model cannot segment: a single slice, a tiny field of view."""
    extent = [n * s for n, s in zip(image.shape, image.spacing)]
    if min(image.shape) < 3 or min(extent) < 10.0:
        raise CordmapError(
            f"{source} is {'x'.join(map(str, image.shape))} voxels ({' x '.join(f'{e:.0f}' for e in extent)} mm): "
            "a 2D image or a very thin slab; segmentation needs a 3D volume of the spine "
            "(at least 3 slices covering 10 mm)"
        )


#: Cord and CSF whose median intensities both lie within this share of the image's range
#: (1st to 99th percentile) of its darkest 1 % lie in the air around the body: no spine
#: (on the real lumbar scans the cord's lies 5 % or more above it, the CSF's 22 %).
BACKGROUND_LEVEL = 0.03
#: A class needs this many voxels for its median intensity to count.
SEEN_VOXELS = 50


def check_spine_found(image: Volume, labels: LabelVolume, source) -> None:
    """Refuse a segmentation that shows no spine: no cord, CSF, vertebra or disc found, or
    the cord and CSF found in the air around the body (what a network may make of an image
    without a spine)."""
    array = np.asarray(labels.array)

    def ids(*classes: str) -> list[int]:
        return [label.id for label in labels.schema.of_class(*classes)]

    if not np.isin(array, ids(*CORD_CLASSES, "csf", "vertebra", "disc")).any():
        raise CordmapError(
            f"no spine found in {source}: the model found no cord, CSF, "
            "vertebra or disc; check that the image shows the spine"
        )
    values = np.asarray(image.array)
    # the range from about a million evenly spread voxels: the percentiles of a whole
    # 512 x 512 x 48 image would take half a second
    low, high = np.percentile(values.ravel()[:: max(1, values.size // 1_000_000)], [1, 99])
    levels = []
    for classes in (CORD_CLASSES, ("csf",)):
        where = np.isin(array, ids(*classes))
        if where.sum() >= SEEN_VOXELS:
            levels.append((float(np.median(values[where])) - low) / float(high - low or 1.0))
    if levels and max(levels) < BACKGROUND_LEVEL:
        raise CordmapError(
            f"no spine found in {source}: the cord and CSF the model found are as dark as "
            "the air around the body; check that the image shows the spine"
        )


#: Cord pieces smaller than this (mm^3) are not counted as pieces.
PIECE_MIN_MM3 = 50.0
#: Largest distance (mm) from a cord voxel to the CSF or bone around it.
CANAL_MM = 6.0


def plausibility_warnings(labels: LabelVolume, names: list[str], source) -> list[str]:
    """What looks wrong in a segmentation (`check_spine_found` passed): no cord, a cord in
    many pieces or away from the canal. `names`: the model's classes (a model without a
    cord class is not warned of a missing cord)."""
    array = np.asarray(labels.array)

    def mask(*classes: str) -> np.ndarray:
        return np.isin(array, [label.id for label in labels.schema.of_class(*classes)])

    warnings: list[str] = []
    if "cord" not in names:
        return warnings
    cord = mask(*CORD_CLASSES)
    if not cord.any():
        return [
            "no spinal cord found: the scan may lie below the conus, or the cord was "
            "missed; check the sagittal figure"
        ]
    pieces, count = ndimage.label(cord, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(pieces.ravel())[1:] * labels.voxel_volume
    large = int((sizes >= PIECE_MIN_MM3).sum())
    if large > 2:
        warnings.append(
            f"the cord is in {large} pieces (of {PIECE_MIN_MM3:.0f} mm^3 or more): "
            "check the segmentation along the cord"
        )
    canal = mask("csf", "vertebra")
    if canal.any():
        # within CANAL_MM of the cord's box only: a nearer CSF or bone voxel lies inside it
        margin = np.ceil(CANAL_MM / np.asarray(labels.spacing)).astype(int) + 1
        ijk = np.argwhere(cord)
        box = tuple(
            slice(max(int(a) - m, 0), min(int(b) + m + 1, n))
            for a, b, m, n in zip(ijk.min(axis=0), ijk.max(axis=0), margin, cord.shape)
        )
        around = canal[box]
        if around.any():
            distance = ndimage.distance_transform_edt(~around, sampling=labels.spacing)
            away = float((distance[cord[box]] > CANAL_MM).mean())
        else:
            away = 1.0
        if away > 0.2:
            warnings.append(
                f"{100 * away:.0f} % of the cord lies over {CANAL_MM:.0f} mm "
                "from any CSF or bone: it may lie outside the spinal canal"
            )
    return warnings
