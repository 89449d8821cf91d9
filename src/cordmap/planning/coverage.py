"""How much of the enlargement a paddle covers at a given position.

A paddle whose array's rostral end lies at arc length `s` covers the cord between `s` and
`s + array length`, both measured along the centreline (see `geometry`). Coverage is:

- volume %: the enlargement's volume in that stretch over its whole volume;
- length %: the overlap of that stretch with the enlargement's extent over its length;
- per segment: the share of each segment of the enlargement under the array (by volume
  when labelled, by length when estimated) and which contact rows lie over it.

`slice_count_coverage` is the published method, for comparison: the share of enlargement
voxels in 15 consecutive 3 mm axial slices (45 mm along S, not along the cord) starting
at the slice of the paddle's rostral end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cordmap.planning.enlargement import Enlargement
from cordmap.planning.paddles import Paddle

PUBLISHED_SLICES = 15
PUBLISHED_SLICE_MM = 3.0


@dataclass(frozen=True)
class SegmentCoverage:
    segment: str
    extent: tuple[float, float]
    covered_pct: float  # by volume when labelled, by length when estimated
    rows: tuple[int, ...]  # contact rows (1 = most rostral) over the segment

    def to_json(self) -> dict:
        return {
            "segment": self.segment,
            "extent_mm": [round(x, 2) for x in self.extent],
            "covered_pct": round(self.covered_pct, 2),
            "contact_rows": list(self.rows),
        }

    @classmethod
    def from_json(cls, data: dict) -> SegmentCoverage:
        a, b = data["extent_mm"]
        return cls(data["segment"], (a, b), data["covered_pct"], tuple(data["contact_rows"]))


@dataclass(frozen=True)
class Coverage:
    rostral: float  # arc length (mm) of the array's rostral end
    caudal: float
    volume_pct: float
    length_pct: float
    segments: tuple[SegmentCoverage, ...]

    def to_json(self) -> dict:
        return {
            "rostral_mm": round(self.rostral, 2),
            "caudal_mm": round(self.caudal, 2),
            "volume_pct": round(self.volume_pct, 2),
            "length_pct": round(self.length_pct, 2),
            "segments": [s.to_json() for s in self.segments],
        }

    @classmethod
    def from_json(cls, data: dict) -> Coverage:
        return cls(
            data["rostral_mm"],
            data["caudal_mm"],
            data["volume_pct"],
            data["length_pct"],
            tuple(SegmentCoverage.from_json(s) for s in data["segments"]),
        )


def coverage_curve(
    enlargement: Enlargement, paddle: Paddle, positions
) -> tuple[np.ndarray, np.ndarray]:
    """Volume % and length % of the enlargement covered with the rostral end at each position."""
    rostral = np.asarray(positions, dtype=float)
    caudal = rostral + paddle.array_length_mm
    volume = 100 * enlargement.covered_volume(rostral, caudal) / enlargement.total_volume
    return volume, 100 * _overlap(
        rostral, caudal, enlargement.start, enlargement.end
    ) / enlargement.length


def coverage_at(enlargement: Enlargement, paddle: Paddle, rostral: float) -> Coverage:
    """Coverage of the enlargement, and of each of its segments, at one position."""
    caudal = rostral + paddle.array_length_mm
    volume, length = coverage_curve(enlargement, paddle, [rostral])
    segments = []
    for name in enlargement.segments:
        a, b = enlargement.segment_extents[name]
        if name in enlargement.segment_volumes:
            part = enlargement.segment_volumes[name]
            pct = 100 * float(part.between(rostral, caudal)) / part.total
        else:
            pct = 100 * float(_overlap(rostral, caudal, a, b)) / (b - a)
        rows = tuple(
            i + 1
            for i, row in enumerate(paddle.rows)
            if _overlap(rostral + row.span[0], rostral + row.span[1], a, b) > 0
        )
        segments.append(SegmentCoverage(name, (a, b), pct, rows))
    return Coverage(rostral, caudal, float(volume[0]), float(length[0]), tuple(segments))


def slice_count_coverage(
    enlargement_mask: np.ndarray,
    slice_s: np.ndarray,
    top_s: float,
    slices: int = PUBLISHED_SLICES,
    slice_mm: float = PUBLISHED_SLICE_MM,
) -> float:
    """The published method: % of enlargement voxels in `slices` consecutive axial slices of
    `slice_mm` (45 mm of S), from the slice holding `top_s` (the S coordinate, mm, of the
    paddle's rostral end) downwards. On a finer grid, as many slices as fill 45 mm.

    `enlargement_mask` is the enlargement's voxel mask; `slice_s` the S coordinate (mm) of
    the centre of each of its axial slices.
    """
    per_slice = enlargement_mask.sum(axis=(0, 1)).astype(float)
    if not per_slice.any():
        return 0.0
    order = np.argsort(-slice_s)  # superior first
    centres = slice_s[order]
    thickness = float(np.median(np.abs(np.diff(centres)))) if len(centres) > 1 else slice_mm
    below_top = np.nonzero(centres - thickness / 2 < top_s - 1e-9)[0]
    first = int(below_top[0]) if len(below_top) else len(centres)
    count = max(int(round(slices * slice_mm / thickness)), 1)
    return float(100 * per_slice[order[first : first + count]].sum() / per_slice.sum())


def _overlap(a, b, c, d):
    """Length of the overlap of [a, b] and [c, d] (arrays broadcast)."""
    return np.maximum(np.minimum(b, d) - np.maximum(a, c), 0.0)
