"""What each contact of a paddle lies over: the segment and side of the dorsal root entry
zone, its lateral offsets, and the thickness of the dorsal CSF between it and the cord.

The paddle lies on the dura over the dorsal midline, centred on the centreline; a contact
of row offset `o` and lateral position `x` (mm, + = the patient's right) of an array whose
rostral end is at arc length `a` sits at arc length `s = a + o`, `x` mm along the
centreline frame's right vector (`Centreline.frame`).

- **Entry zones.** The dorsal rootlets of a segment enter the cord along its two
  dorsolateral sulci over the segment's whole extent. With the cord's section at `s` taken
  as the ellipse of half-width `w(s)` and half-depth `d(s)` (`CordGeometry.half_width`,
  `half_depth`), a sulcus is the point at parametric angle θ = `ENTRY_ZONE_ANGLE_DEG` from
  the lateral axis, dorsally: `(±w cos θ, d sin θ)` (right, posterior). Segment extents are
  the labelled ones, else the estimated enlargement's (`plan.enlargement`).
- **Contact map.** The segment whose extent holds `s` (None outside every known one), the
  side of `x` (left, right or midline), the offset `x` from the midline and `|x| - w cos θ`
  from that side's entry zone (> 0: lateral to it; for a midline contact, to either one).
- **Dorsal CSF thickness (dCSF).** Along the paddle normal (the posterior vector at `s`)
  through the contact's centre, from the dura's inner surface (where the ray, coming from
  behind, enters the dural sac: CSF, roots or cord) to the cord's surface, both where the
  trilinearly interpolated label indicator crosses 1/2. Unavailable, with the reason, when
  the labels hold no CSF, when no CSF is labelled along the ray, when the ray misses the
  cord (a contact beside it) or meets no dura within `RAY_LENGTH_MM`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cordmap.planning.geometry import CordGeometry
from cordmap.planning.paddles import Paddle
from cordmap.protocol.levels import SEGMENTS
from cordmap.protocol.schema import CORD_CLASSES
from cordmap.volume import LabelVolume

#: Parametric angle (degrees, from the lateral axis towards dorsal) of the dorsolateral
#: sulcus on the cord's elliptic section. The phantom's roots leave the cord there; on the
#: PAM50 rootlets (C2..T1) and sct-t2's the measured angle is reported in docs/planning.md.
ENTRY_ZONE_ANGLE_DEG = 50.0
#: Classes inside the dural sac, other than the cord.
SAC_CLASSES = ("csf", "dorsal_root", "ventral_root")
#: How far behind the centreline (mm) a ray starts looking for the dura.
RAY_LENGTH_MM = 30.0
#: Sampling step (mm) along a ray.
RAY_STEP_MM = 0.05

NO_CSF_LABEL = "no CSF label in the labels"
NO_CSF_HERE = "no CSF labelled between the dura and the cord"
BESIDE_CORD = "the paddle normal misses the cord"
NO_DURA = f"no dura within {RAY_LENGTH_MM:g} mm behind the cord"


@dataclass(frozen=True)
class Contact:
    """One contact of a placed paddle (lengths in mm; s along the cord)."""

    number: int  # 1.., rows rostral to caudal, each from the patient's left to right
    row: int
    lateral_mm: float  # from the midline, + = the patient's right
    s_mm: float
    segment: str | None  # whose entry zone it lies over (None: outside the known segments)
    side: str  # "left", "right" or "midline"
    entry_zone_offset_mm: float  # |lateral| minus the entry zone's distance from the midline
    dcsf_mm: float | None
    dcsf_note: str | None  # why dcsf_mm is unavailable

    def to_json(self) -> dict:
        return {
            "contact": self.number,
            "row": self.row,
            "lateral_mm": round(self.lateral_mm, 2),
            "s_mm": round(self.s_mm, 2),
            "segment": self.segment,
            "side": self.side,
            "entry_zone_offset_mm": round(self.entry_zone_offset_mm, 2),
            "dcsf_mm": None if self.dcsf_mm is None else round(self.dcsf_mm, 2),
            "dcsf_note": self.dcsf_note,
        }

    @classmethod
    def from_json(cls, data: dict) -> Contact:
        return cls(
            data["contact"],
            data["row"],
            data["lateral_mm"],
            data["s_mm"],
            data["segment"],
            data["side"],
            data["entry_zone_offset_mm"],
            data["dcsf_mm"],
            data["dcsf_note"],
        )


def entry_zone_lateral(geometry: CordGeometry, s) -> np.ndarray:
    """Distance (mm) of the dorsal root entry zones from the midline at arc lengths `s`."""
    half_width = np.interp(np.asarray(s, dtype=float), geometry.csa_s, geometry.half_width)
    return half_width * np.cos(np.radians(ENTRY_ZONE_ANGLE_DEG))


def entry_zone_points(geometry: CordGeometry, s, side: float) -> np.ndarray:
    """RAS+ points (n, 3) of the entry zone of `side` (+1 right, -1 left) at arc lengths `s`."""
    s = np.atleast_1d(np.asarray(s, dtype=float))
    angle = np.radians(ENTRY_ZONE_ANGLE_DEG)
    _, right, posterior = geometry.centreline.frame(s)
    depth = np.interp(s, geometry.csa_s, geometry.half_depth) * np.sin(angle)
    return (
        geometry.centreline.point(s)
        + (side * entry_zone_lateral(geometry, s))[:, None] * right
        + depth[:, None] * posterior
    )


def segment_at(extents: dict[str, tuple[float, float]], s) -> list[str | None]:
    """The segment of `extents` (name -> arc-length extent) holding each arc length."""
    names = sorted(extents, key=SEGMENTS.index)
    out = []
    for value in np.atleast_1d(s):
        found = [n for n in names if extents[n][0] <= value < extents[n][1]]
        out.append(found[0] if found else None)
    return out


class ContactMapper:
    """Contact maps of one label volume: its cord geometry, segment extents and labels."""

    def __init__(
        self, labels: LabelVolume, geometry: CordGeometry, segments: dict[str, tuple[float, float]]
    ):
        self.geometry = geometry
        self.segments = segments
        self._array = labels.array
        self._to_voxel = np.linalg.inv(labels.affine)
        schema = labels.schema
        top = max(int(labels.array.max(initial=0)), max(label.id for label in schema))
        self._code = np.zeros(top + 1, dtype=np.uint8)  # 0 outside, 1 sac, 2 cord
        for label in schema.of_class(*SAC_CLASSES):
            self._code[label.id] = 1
        for label in schema.of_class(*CORD_CLASSES):
            self._code[label.id] = 2
        csf = [label.id for label in schema.of_class("csf")]
        self.has_csf = any(bool((labels.array == i).any()) for i in csf)
        self._csf = np.zeros(top + 1, dtype=bool)
        self._csf[csf] = True

    def contacts(self, paddle: Paddle, rostral: float) -> list[Contact]:
        """The contact map of the paddle with its array's rostral end at `rostral` (mm)."""
        layout = paddle.layout()
        s = np.array([rostral + row.offset_mm for _, row, _ in layout])
        lateral = np.array([x for _, _, x in layout])
        zone = entry_zone_lateral(self.geometry, s)
        dcsf, notes = self.dorsal_csf(s, lateral)
        return [
            Contact(
                n + 1,
                row_number,
                float(lateral[n]),
                float(s[n]),
                segment,
                "midline" if lateral[n] == 0 else ("right" if lateral[n] > 0 else "left"),
                float(abs(lateral[n]) - zone[n]),
                dcsf[n],
                notes[n],
            )
            for n, ((row_number, _, _), segment) in enumerate(
                zip(layout, segment_at(self.segments, s))
            )
        ]

    def dorsal_csf(
        self, s: np.ndarray, lateral: np.ndarray
    ) -> tuple[list[float | None], list[str | None]]:
        """dCSF (mm) along the paddle normal at arc lengths `s` and lateral offsets (mm), or
        None with the reason."""
        if not self.has_csf:
            return [None] * len(s), [NO_CSF_LABEL] * len(s)
        _, right, posterior = self.geometry.centreline.frame(s)
        base = self.geometry.centreline.point(s) + lateral[:, None] * right
        t = np.arange(RAY_LENGTH_MM, -1e-9, -RAY_STEP_MM)  # from behind, anteriorly
        points = base[:, None, :] + t[None, :, None] * posterior[:, None, :]
        sac, cord, csf = self._indicators(points.reshape(-1, 3))
        shape = points.shape[:2]
        sac, cord, csf = sac.reshape(shape), cord.reshape(shape), csf.reshape(shape)
        values: list[float | None] = []
        notes: list[str | None] = []
        for n in range(len(s)):
            dura, surface = _crossing(t, sac[n]), _crossing(t, cord[n])
            value: float | None = None
            if surface is None:
                note: str | None = BESIDE_CORD
            elif dura is None or sac[n, 0] >= 0.5:
                note = NO_DURA
            elif not (csf[n][(t <= dura) & (t >= surface)] >= 0.5).any():
                note = NO_CSF_HERE
            else:
                value, note = dura - surface, None
            values.append(value)
            notes.append(note)
        return values, notes

    def _indicators(self, xyz: np.ndarray):
        """Trilinear interpolation at RAS+ points of three indicators: inside the dural sac
        (sac classes or cord), cord, CSF. Outside the image counts as outside."""
        ijk = xyz @ self._to_voxel[:3, :3].T + self._to_voxel[:3, 3]
        low = np.floor(ijk).astype(int)
        frac = ijk - low
        shape = np.array(self._array.shape)
        out = np.zeros((3, len(xyz)))
        for corner in np.ndindex(2, 2, 2):
            index = low + corner
            weight = np.prod(np.where(corner, frac, 1 - frac), axis=1)
            inside = ((index >= 0) & (index < shape)).all(axis=1)
            ids = np.zeros(len(xyz), dtype=np.int64)
            ids[inside] = self._array[tuple(index[inside].T)]
            ids = np.minimum(ids, len(self._code) - 1)
            code = self._code[ids]
            out[0] += weight * (code > 0)
            out[1] += weight * (code == 2)
            out[2] += weight * self._csf[ids]
        return out


def _crossing(t: np.ndarray, indicator: np.ndarray) -> float | None:
    """The first `t` (walking the array's order) at which `indicator` reaches 1/2, linearly
    interpolated between samples; None if it never does."""
    above = np.nonzero(indicator >= 0.5)[0]
    if not len(above):
        return None
    i = int(above[0])
    if i == 0:
        return float(t[0])
    a, b = indicator[i - 1], indicator[i]
    return float(t[i - 1] + (0.5 - a) / (b - a) * (t[i] - t[i - 1]))
