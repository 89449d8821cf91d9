"""The best paddle positions: search along the cord, keep the top distinct candidates.

Every position of the array's rostral end from the top of the cord in view to where the
array's caudal end meets the conus tip is scored (step 0.5 mm by default). The best
candidate is the middle of the run of positions sharing the highest volume coverage (an
enlargement shorter than the array is covered fully over a range of positions; the middle
leaves equal margins). Later candidates are chosen the same way among positions at least
`separation` mm from those already chosen. With target segments (`plan.targets`), the same
choice is made on the target score as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cordmap.errors import CordmapError, NotInView
from cordmap.planning.coverage import coverage_curve
from cordmap.planning.enlargement import Enlargement
from cordmap.planning.geometry import CordGeometry
from cordmap.planning.paddles import Paddle

SEARCH_STEP_MM = 0.5
SEPARATION_MM = 5.0
#: Coverages closer than this (percentage points) count as equal.
TIE_PCT = 1e-6


@dataclass(frozen=True)
class Curve:
    """Coverage as a function of the array's rostral position (arc length, mm)."""

    positions: np.ndarray
    volume_pct: np.ndarray
    length_pct: np.ndarray
    target_score: np.ndarray | None = field(default=None)  # with target segments only

    def to_json(self) -> dict:
        out = {
            "rostral_mm": np.round(self.positions, 2).tolist(),
            "volume_pct": np.round(self.volume_pct, 2).tolist(),
            "length_pct": np.round(self.length_pct, 2).tolist(),
        }
        if self.target_score is not None:
            out["target_score"] = np.round(self.target_score, 2).tolist()
        return out

    @classmethod
    def from_json(cls, data: dict) -> Curve:
        score = data.get("target_score")
        return cls(
            np.asarray(data["rostral_mm"], dtype=float),
            np.asarray(data["volume_pct"], dtype=float),
            np.asarray(data["length_pct"], dtype=float),
            None if score is None else np.asarray(score, dtype=float),
        )


def search_positions(
    geometry: CordGeometry,
    paddle: Paddle,
    enlargement: Enlargement,
    step: float = SEARCH_STEP_MM,
    source: str = "the labels",
) -> Curve:
    """Score every rostral position (every `step` mm) at which the array lies over the cord."""
    if step <= 0:
        raise CordmapError(f"the search step must be positive, not {step} mm")
    room = geometry.length - paddle.array_length_mm
    if room < 0:
        raise NotInView(
            f"the {paddle.name} array ({paddle.array_length_mm:g} mm) is longer than the "
            f"{geometry.length:.1f} mm of cord in {source}; use an image showing more cord "
            "or a shorter paddle (`paddle`)"
        )
    positions = np.arange(0.0, room + 1e-9, step)
    volume, length = coverage_curve(enlargement, paddle, positions)
    return Curve(positions, volume, length)


def best_positions(
    curve: Curve, top: int = 3, separation: float = SEPARATION_MM, by: str = "volume_pct"
) -> list[float]:
    """Up to `top` rostral positions, best first by `by` (volume_pct or target_score), at
    least `separation` mm apart."""
    if top < 1:
        raise CordmapError(f"`top` must be at least 1, not {top}")
    allowed = np.ones(len(curve.positions), dtype=bool)
    chosen: list[float] = []
    while len(chosen) < top and allowed.any():
        score = np.where(allowed, getattr(curve, by), -np.inf)
        best = int(np.argmax(score))
        tied = allowed & (score >= score[best] - TIE_PCT)
        first, last = best, best
        while first > 0 and tied[first - 1]:
            first -= 1
        while last + 1 < len(tied) and tied[last + 1]:
            last += 1
        pick = float(curve.positions[first] + curve.positions[last]) / 2
        chosen.append(pick)
        allowed &= np.abs(curve.positions - pick) >= separation - 1e-9
    return chosen
