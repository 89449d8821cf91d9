"""Agreement between two labellings of one image (two raters, or a rater and a model).

For two label volumes on one grid this computes

- Cohen's kappa over all voxels (background included, every label id a category),
- per label: kappa of "this label vs. everything else", Dice, IoU and the surface
  distances in mm: the mean symmetric surface distance and the 95th-percentile
  Hausdorff distance (the larger of the two directed 95th percentiles, as MONAI and
  medpy define it), from Euclidean distance transforms with the voxel spacing,
- per structure class (all vertebrae, all cord segments, ...): kappa, Dice and IoU of the
  class as a whole, so that a level boundary drawn differently does not count there,
- the axial slices where the raters disagree most, with the label pair most confused there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from cordmap import overlap
from cordmap.errors import CordmapError
from cordmap.io.nifti import read_labels
from cordmap.protocol.schema import LabelSchema
from cordmap.surface import hd95_of, surface_distances
from cordmap.volume import LabelVolume

#: The surface of a mask: its voxels with a face-neighbour outside it.


@dataclass(frozen=True)
class LabelAgreement:
    """Agreement on one label id."""

    id: int
    name: str
    structure: str
    voxels_a: int
    voxels_b: int
    kappa: float
    dice: float
    iou: float
    mean_surface_mm: float | None  # None when one rater did not draw the label
    hd95_mm: float | None


@dataclass(frozen=True)
class SliceDisagreement:
    """One axial slice (index k) and how much the raters disagree on it."""

    k: int
    s_mm: float  # superior (S) coordinate of the slice centre
    differing_voxels: int
    labelled_voxels: int  # voxels labelled by either rater
    confused_a: str  # the label pair most often confused on this slice
    confused_b: str

    @property
    def fraction(self) -> float:
        return self.differing_voxels / self.labelled_voxels if self.labelled_voxels else 0.0


@dataclass(frozen=True)
class StructureAgreement:
    """Agreement on a structure class as a whole (e.g. every vertebra, whatever its level)."""

    structure: str
    voxels_a: int
    voxels_b: int
    kappa: float
    dice: float
    iou: float


@dataclass(frozen=True)
class Agreement:
    kappa: float
    labels: list[LabelAgreement]
    structures: list[StructureAgreement]
    worst_slices: list[SliceDisagreement]

    def to_dict(self) -> dict:
        return {
            "kappa": self.kappa,
            "labels": [asdict(label) for label in self.labels],
            "structures": [asdict(s) for s in self.structures],
            "worst_slices": [asdict(s) | {"fraction": s.fraction} for s in self.worst_slices],
        }


def agree_files(
    path_a: str | Path, path_b: str | Path, *, schema: LabelSchema | None = None, worst: int = 5
) -> Agreement:
    """Compare two label NIfTI files of one image (see `compare_labels`)."""
    schema = schema or LabelSchema.load()
    a = read_labels(path_a, schema)
    b = read_labels(path_b, schema)
    if not a.same_grid(b):
        raise CordmapError(
            f"{path_b} ({'x'.join(map(str, b.shape))} voxels) is not on the grid of {path_a} "
            f"({'x'.join(map(str, a.shape))} voxels); both labellings must be of the same image "
            "- resample one onto the other first"
        )
    return compare_labels(a, b, worst=worst)


def compare_labels(a: LabelVolume, b: LabelVolume, *, worst: int = 5) -> Agreement:
    """Agreement between two label volumes on one grid; labels named by `a.schema`."""
    if not a.same_grid(b):
        raise CordmapError("the two labellings are not on one grid; resample one onto the other")
    confusion, ids = overlap.confusion_matrix(a.array, b.array)
    boxes = _label_boxes(a.array), _label_boxes(b.array)
    labels = [
        _label_agreement(int(label_id), confusion, ids, a, b, boxes) for label_id in ids if label_id
    ]
    structures = [
        _structure_agreement(name, confusion, ids, a.schema)
        for name in dict.fromkeys(label.structure for label in labels)
    ]
    return Agreement(
        kappa_from_confusion(confusion), labels, structures, _worst_slices(a, b, worst)
    )


def kappa_from_confusion(confusion: np.ndarray) -> float:
    """Cohen's kappa of a square confusion matrix (1.0 when both agree on one category)."""
    confusion = np.asarray(confusion, dtype=float)
    total = confusion.sum()
    observed = np.trace(confusion) / total
    expected = float(confusion.sum(axis=1) @ confusion.sum(axis=0)) / total**2
    if expected == 1.0:
        return 1.0
    return float((observed - expected) / (1.0 - expected))


def _binary_scores(
    confusion: np.ndarray, members: np.ndarray
) -> tuple[int, int, float, float, float]:
    """Voxels in A, in B, kappa, Dice and IoU of "one of `members`" (a boolean row mask)."""
    both = int(confusion[np.ix_(members, members)].sum())
    in_a = int(confusion[members].sum())
    in_b = int(confusion[:, members].sum())
    total = int(confusion.sum())
    binary = np.array([[total - in_a - in_b + both, in_b - both], [in_a - both, both]])
    dice, iou = overlap.dice_iou(both, in_a, in_b)
    assert dice is not None and iou is not None  # the members are ids that a or b holds
    return in_a, in_b, kappa_from_confusion(binary), dice, iou


def _structure_agreement(
    structure: str, confusion: np.ndarray, ids: np.ndarray, schema: LabelSchema
) -> StructureAgreement:
    members = np.array([_structure(schema, int(i)) == structure for i in ids])
    return StructureAgreement(structure, *_binary_scores(confusion, members))


def _structure(schema: LabelSchema, label_id: int) -> str | None:
    if label_id == 0:
        return None
    label = schema.labels.get(label_id)
    return label.structure if label else "unknown"


def _label_agreement(
    label_id: int, confusion: np.ndarray, ids: np.ndarray, a: LabelVolume, b: LabelVolume, boxes
) -> LabelAgreement:
    in_a, in_b, kappa, dice, iou = _binary_scores(confusion, ids == label_id)
    mean_mm = hd95_mm = None
    if in_a and in_b:
        box = _union(boxes[0][label_id], boxes[1][label_id], a.shape)
        a_to_b, b_to_a = surface_distances(
            a.array[box] == label_id, b.array[box] == label_id, a.spacing
        )
        mean_mm = float(np.concatenate([a_to_b, b_to_a]).mean())
        hd95_mm = hd95_of(a_to_b, b_to_a)
    label = a.schema.labels.get(label_id)
    return LabelAgreement(
        id=label_id,
        name=label.name if label else f"unknown id {label_id}",
        structure=label.structure if label else "unknown",
        voxels_a=in_a,
        voxels_b=in_b,
        kappa=kappa,
        dice=dice,
        iou=iou,
        mean_surface_mm=mean_mm,
        hd95_mm=hd95_mm,
    )


def _worst_slices(a: LabelVolume, b: LabelVolume, worst: int) -> list[SliceDisagreement]:
    differ = a.array != b.array
    per_slice = differ.sum(axis=(0, 1))
    labelled = ((a.array != 0) | (b.array != 0)).sum(axis=(0, 1))
    order = [int(k) for k in np.argsort(-per_slice, kind="stable")[:worst] if per_slice[k] > 0]
    centre = (np.array(a.shape[:2]) - 1) / 2
    out = []
    for k in order:
        pairs, counts = np.unique(
            np.stack([a.array[:, :, k][differ[:, :, k]], b.array[:, :, k][differ[:, :, k]]]),
            axis=1,
            return_counts=True,
        )
        id_a, id_b = (int(v) for v in pairs[:, int(np.argmax(counts))])
        s_mm = float(a.world([centre[0], centre[1], k])[2])
        out.append(
            SliceDisagreement(
                k,
                s_mm,
                int(per_slice[k]),
                int(labelled[k]),
                _name(a.schema, id_a),
                _name(a.schema, id_b),
            )
        )
    return out


def _name(schema: LabelSchema, label_id: int) -> str:
    if label_id == 0:
        return "background"
    label = schema.labels.get(label_id)
    return label.name if label else f"unknown id {label_id}"


def _label_boxes(array: np.ndarray) -> dict[int, tuple[slice, ...]]:
    """The bounding box of every label id present in `array`."""
    found = ndimage.find_objects(array)
    return {label_id: box for label_id, box in enumerate(found, start=1) if box is not None}


def _union(box_a, box_b, shape) -> tuple[slice, ...]:
    """The box holding both boxes, grown by one voxel (within the array)."""
    return tuple(
        slice(max(min(p.start, q.start) - 1, 0), min(max(p.stop, q.stop) + 1, n))
        for p, q, n in zip(box_a, box_b, shape)
    )
