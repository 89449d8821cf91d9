"""Images of random contrast and resolution made from label maps, as SynthSeg does for the
brain (Billot et al., Medical Image Analysis 2023): a network trained on them cannot rely
on one contrast, so it segments T1, T2 and other weightings alike.

A *generation map* gives each voxel a tissue index: every structure of a label map and
every unlabelled tissue around it its own (`generation_map`). Each call of `synthesise`
draws anew:

- a mean intensity per tissue, uniform in 0..1, and a spread uniform in 0..SPREAD, so any
  tissue may be brighter or darker than any other (the cord brighter than CSF as on T1, or
  darker as on T2);
- with probability THICK_SLICE_CHANCE a thick-slice acquisition: a slice thickness uniform
  in SLICE_RANGE mm along one axis (left-right: a sagittal series; superior-inferior: an
  axial one; anterior-posterior: coronal), blurred by the slice profile (Gaussian of
  FWHM = thickness), sampled at that spacing and brought back to the model grid (linear);
- a smooth multiplicative bias field (about ±BIAS_STRENGTH in the exponent).

Arrays are on the model grid in canonical RAS+ order (X left-right, Y, Z superior).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SPREAD = 0.1
THICK_SLICE_CHANCE = 0.8
SLICE_RANGE = (1.5, 6.0)
#: Chance of each slice axis (X: sagittal, Y: coronal, Z: axial).
SLICE_AXIS_CHANCE = (0.5, 0.1, 0.4)
BIAS_STRENGTH = 0.5
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def generation_map(labels: np.ndarray, tissues: np.ndarray | None = None) -> np.ndarray:
    """Tissue indices (int16, 0..n-1, dense) for `synthesise`: one per label id, and where
    the label is 0, one per value of `tissues` (e.g. fat, muscle, air around the spine)."""
    labels = np.asarray(labels).astype(np.int32)
    if tissues is not None:
        offset = int(labels.max()) + 1
        labels = np.where(labels > 0, labels, offset + np.asarray(tissues, dtype=np.int32))
    _, dense = np.unique(labels, return_inverse=True)
    return dense.reshape(labels.shape).astype(np.int16)


def synthesise(generation: np.ndarray, rng: np.random.Generator, spacing) -> np.ndarray:
    """A random image (float32, about 0..1) of a generation map with voxel `spacing` mm."""
    count = int(generation.max()) + 1
    means = rng.uniform(0.0, 1.0, count).astype(np.float32)
    spreads = rng.uniform(0.0, SPREAD, count).astype(np.float32)
    image = means[generation] + spreads[generation] * rng.standard_normal(
        generation.shape, dtype=np.float32
    )
    if rng.random() < THICK_SLICE_CHANCE:
        axis = int(rng.choice(3, p=SLICE_AXIS_CHANCE))
        image = thick_slices(image, axis, rng.uniform(*SLICE_RANGE), spacing[axis])
    return (image * bias_field(image.shape, rng, BIAS_STRENGTH)).astype(np.float32)


def thick_slices(
    image: np.ndarray, axis: int, thickness_mm: float, spacing_mm: float
) -> np.ndarray:
    """`image` as acquired with slices `thickness_mm` thick (and apart) along `axis`,
    back on its own grid: slice-profile blur, sampling at the slice spacing, linear
    interpolation."""
    step = thickness_mm / spacing_mm
    if step <= 1.0:
        return image
    sigma = [0.0, 0.0, 0.0]
    sigma[axis] = step / FWHM_PER_SIGMA
    blurred = ndimage.gaussian_filter(image, sigma, mode="nearest")
    n = image.shape[axis]
    slices = np.arange(0.0, n - 0.5, step) + (n - 1 - np.arange(0.0, n - 0.5, step)[-1]) / 2
    sampled = np.take(blurred, np.round(slices).astype(int), axis=axis)
    # back to every voxel: linear between slice centres, constant beyond the outer ones
    positions = np.interp(np.arange(n), slices, np.arange(len(slices)))
    coordinates = list(
        np.meshgrid(*[np.arange(m, dtype=np.float32) for m in image.shape], indexing="ij")
    )
    coordinates[axis] = np.broadcast_to(
        positions.reshape([-1 if a == axis else 1 for a in range(3)]), image.shape
    ).astype(np.float32)
    return ndimage.map_coordinates(sampled, coordinates, order=1, mode="nearest")


def bias_field(shape, rng: np.random.Generator, strength: float = 0.3) -> np.ndarray:
    """A smooth multiplicative field exp(quadratic polynomial), within about ±`strength`."""
    axes = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    terms = [*axes, *(a * b for i, a in enumerate(axes) for b in axes[i:])]
    log_field = sum(rng.uniform(-1, 1) * term for term in terms) / len(terms)
    return np.exp(strength * log_field).astype(np.float32)
