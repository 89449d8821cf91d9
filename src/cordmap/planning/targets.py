"""Placements chosen for target roots: how well the contacts reach the dorsal root entry
zones of the target segments, on each side, and how little they reach the others.

Rowald et al. (Nat Med 2022) placed the paddle where its contacts recruit the dorsal roots
of the target muscles (hip flexors L1-L2, knee extensors L3-L4, ankle dorsiflexors L4-L5,
plantar flexors S1-S2). Here, for an array whose rostral end lies at arc length `a`, each
contact (arc length `s`, lateral `x`; `plan.contacts`) reaches the entry zone of segment
`g` on side `σ` (+1 right, -1 left) by

    r = exp(-(d_rc / λ_rc)² / 2 - (d_lat / λ_lat)² / 2)

with `d_rc` the distance from `s` to the segment's extent along the cord (0 inside it) and
`d_lat = |x - σ e(s)|`, `e(s)` the entry zone's distance from the midline. A segment-side
is reached as well as its best contact reaches it, `R(g, σ) = max r`, and

    score = 100 (mean R over targets x sides - w mean R over other segments x sides)

where the other segments are those of the enlargement not targeted. λ_rc, λ_lat and w are
data: `targets.json` beside this module (documented in docs/planning.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cordmap.errors import CordmapError
from cordmap.planning.contacts import entry_zone_lateral
from cordmap.planning.enlargement import Enlargement
from cordmap.planning.geometry import CordGeometry
from cordmap.planning.paddles import Paddle
from cordmap.protocol.levels import SEGMENTS

WEIGHTS_FILE = Path(__file__).with_name("targets.json")
SIDES = {"left": -1.0, "right": 1.0}
SIDE_CHOICES = {"both": ("left", "right"), "left": ("left",), "right": ("right",)}


@dataclass(frozen=True)
class Weights:
    rostrocaudal_mm: float
    lateral_mm: float
    non_target_weight: float

    @classmethod
    def load(cls, path: Path = WEIGHTS_FILE) -> Weights:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            float(data["rostrocaudal_mm"]),
            float(data["lateral_mm"]),
            float(data["non_target_weight"]),
        )

    def to_json(self) -> dict:
        return {
            "rostrocaudal_mm": self.rostrocaudal_mm,
            "lateral_mm": self.lateral_mm,
            "non_target_weight": self.non_target_weight,
        }


@dataclass(frozen=True)
class Targets:
    """Target segments and sides of one enlargement, with the score's weights."""

    segments: tuple[str, ...]
    sides: tuple[str, ...]
    others: tuple[str, ...]  # the enlargement's segments not targeted
    extents: dict[str, tuple[float, float]]  # every enlargement segment's, arc length (mm)
    weights: Weights

    @classmethod
    def parse(
        cls,
        text: str,
        sides: str,
        enlargement: Enlargement,
        geometry: CordGeometry,
        weights: Weights | None = None,
    ) -> Targets:
        """`text` like "L2,L3,L4,S1"; `sides` both, left or right. Every target must be a
        segment of the enlargement lying within the cord in view."""
        names = [part.strip().upper() for part in str(text).split(",") if part.strip()]
        if not names:
            raise CordmapError("`targets` names no segment; write e.g. `targets` L2,L3,L4,S1")
        unknown = [n for n in names if n not in SEGMENTS]
        if unknown:
            raise CordmapError(
                f"`targets`: unknown segment {', '.join(unknown)}; use segment "
                "names such as L2 or S1, separated by commas"
            )
        span = f"{enlargement.segments[0]}..{enlargement.segments[-1]}"
        outside = [n for n in names if n not in enlargement.segments]
        if outside:
            raise CordmapError(
                f"target {', '.join(outside)} is outside the enlargement {span}; choose targets "
                f"among {span} or widen `enlargement`"
            )
        unseen = [
            n
            for n in names
            if enlargement.segment_extents[n][0] < geometry.cord.start - 1e-6
            or enlargement.segment_extents[n][1] > geometry.cord.end + 1e-6
        ]
        if unseen:
            raise CordmapError(
                f"target {', '.join(unseen)} lies beyond the cord in view; use an "
                "image that shows it or leave it out of `targets`"
            )
        if sides not in SIDE_CHOICES:
            raise CordmapError(f"`sides` must be both, left or right, not '{sides}'")
        ordered = tuple(n for n in enlargement.segments if n in names)
        return cls(
            ordered,
            SIDE_CHOICES[sides],
            tuple(n for n in enlargement.segments if n not in names),
            dict(enlargement.segment_extents),
            weights or Weights.load(),
        )

    def reach(self, geometry: CordGeometry, paddle: Paddle, positions) -> dict[str, np.ndarray]:
        """R(g, σ) for every enlargement segment g and chosen side σ, at each rostral
        position: {"L2 left": (n,) array, ...}."""
        positions = np.atleast_1d(np.asarray(positions, dtype=float))
        layout = paddle.layout()
        s = positions[:, None] + np.array([row.offset_mm for _, row, _ in layout])[None, :]
        lateral = np.array([x for _, _, x in layout])[None, :]
        zone = entry_zone_lateral(geometry, s)
        w = self.weights
        out = {}
        for name in (*self.segments, *self.others):
            a, b = self.extents[name]
            along = np.maximum(np.maximum(a - s, s - b), 0.0) / w.rostrocaudal_mm
            for side in self.sides:
                across = np.abs(lateral - SIDES[side] * zone) / w.lateral_mm
                out[f"{name} {side}"] = np.exp(-0.5 * (along**2 + across**2)).max(axis=1)
        return out

    def score(self, reach: dict[str, np.ndarray]) -> np.ndarray:
        """The target score (see module) from `reach`."""

        def mean(names):
            keys = [f"{n} {side}" for n in names for side in self.sides]
            return np.mean([reach[k] for k in keys], axis=0) if keys else 0.0

        return 100 * (mean(self.segments) - self.weights.non_target_weight * mean(self.others))
