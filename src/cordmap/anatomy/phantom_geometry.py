"""Analytic anatomy of the lumbosacral phantom, in coordinates that follow the spinal canal.

All anatomy is defined in curvilinear coordinates (u, v, s) attached to the centreline of
the spinal canal, a planar curve in the mid-sagittal plane x = 0 of world RAS+ mm:

* ``s``: arc length (mm) along the centreline, 0 at the superior endplate of T9 (measured
  where the centreline crosses it), increasing caudally (negative above T9);
* ``u``: mm towards the patient's right (world +x);
* ``v``: mm along the centreline's normal N(s) in the sagittal plane, towards anterior.

The world point of (u, v, s) is ``C(s) + u * x + v * N(s)``. The curve's shape (thoracic
kyphosis, lumbar lordosis, sacral kyphosis) is given by its curvature kappa(s); the
volume element is ``(1 - kappa(s) v) du dv ds``. The cord is centred in the canal, so
its centreline is the canal centreline and arc length along the cord equals ``s``.
In these coordinates every structure is a simple shape (elliptic cylinders, rings,
boxes, tubes), which makes the ground truth exact: a voxel's label is the shape that
contains its centre.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from cordmap.protocol.levels import pam50_segment, totalspineseg_vertebra

#: Vertebrae modelled, from the skull down ("S": the S1 part of the sacrum).
VERTEBRAE = ("T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S")
#: Cord segments modelled (PAM50 17..30).
SEGMENTS = ("T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1", "S2", "S3", "S4", "S5")
#: The lumbosacral enlargement, by segments (first, last).
ENLARGEMENT = ("L1", "S2")

#: Segment lengths (mm) of the PAM50 template (PAM50_spinal_levels, 0.5 mm slices); PAM50's
#: last 3.5 mm (S5 and the tip) become S5 (4 mm, so that it shows on 3 mm slices) and
#: "Co", the conus tip region (label 60).
PAM50_SEGMENT_LENGTH = {
    "T9": 24.5,
    "T10": 22.0,
    "T11": 20.5,
    "T12": 18.5,
    "L1": 17.0,
    "L2": 13.0,
    "L3": 11.5,
    "L4": 10.5,
    "L5": 8.0,
    "S1": 7.0,
    "S2": 7.5,
    "S3": 6.5,
    "S4": 6.0,
    "S5": 4.0,
    "Co": 5.0,
}
#: Adult vertebral body heights (mm); the sacrum entry is its modelled S1 part.
BODY_HEIGHT = {
    "T9": 21.0,
    "T10": 23.0,
    "T11": 25.0,
    "T12": 25.0,
    "L1": 25.0,
    "L2": 26.0,
    "L3": 27.0,
    "L4": 27.0,
    "L5": 26.0,
    "S": 30.0,
}
#: Disc heights (mm), by the vertebra above.
DISC_HEIGHT = {
    "T9": 5.0,
    "T10": 5.5,
    "T11": 6.0,
    "T12": 7.0,
    "L1": 8.0,
    "L2": 9.0,
    "L3": 10.0,
    "L4": 11.0,
    "L5": 11.0,
}
#: Vertebral body half-width and half-depth (mm).
BODY_SEMI_AXES = {
    "T9": (15, 13),
    "T10": (16, 13.5),
    "T11": (17, 14),
    "T12": (18, 14.5),
    "L1": (20, 15),
    "L2": (21, 15.5),
    "L3": (22, 16),
    "L4": (23, 16.5),
    "L5": (24, 17),
    "S": (24, 16),
}
#: Bony canal half-width and half-depth (mm) at mid-vertebra.
CANAL_SEMI_AXES = {
    "T9": (8.5, 8.0),
    "T10": (8.5, 8.0),
    "T11": (9.0, 8.3),
    "T12": (9.8, 8.8),
    "L1": (10.5, 9.0),
    "L2": (11.0, 9.0),
    "L3": (11.5, 9.0),
    "L4": (12.0, 9.0),
    "L5": (12.5, 9.0),
    "S": (12.0, 7.0),
}
#: Transverse process length (mm) beyond the neural arch.
TRANSVERSE_LENGTH = {
    "T9": 18,
    "T10": 18,
    "T11": 14,
    "T12": 10,
    "L1": 14,
    "L2": 17,
    "L3": 22,
    "L4": 18,
    "L5": 16,
}
ARCH_THICKNESS = 4.5  # mm, pedicles and laminae
EPIDURAL_FAT = 1.5  # mm between the bony canal and the dural sac
SPINOUS_LENGTH = 28.0  # mm
ROOT_RADIUS = {"dorsal": 0.75, "ventral": 0.55}  # mm
CONUS_EXPONENT = 0.5  # shape of the conus: radius ~ cos(pi/2 x) ** CONUS_EXPONENT
CURVE_STEP = 0.05  # mm, table step of the centreline


@dataclass
class PhantomParameters:
    """Everything that defines one phantom's anatomy (drawn from the seed, JSON-ready)."""

    seed: int
    slice_thickness: float  # mm, of the default axial acquisition
    body_height: dict  # vertebra -> mm
    disc_height: dict  # vertebra above -> mm
    segment_length: dict  # segment (and "Co") -> mm
    conus_tip_in_l1: float  # tip position in L1: 0 superior endplate, 1 inferior endplate
    enlargement_area_ratio: float  # max cross-sectional area / thoracic area
    enlargement_peak: float  # peak position from L4 top + 5 mm (0) to S1 bottom - 4 mm (1)
    enlargement_onset_mm: float  # start of the swelling relative to the top of L2 segment
    cord_half_width: float  # mm, thoracic cord
    cord_half_depth: float  # mm, thoracic cord
    size: float  # scale of bony cross-sections
    kyphosis_deg: float  # T9..T12 part of the thoracic kyphosis
    lordosis_deg: float  # L1..S1
    sacral_deg: float  # sacral kyphosis over the S1 region
    bias: list  # coefficients of the smooth bias field
    noise: float  # Rician noise sigma as a fraction of the CSF intensity

    def to_dict(self) -> dict:
        return asdict(self)


def draw_parameters(seed: int, slice_thickness: float | None = 3.0) -> PhantomParameters:
    """The anatomy of phantom `seed`: population-plausible variation around adult defaults."""
    rng = np.random.default_rng([int(seed), 2])
    if slice_thickness is None:
        slice_thickness = float(rng.choice([2.5, 3.0, 3.5, 4.0]))
    stature = rng.uniform(0.94, 1.06)
    cord_scale = stature * rng.uniform(0.96, 1.04)  # longer spines carry longer cords
    return PhantomParameters(
        seed=int(seed),
        slice_thickness=float(slice_thickness),
        body_height={
            v: round(h * stature * rng.uniform(0.96, 1.04), 3) for v, h in BODY_HEIGHT.items()
        },
        disc_height={
            v: round(h * stature * rng.uniform(0.85, 1.15), 3) for v, h in DISC_HEIGHT.items()
        },
        segment_length={
            g: round(n * cord_scale * rng.uniform(0.92, 1.08), 3)
            for g, n in PAM50_SEGMENT_LENGTH.items()
        },
        conus_tip_in_l1=round(float(np.clip(rng.normal(1.2, 0.3), 0.45, 1.85)), 4),
        enlargement_area_ratio=round(rng.uniform(1.25, 1.65), 4),
        enlargement_peak=round(rng.uniform(0.0, 1.0), 4),
        enlargement_onset_mm=round(rng.uniform(-8.0, 4.0), 3),
        cord_half_width=round(4.1 * rng.uniform(0.93, 1.07), 3),
        cord_half_depth=round(2.9 * rng.uniform(0.93, 1.07), 3),
        size=round(stature * rng.uniform(0.95, 1.05), 4),
        kyphosis_deg=round(rng.uniform(8.0, 20.0), 3),
        lordosis_deg=round(rng.uniform(30.0, 60.0), 3),
        sacral_deg=round(rng.uniform(10.0, 25.0), 3),
        bias=[round(float(b), 4) for b in rng.uniform(-1.0, 1.0, 6)],
        noise=round(rng.uniform(0.015, 0.035), 4),
    )


def mean_parameters(slice_thickness: float = 3.0) -> PhantomParameters:
    """The average anatomy: the middle of every range that `draw_parameters` draws from."""
    return PhantomParameters(
        seed=0,
        slice_thickness=float(slice_thickness),
        body_height=dict(BODY_HEIGHT),
        disc_height=dict(DISC_HEIGHT),
        segment_length=dict(PAM50_SEGMENT_LENGTH),
        conus_tip_in_l1=1.2,
        enlargement_area_ratio=1.45,
        enlargement_peak=0.5,
        enlargement_onset_mm=-2.0,
        cord_half_width=4.1,
        cord_half_depth=2.9,
        size=1.0,
        kyphosis_deg=14.0,
        lordosis_deg=45.0,
        sacral_deg=17.5,
        bias=[0.0] * 6,
        noise=0.025,
    )


@dataclass(frozen=True)
class Interval:
    """A structure's extent along s (mm)."""

    name: str
    label_id: int
    superior: float
    inferior: float

    @property
    def length(self) -> float:
        return self.inferior - self.superior

    @property
    def middle(self) -> float:
        return 0.5 * (self.superior + self.inferior)


@dataclass(frozen=True)
class Root:
    """A nerve root: a tube of `radius` mm around a polyline in (u, v, s)."""

    label_id: int
    level: str
    side: str  # "left" / "right"
    kind: str  # "dorsal" / "ventral"
    radius: float
    points: np.ndarray  # (n, 3) u, v, s
    exit: str  # foramen ("L1-L2") or "sacral canal"


class PhantomGeometry:
    """The analytic anatomy of one phantom, built from its parameters."""

    def __init__(self, parameters: PhantomParameters):
        from cordmap.anatomy.phantom_roots import build_roots

        self.parameters = p = parameters
        self.vertebrae, self.discs = self._column(p)
        self.segments, self.conus = self._cord_levels(p)
        self.tip = self.conus.inferior
        self._cord_profile(p)
        self._curve(p)
        self.model_top = self.vertebrae[0].superior
        self.model_bottom = self.vertebrae[-1].inferior
        self.sac_end = self.vertebrae[-1].superior + 0.7 * self.vertebrae[-1].length
        self.roots = build_roots(self)

    # -- layout along s ----------------------------------------------------------------
    @staticmethod
    def _column(p):
        vertebrae, discs, s = [], [], 0.0
        for i, name in enumerate(VERTEBRAE):
            h = p.body_height[name]
            vertebrae.append(Interval(name, totalspineseg_vertebra(name), s, s + h))
            s += h
            if i + 1 < len(VERTEBRAE):
                below = VERTEBRAE[i + 1]
                d = p.disc_height[name]
                discs.append(
                    Interval(f"{name}-{below}", totalspineseg_vertebra(below) + 50, s, s + d)
                )
                s += d
        return vertebrae, discs

    def _cord_levels(self, p):
        l1 = self.vertebra("L1")
        tip = l1.superior + p.conus_tip_in_l1 * l1.length
        conus = Interval("conus", 60, tip - p.segment_length["Co"], tip)
        segments, s = [], conus.superior
        for name in reversed(SEGMENTS):
            length = p.segment_length[name]
            segments.append(Interval(name, 100 + pam50_segment(name), s - length, s))
            s -= length
        return segments[::-1], conus

    def vertebra(self, name: str) -> Interval:
        return next(v for v in self.vertebrae if v.name == name)

    def segment(self, name: str) -> Interval:
        return next(g for g in self.segments if g.name == name)

    def level_at(self, s: float) -> str:
        """The vertebra ("L1") or disc ("T12-L1") at arc length `s`."""
        for item in (*self.vertebrae, *self.discs):
            if item.superior <= s <= item.inferior:
                return item.name
        return "above T9" if s < self.model_top else "below S1"

    def segment_at(self, s: float) -> str:
        for item in (*self.segments, self.conus):
            if item.superior <= s <= item.inferior:
                return item.name
        return "cord above T9" if s < self.segments[0].superior else "below the conus"

    # -- the cord's cross-section --------------------------------------------------------
    def _cord_profile(self, p):
        first, last = self.segment("L4").superior + 5.0, self.segment("S1").inferior - 4.0
        self.peak = first + p.enlargement_peak * (last - first)
        self.onset = self.segment("L2").superior + p.enlargement_onset_mm
        self.peak_gain = float(np.sqrt(p.enlargement_area_ratio))

    def cord_gain(self, s) -> np.ndarray:
        """Scale of the cord's cross-section at `s` (1 thoracic, 0 beyond the tip)."""
        s = np.asarray(s, dtype=float)
        above = np.clip((s - self.peak) / (self.peak - self.onset), -1.0, 0.0)
        swell = 1.0 + (self.peak_gain - 1.0) * 0.5 * (1.0 + np.cos(np.pi * above))
        below = np.clip((s - self.peak) / (self.tip - self.peak), 0.0, 1.0)
        taper = self.peak_gain * np.cos(0.5 * np.pi * below) ** CONUS_EXPONENT
        return np.where(s <= self.peak, swell, np.where(s < self.tip, taper, 0.0))

    def cord_semi_axes(self, s) -> tuple[np.ndarray, np.ndarray]:
        """Half-width (u) and half-depth (v) of the cord's elliptic cross-section (mm)."""
        g = self.cord_gain(s)
        return self.parameters.cord_half_width * g, self.parameters.cord_half_depth * g

    def cord_area(self, s) -> np.ndarray:
        a, b = self.cord_semi_axes(s)
        return np.pi * a * b

    def cord_volume(self, superior: float, inferior: float) -> float:
        """Exact cord volume (mm³) between two arc lengths: the integral of its area.

        The volume element's curvature term integrates to zero over a cross-section
        centred on the centreline, so the volume is that of the straightened cord.
        """
        n = max(int((inferior - superior) / 0.01), 2) | 1
        s = np.linspace(superior, inferior, n)
        return float(_simpson(self.cord_area(s), s))

    # -- the canal ------------------------------------------------------------------------
    def canal_semi_axes(self, s) -> tuple[np.ndarray, np.ndarray]:
        """Half-width and half-depth of the bony canal at `s` (interpolated between vertebrae)."""
        mids = [v.middle for v in self.vertebrae]
        size = self.parameters.size
        a = np.interp(s, mids, [CANAL_SEMI_AXES[v.name][0] * size for v in self.vertebrae])
        b = np.interp(s, mids, [CANAL_SEMI_AXES[v.name][1] * size for v in self.vertebrae])
        return a, b

    def sac_semi_axes(self, s) -> tuple[np.ndarray, np.ndarray]:
        """Half-width and half-depth of the dural sac (CSF); zero below its rounded end."""
        a, b = self.canal_semi_axes(s)
        end = np.clip((np.asarray(s, dtype=float) - (self.sac_end - 10.0)) / 10.0, 0.0, 1.0)
        scale = np.sqrt(np.clip(1.0 - end**2, 0.0, 1.0))
        return (a - EPIDURAL_FAT) * scale, (b - EPIDURAL_FAT) * scale

    # -- the centreline -------------------------------------------------------------------
    def curvature(self, s) -> np.ndarray:
        """Curvature (1/mm) of the centreline; positive bends it anteriorly going down."""
        p, s = self.parameters, np.asarray(s, dtype=float)
        l1, sac = self.vertebra("L1").superior, self.vertebra("S").superior
        return (
            _window(s, -40.0, l1, np.radians(p.kyphosis_deg))
            - _window(s, l1, sac, np.radians(p.lordosis_deg))
            + _window(s, sac, sac + 80.0, np.radians(p.sacral_deg))
        )

    def _curve(self, p):
        s = np.arange(-400.0, self.vertebrae[-1].inferior + 250.0, CURVE_STEP)
        kappa = self.curvature(s)
        theta = _cumtrapz(kappa, s)
        inside = (s >= 0.0) & (s <= self.vertebrae[-1].inferior)
        theta -= theta[inside].mean()  # the spine as a whole runs along the scanner's z
        y = _cumtrapz(np.sin(theta), s)
        z = _cumtrapz(-np.cos(theta), s)
        y -= np.interp(0.0, s, y)
        z -= np.interp(0.0, s, z)
        self._s, self._theta, self._y, self._z = s, theta, y, z

    def centre(self, s) -> np.ndarray:
        """World RAS+ mm of the centreline at arc length(s) `s`, shape (..., 3)."""
        s = np.asarray(s, dtype=float)
        return np.stack(
            [np.zeros_like(s), np.interp(s, self._s, self._y), np.interp(s, self._s, self._z)],
            axis=-1,
        )

    def frame(self, s) -> tuple[np.ndarray, np.ndarray]:
        """Unit tangent T (caudal) and normal N (anterior) at `s`, each (..., 3)."""
        theta = np.interp(np.asarray(s, dtype=float), self._s, self._theta)
        zero = np.zeros_like(theta)
        tangent = np.stack([zero, np.sin(theta), -np.cos(theta)], axis=-1)
        normal = np.stack([zero, np.cos(theta), np.sin(theta)], axis=-1)
        return tangent, normal

    def world(self, u, v, s) -> np.ndarray:
        """World RAS+ mm of curvilinear points (u, v, s)."""
        u, v, s = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (u, v, s)))
        _, normal = self.frame(s)
        point = self.centre(s) + v[..., None] * normal
        point[..., 0] += u
        return point

    def curvilinear(self, y, z, iterations: int = 6) -> tuple[np.ndarray, np.ndarray]:
        """(v, s) of sagittal-plane points (y, z): the foot of the normal on the centreline."""
        y, z = np.broadcast_arrays(np.asarray(y, dtype=float), np.asarray(z, dtype=float))
        s = np.interp(-z, -self._z, self._s)  # z falls monotonically along s
        for _ in range(iterations):
            theta = np.interp(s, self._s, self._theta)
            dy, dz = y - np.interp(s, self._s, self._y), z - np.interp(s, self._s, self._z)
            along = dy * np.sin(theta) - dz * np.cos(theta)
            v = dy * np.cos(theta) + dz * np.sin(theta)
            s = s + along / np.maximum(1.0 - self.curvature(s) * v, 0.3)
            s = np.clip(s, self._s[0], self._s[-1])
        theta = np.interp(s, self._s, self._theta)
        dy, dz = y - np.interp(s, self._s, self._y), z - np.interp(s, self._s, self._z)
        return dy * np.cos(theta) + dz * np.sin(theta), s


def _window(s, start, stop, total):
    """A raised-cosine bump on [start, stop] whose integral is `total`."""
    width = stop - start
    x = np.clip((s - start) / width, 0.0, 1.0)
    return np.where((s > start) & (s < stop), total / width * (1.0 - np.cos(2 * np.pi * x)), 0.0)


def _cumtrapz(f, x):
    out = np.zeros_like(x)
    out[1:] = np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(x))
    return out


def _simpson(f, x):
    h = x[1] - x[0]
    return h / 3.0 * (f[0] + f[-1] + 4.0 * f[1:-1:2].sum() + 2.0 * f[2:-1:2].sum())
