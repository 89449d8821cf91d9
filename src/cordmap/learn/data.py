"""Training data: cases (images and labels read from case folders by
`cordmap.pipeline.training`, or phantoms) -> normalised arrays on the model's grid, a
seeded train / validation / test split, and the published augmentation.

Arrays stay in canonical RAS+ voxel order (X, Y, Z); the cord runs roughly along Z.
Augmentation as published: rotation about the cord's vertical axis (Z) uniform in
±π/18 and about the left-right axis (X) uniform in ±π/45, in millimetres (so anisotropic
voxels rotate correctly), labels by nearest neighbour; then Gaussian noise N(0, 0.05)
on the normalised intensities. Optional extras (`EXTRA_AUGMENTATIONS`): intensity
(gamma, contrast, brightness), a smooth bias field, elastic deformation, an isotropic
scale (anatomy of other sizes: the cervical cord is wider than the lumbar one), a
larger tilt about the left-right axis (±π/12: lordosis, oblique sagittal slabs) and a
random intensity curve for real images (`remap`: tissues change their order of brightness,
so a real T2 image teaches the cord of a T1-like one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy import ndimage

from cordmap.errors import CordmapError
from cordmap.learn.classes import ClassMapping
from cordmap.learn.model import UNetConfig
from cordmap.learn.synth import bias_field, synthesise
from cordmap.volume import LabelVolume, Volume

#: Target value of a voxel whose class is unknown (left out of the loss).
UNKNOWN = 255
#: Intensity percentiles mapped to 0 and 1 by `normalise`.
NORMALISATION = {"method": "percentile", "low": 0.5, "high": 99.5}
#: Optional augmentations beyond the published ones (`TrainConfig.extra_augmentation`).
EXTRA_AUGMENTATIONS = ("intensity", "bias", "elastic", "scale", "tilt", "remap")
#: Range of the isotropic scale augmentation (content enlarged by up to 40 %).
SCALE_RANGE = (0.9, 1.4)
#: Range of the gamma of the intensity augmentation (log-uniform).
GAMMA_RANGE = (0.6, 1.6)
VERTICAL_RANGE = math.pi / 18
LEFT_RIGHT_RANGE = math.pi / 45
#: Rotation about the left-right axis with the "tilt" extra (lordosis, sagittal obliquity).
TILT_RANGE = math.pi / 12
NOISE_SIGMA = 0.05
#: The "remap" extra: the share of real patches remapped, and the knots of the curve.
REMAP_CHANCE = 0.5
REMAP_KNOTS = 6


@dataclass
class Example:
    """One volume on the model grid: normalised image (float32) and class indices (uint8).

    `unlabelled` lists the classes that a voxel labelled background may also be (the
    classes this example's annotation leaves out: a cord-only mask says nothing about
    CSF); a voxel of class UNKNOWN may be anything and is left out of the loss. Training draws examples in proportion to their `weight`. A synthetic example has no image but a `generation` map (see `learn.synth`): each
    training patch gets a new random image of it.
    """

    name: str
    image: np.ndarray | None
    target: np.ndarray | None  # None: an image to segment, without labels
    spacing: tuple[float, float, float]  # mm, of the model grid
    unlabelled: tuple[int, ...] = ()
    generation: np.ndarray | None = None
    weight: float = 1.0  # how often training draws it, relative to the other examples

    def class_voxels(self) -> dict[int, np.ndarray]:
        """Voxel indices of each foreground class present (computed once)."""
        if not hasattr(self, "_class_voxels"):
            assert self.target is not None  # only training examples are drawn from
            self._class_voxels = {
                int(c): np.argwhere(self.target == c)
                for c in np.unique(self.target)
                if c and c != UNKNOWN
            }
        return self._class_voxels


# -- intensities and grids -----------------------------------------------------------------
def normalise(array: np.ndarray, source: str = "image") -> np.ndarray:
    """Map the 0.5th..99.5th intensity percentiles to 0..1 (float32, not clipped)."""
    array = np.asarray(array, dtype=np.float32)
    if not np.all(np.isfinite(array)):
        raise CordmapError(
            f"{source} has NaN or infinite intensities; re-export the image "
            "from the scanner or replace the bad voxels before using it"
        )
    low, high = np.percentile(array, [NORMALISATION["low"], NORMALISATION["high"]])
    scale = float(high - low) or 1.0
    return (array - low) / scale


def model_shape(volume: Volume, config: UNetConfig) -> tuple[int, int, int]:
    """Shape of `volume` on the model grid: the fixed input shape, or at the fixed spacing."""
    if config.input_shape is not None:
        x, y, z = (int(n) for n in config.input_shape)
        return x, y, z
    assert config.input_spacing_mm is not None  # a configuration sets exactly one
    x, y, z = (
        max(1, round(n * s / t))
        for n, s, t in zip(volume.shape, volume.spacing, config.input_spacing_mm)
    )
    return x, y, z


def resample(array: np.ndarray, shape, order: int) -> np.ndarray:
    """Resize an array to `shape` over the same field of view (voxel edges aligned)."""
    if tuple(array.shape) == tuple(shape):
        return array
    factors = [n / m for n, m in zip(shape, array.shape)]
    out = ndimage.zoom(array, factors, order=order, mode="nearest", grid_mode=True)
    if out.shape != tuple(shape):  # guard against rounding of the output shape
        raise CordmapError(f"internal resampling error: got {out.shape}, wanted {tuple(shape)}")
    return out


def prepare(
    name: str, image: Volume, labels: LabelVolume | None, mapping: ClassMapping, config: UNetConfig
) -> Example:
    """Check, normalise, encode and resample one image (+ labels) onto the model grid."""
    if labels is not None:
        image.require_same_grid(labels, what=f"labels of {name}")
    shape = model_shape(image, config)
    sx, sy, sz = (n * s / m for n, s, m in zip(image.shape, image.spacing, shape))
    data = resample(normalise(image.array, source=name), shape, order=1)
    target = None
    if labels is not None:
        target = resample(mapping.encode(labels, source=f"labels of {name}"), shape, order=0)
    return Example(name, data.astype(np.float32), target, (sx, sy, sz))


def crop_to_labels(example: Example, margin_mm: float = 16.0) -> Example:
    """The example cut to its labelled region plus a margin (validation need not sweep air)."""
    image, target = example.image, example.target
    assert image is not None and target is not None  # validation examples: labelled images
    labelled = np.argwhere(target > 0)
    if not len(labelled):
        return example
    margin = np.ceil(margin_mm / np.array(example.spacing)).astype(int)
    low = np.maximum(labelled.min(axis=0) - margin, 0)
    high = np.minimum(labelled.max(axis=0) + margin + 1, image.shape)
    box = tuple(slice(a, b) for a, b in zip(low, high))
    return replace(example, image=image[box], target=target[box])


# -- split ---------------------------------------------------------------------------------
def split_cases(
    names, seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2
) -> dict[str, list[str]]:
    """A train / val / test split of case names fixed by `seed` (independent of input order).

    At least one case trains; with two or more cases at least one validates.
    """
    names = sorted(set(names))
    if not names:
        raise CordmapError(
            "the training set is empty: pass case folders with labels "
            "(or `phantoms` N to generate training cases)"
        )
    order = list(np.random.default_rng(seed).permutation(len(names)))
    n_val = max(1 if len(names) >= 2 else 0, round(val_fraction * len(names)))
    n_test = min(round(test_fraction * len(names)), len(names) - 1 - n_val)
    picked = [names[i] for i in order]
    return {
        "val": sorted(picked[:n_val]),
        "test": sorted(picked[n_val : n_val + max(0, n_test)]),
        "train": sorted(picked[n_val + max(0, n_test) :]),
    }


# -- sources -------------------------------------------------------------------------------
def phantom_cases(count: int, seed: int = 0) -> list[tuple[str, Volume, LabelVolume]]:
    """`count` varied phantom cases (seeds seed .. seed+count-1) for training.

    Beyond the anatomy each seed varies, each phantom gets its own tissue contrast
    (`phantom_image.varied_contrast`), in-plane pixel (0.5 to 1 mm) and slice thickness
    (1 to 4 mm), so that a network does not learn one acquisition.
    """
    from cordmap.anatomy.phantom import make_phantom
    from cordmap.anatomy.phantom_image import varied_contrast

    cases = []
    for s in range(seed, seed + count):
        rng = np.random.default_rng((s, 7))
        phantom = make_phantom(
            seed=s,
            intensities=varied_contrast(rng),
            pixel_mm=round(float(rng.uniform(0.5, 1.0)), 2),
            slice_thickness=float(rng.choice([1.0, 2.0, 3.0, 4.0])),
        )
        cases.append((f"phantom-{s:03d}", phantom.image, phantom.labels))
    return cases


def gather_cases(cases=(), phantoms: int = 0, phantom_seed: int = 0):
    """(name, image, labels) cases (from case folders: `cordmap.pipeline.training.load_cases`)
    plus generated phantoms, and the one protocol they share."""
    cases = list(cases) + (phantom_cases(phantoms, phantom_seed) if phantoms else [])
    if not cases:
        raise CordmapError(
            "the training set is empty: pass case folders with labels "
            "or `phantoms` N to generate training cases"
        )
    schemas = {(labels.schema.name, labels.schema.version) for _, _, labels in cases}
    if len(schemas) > 1:
        raise CordmapError(
            f"the cases use different protocols {sorted(schemas)}; train on "
            "cases annotated with one protocol"
        )
    names = [name for name, _, _ in cases]
    if len(set(names)) != len(names):
        raise CordmapError(
            "two training cases share a folder name; give each case folder a distinct name"
        )
    return cases, cases[0][2].schema


# -- augmentation --------------------------------------------------------------------------
def rotation(about_vertical: float, about_left_right: float) -> np.ndarray:
    """3x3 rotation (RAS+ mm): first about the left-right axis X, then about the vertical Z."""
    cz, sz = math.cos(about_vertical), math.sin(about_vertical)
    cx, sx = math.cos(about_left_right), math.sin(about_left_right)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return rz @ rx


def rotate(array: np.ndarray, matrix: np.ndarray, spacing, order: int) -> np.ndarray:
    """Transform an array's content by the linear map `matrix` (in mm, e.g. a rotation)
    about the array's centre."""
    scale = np.diag(spacing)
    # output voxel o shows input voxel i = S^-1 M^-1 S (o - c) + c
    inverse = np.linalg.inv(scale) @ np.linalg.inv(matrix) @ scale
    centre = (np.array(array.shape) - 1) / 2
    offset = centre - inverse @ centre
    return ndimage.affine_transform(array, inverse, offset=offset, order=order, mode="nearest")


def random_rotation(rng: np.random.Generator, tilt: bool = False) -> np.ndarray:
    """The published rotation; with `tilt`, up to TILT_RANGE about the left-right axis."""
    left_right = TILT_RANGE if tilt else LEFT_RIGHT_RANGE
    return rotation(
        rng.uniform(-VERTICAL_RANGE, VERTICAL_RANGE), rng.uniform(-left_right, left_right)
    )


def crop_patch(
    example: Example,
    patch,
    rng: np.random.Generator,
    foreground: float,
    augment: bool,
    extra: tuple[str, ...] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """A random training patch, centred with probability `foreground` on a voxel of a
    foreground class drawn uniformly among those present (so a thin cord or root is
    centred as often as a vertebra), else anywhere.

    With `augment`, a margin around the patch is rotated before the centre is cut out, so
    the rotated patch holds no padding from the rotation. `extra` adds any of
    EXTRA_AUGMENTATIONS: elastic deformation (with the rotation, labels nearest
    neighbour), an isotropic scale in SCALE_RANGE (with the rotation), a smooth
    multiplicative bias field, an intensity change (gamma in GAMMA_RANGE, then contrast
    and brightness) and, for a real image, a random intensity curve (`random_remap`, on
    REMAP_CHANCE of the patches).
    """
    check_augmentations(extra)
    assert example.target is not None  # training examples are labelled
    patch = np.array(patch)
    margin = np.ceil(patch * 0.25).astype(int) if augment else np.zeros(3, int)
    region = patch + 2 * margin
    classes = example.class_voxels()
    if classes and rng.random() < foreground:
        voxels = classes[list(classes)[rng.integers(len(classes))]]
        centre = voxels[rng.integers(len(voxels))]
    else:
        centre = np.array([rng.integers(n) for n in example.target.shape])
    synthetic = example.generation is not None
    if example.generation is not None:
        image = _window(example.generation, centre, region, fill=0)
    else:
        assert example.image is not None  # an example has an image or a generation map
        image = _window(example.image, centre, region, fill=float(example.image.min()))
    target = _window(example.target, centre, region, fill=0)
    if augment:
        matrix = random_rotation(rng, tilt="tilt" in extra)
        if "scale" in extra:
            matrix = matrix * rng.uniform(*SCALE_RANGE)
        image = rotate(image, matrix, example.spacing, order=0 if synthetic else 1)
        target = rotate(target, matrix, example.spacing, order=0)
        if "elastic" in extra:
            image, target = elastic(image, target, rng, example.spacing, synthetic)
    inner = tuple(slice(m, m + p) for m, p in zip(margin, patch))
    image, target = image[inner], target[inner]
    if synthetic:
        image = synthesise(image, rng, example.spacing)
    elif augment and "remap" in extra and rng.random() < REMAP_CHANCE:
        image = random_remap(image, rng)
    if augment:
        if "bias" in extra:
            image = image * bias_field(image.shape, rng)
        if "intensity" in extra:
            gamma = math.exp(rng.uniform(*np.log(GAMMA_RANGE)))
            image = np.clip(image, 0, None) ** gamma
            image = image * rng.uniform(0.8, 1.2) + rng.uniform(-0.1, 0.1)
        image = image + rng.normal(0.0, NOISE_SIGMA, image.shape).astype(np.float32)
    return image.astype(np.float32), target


def random_remap(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Normalised intensities passed through a random curve: piecewise linear over [0, 1]
    through REMAP_KNOTS levels drawn uniformly, the lowest kept under 0.1 (air stays dark).
    The curve need not rise, so tissues swap their order of brightness as in the
    synthetic images (on a T2 image: the CSF dark and the cord bright, as on T1), while the
    real image's texture, noise and partial volumes stay."""
    levels = rng.uniform(0.0, 1.0, REMAP_KNOTS)
    levels[0] = rng.uniform(0.0, 0.1)
    knots = np.linspace(0.0, 1.0, REMAP_KNOTS)
    return np.interp(image, knots, levels).astype(np.float32)  # beyond [0, 1]: the end levels


def check_augmentations(extra) -> None:
    """Refuse names that are not EXTRA_AUGMENTATIONS."""
    unknown = sorted(set(extra) - set(EXTRA_AUGMENTATIONS))
    if unknown:
        raise CordmapError(f"unknown augmentations {unknown}; use {', '.join(EXTRA_AUGMENTATIONS)}")


def elastic(
    image: np.ndarray,
    target: np.ndarray,
    rng: np.random.Generator,
    spacing,
    labels_only: bool = False,
    magnitude_mm: float = 2.0,
    smoothness_mm: float = 8.0,
):
    """The same smooth random deformation (about `magnitude_mm`) of image and labels
    (`labels_only`: the image is a label map too, interpolated by nearest neighbour)."""
    grid = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in image.shape], indexing="ij")
    coordinates = []
    for axis, s in enumerate(spacing):
        field = ndimage.gaussian_filter(
            rng.normal(size=image.shape), [smoothness_mm / t for t in spacing]
        )
        field *= magnitude_mm / s / (np.abs(field).max() or 1.0)
        coordinates.append(grid[axis] + field)
    return (
        ndimage.map_coordinates(image, coordinates, order=0 if labels_only else 1, mode="nearest"),
        ndimage.map_coordinates(target, coordinates, order=0, mode="nearest"),
    )


def _window(array: np.ndarray, centre, size, fill) -> np.ndarray:
    """The `size` window of `array` centred on `centre`, padded with `fill` outside."""
    start = np.array(centre) - np.array(size) // 2
    out = np.full(tuple(size), fill, dtype=array.dtype)
    src = tuple(slice(max(0, s), min(n, s + w)) for s, w, n in zip(start, size, array.shape))
    dst = tuple(slice(a.start - s, a.stop - s) for a, s in zip(src, start))
    out[dst] = array[src]
    return out


def unlabelled_bits(example: Example) -> int:
    """The example's `unlabelled` classes as a bit mask (bit c: class c), for batching."""
    return sum(1 << c for c in example.unlabelled)


class PatchDataset(torch.utils.data.Dataset):
    """`samples` random (augmented) patches per epoch; seeded by (seed, epoch, index).

    Items: image (1, X, Y, Z), target (X, Y, Z) and the example's `unlabelled_bits`.
    """

    def __init__(
        self,
        examples: list[Example],
        patch,
        samples: int,
        seed: int,
        augment: bool = True,
        foreground: float = 0.67,
        extra: tuple[str, ...] = (),
    ):
        if not examples:
            raise CordmapError("the training set is empty after the split; add cases")
        self.examples, self.patch, self.samples = examples, tuple(patch), samples
        self.seed, self.augment, self.foreground, self.extra = seed, augment, foreground, extra
        self.epoch = 0
        weights = np.array([e.weight for e in examples], dtype=float)
        self.chances = weights / weights.sum()

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, index: int):
        rng = np.random.default_rng((self.seed, self.epoch, index))
        example = self.examples[rng.choice(len(self.examples), p=self.chances)]
        image, target = crop_patch(
            example, self.patch, rng, self.foreground, self.augment, self.extra
        )
        return (
            torch.from_numpy(image[None]),
            torch.from_numpy(target.astype(np.int64)),
            unlabelled_bits(example),
        )


class VolumeDataset(torch.utils.data.Dataset):
    """Whole volumes on the model grid (for validation by sliding window)."""

    def __init__(self, examples: list[Example]):
        if any(e.image is None for e in examples):
            raise CordmapError("synthetic examples cannot validate: validate on images")
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int):
        example = self.examples[index]
        assert example.image is not None and example.target is not None  # labelled images
        return (
            torch.from_numpy(example.image[None]),
            torch.from_numpy(example.target.astype(np.int64)),
            unlabelled_bits(example),
        )
