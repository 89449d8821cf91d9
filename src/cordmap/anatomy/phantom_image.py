"""T2-weighted intensities of the phantom: tissue contrast, a smooth bias field, Rician noise.

Contrast follows a fast spin-echo T2 image of the spine: CSF brightest, fat and discs
bright, cord and roots grey, muscle and the marrow of the vertebrae darker, flowing blood
and air dark. The receive coil's smooth bias is a multiplicative field exp(P(x, y, z)),
P a quadratic with coefficients drawn from the seed (about +-20 % over the field of
view); magnitude noise is Rician: |signal + n1 + i n2| with n1, n2 ~ N(0, sigma).

`varied_contrast` draws other tissue intensities around these (for training a network
that must not depend on one scanner's contrast, as in domain randomisation).
"""

from __future__ import annotations

import numpy as np

from cordmap.anatomy.phantom_geometry import PhantomParameters
from cordmap.anatomy.phantom_sampling import Grid, Tissue

#: Noise-free T2 intensity of each tissue (arbitrary units, stored as uint16).
T2_INTENSITY = {
    Tissue.AIR: 0.0,
    Tissue.SOFT: 480.0,
    Tissue.FAT: 950.0,
    Tissue.MUSCLE: 300.0,
    Tissue.VESSEL: 70.0,
    Tissue.BONE: 260.0,
    Tissue.DISC: 720.0,
    Tissue.CSF: 1500.0,
    Tissue.ROOT: 560.0,
    Tissue.CORD: 560.0,
}
BIAS_SCALE = 0.12  # amplitude of each bias-field term


def varied_contrast(rng: np.random.Generator, spread: float = 0.6) -> dict:
    """T2 intensities each scaled by exp(U(-spread, spread)), air kept dark.

    With the default spread the cord stays darker than CSF (ratio 0.1 to 1.2 times the
    default 0.37) while its contrast to fat, muscle, bone and discs varies widely.
    """
    return {
        kind: value * float(np.exp(rng.uniform(-spread, spread)))
        for kind, value in T2_INTENSITY.items()
    }


def tissue_intensity(tissue: np.ndarray, intensities: dict | None = None) -> np.ndarray:
    """Noise-free intensity (float32) of a tissue map: T2_INTENSITY or `intensities`."""
    lut = np.zeros(max(Tissue) + 1, dtype=np.float32)
    for kind, value in (intensities or T2_INTENSITY).items():
        lut[kind] = value
    return lut[tissue]


def t2_image(intensity: np.ndarray, grid: Grid, parameters: PhantomParameters) -> np.ndarray:
    """The uint16 image of noise-free intensities on `grid`: bias field and Rician noise."""
    image = intensity.astype(np.float32, copy=True)
    image *= bias_field(grid, parameters.bias)
    sigma = np.float32(parameters.noise * T2_INTENSITY[Tissue.CSF])
    rng = np.random.default_rng([parameters.seed, 3, *grid.shape])
    real = rng.standard_normal(image.shape, dtype=np.float32)
    real *= sigma
    real += image
    imaginary = rng.standard_normal(image.shape, dtype=np.float32)
    imaginary *= sigma
    magnitude = np.hypot(real, imaginary, out=real)
    np.rint(magnitude, out=magnitude)
    np.clip(magnitude, 0, 65535, out=magnitude)
    return magnitude.astype(np.uint16)


def bias_field(grid: Grid, coefficients) -> np.ndarray:
    """exp(P) with P = c . (x, y, z, x^2, y^2, x y) / 100 mm scales, shape of the grid."""
    c = BIAS_SCALE * np.asarray(coefficients, dtype=np.float32)
    x = (grid.x() / 100.0).astype(np.float32)[:, None, None]
    y, z = (a.astype(np.float32)[None] for a in grid.yz())
    y = (y - y.mean()) / 100.0
    z = (z - z.mean()) / 200.0
    exponent = (c[0] * x + c[3] * x * x) + (c[1] * y + c[2] * z + c[4] * y * y) + c[5] * x * y
    return np.exp(exponent, out=exponent)
