"""Nerve roots of the phantom: tubes that leave their segment and descend to their foramen.

Each dorsal and ventral root, left and right, leaves the cord surface at the middle of
its segment, moves into a lane of the dural sac between the cord and the sac wall,
descends in that lane (the cauda equina) and turns laterally through the foramen below
the vertebra of the same name (T9..L5; S1 through the sacrum). S2..S5 roots leave the
model at its caudal end, in the sacral canal. Lanes are shared by roots whose paths do
not overlap along the canal, lateral lanes first, so that the roots that exit first
lie laterally, as in the real cauda equina. Paths are polylines in (u, v, s).
"""

from __future__ import annotations

import numpy as np

from cordmap.anatomy.phantom_geometry import (
    ARCH_THICKNESS,
    ROOT_RADIUS,
    SEGMENTS,
    VERTEBRAE,
    Root,
)
from cordmap.protocol.levels import pam50_segment

#: Angle (degrees, in the u-v plane from lateral) where each kind of root leaves the cord.
ORIGIN_ANGLE = {"dorsal": -50.0, "ventral": 40.0}
#: Lanes in the sac: (angle from lateral, fraction of the way from the cord to the sac wall).
LANES = {
    "dorsal": [(a, f) for a in (-12.0, -28.0, -44.0, -60.0, -75.0) for f in (0.8, 0.3)],
    "ventral": [(a, f) for a in (12.0, 32.0, 52.0, 72.0) for f in (0.8, 0.3)],
}
ENTRY_MM = 6.0  # along s, from the origin into the lane
EXIT_MM = 6.0  # along s, from the lane out through the foramen
STEP_MM = 2.0  # polyline step along the lane
CLEARANCE_MM = 0.3  # between a root and the cord or sac wall
SIDES = {"right": 1.0, "left": -1.0}
ID_BASE = {
    ("dorsal", "left"): 200,
    ("dorsal", "right"): 300,
    ("ventral", "left"): 400,
    ("ventral", "right"): 500,
}


def build_roots(geometry) -> list[Root]:
    """All roots T9..S5, dorsal and ventral, left and right."""
    roots = []
    for side, sign in SIDES.items():
        for kind in ("dorsal", "ventral"):
            busy: list[list[tuple[float, float]]] = [[] for _ in LANES[kind]]
            for level in SEGMENTS:
                origin = geometry.segment(level).middle
                exit_s, exit_name = _exit(geometry, level)
                lane = _free_lane(busy, origin, exit_s)
                points = _path(
                    geometry,
                    sign,
                    kind,
                    LANES[kind][lane],
                    origin,
                    exit_s,
                    exit_name != "sacral canal",
                )
                roots.append(
                    Root(
                        ID_BASE[kind, side] + pam50_segment(level),
                        level,
                        side,
                        kind,
                        ROOT_RADIUS[kind],
                        points,
                        exit_name,
                    )
                )
    return roots


def _exit(geometry, level: str) -> tuple[float, str]:
    """Arc length where the root leaves the canal, and the foramen's name."""
    if level in VERTEBRAE[:-1]:
        vertebra = geometry.vertebra(level)
        below = VERTEBRAE[VERTEBRAE.index(level) + 1]
        return vertebra.inferior - 0.15 * vertebra.length, f"{level}-{below}"
    sacrum = geometry.vertebrae[-1]
    if level == "S1":
        return sacrum.superior + 0.6 * sacrum.length, "S1 sacral foramen"
    return geometry.model_bottom + 10.0, "sacral canal"


def _free_lane(busy, start: float, stop: float) -> int:
    """The first lane free over [start, stop] (else the least used); marks it busy."""

    def overlap(spans):
        return sum(max(0.0, min(stop, b) - max(start, a)) for a, b in spans)

    costs = [overlap(spans) for spans in busy]
    lane = next((i for i, c in enumerate(costs) if c == 0.0), int(np.argmin(costs)))
    busy[lane].append((start - 2.0, stop + 2.0))
    return lane


def _lane_point(geometry, sign, kind, lane, s):
    """(u, v) of a lane at arc lengths `s`, between the cord and the sac (or sacral canal)."""
    angle, fraction = np.radians(lane[0]), lane[1]
    margin = ROOT_RADIUS[kind] + CLEARANCE_MM
    a_in, b_in = geometry.cord_semi_axes(s)
    a_sac, b_sac = geometry.sac_semi_axes(s)
    a_canal, b_canal = geometry.canal_semi_axes(s)
    a_out = np.where(a_sac > 0, a_sac, a_canal - 1.0) - margin
    b_out = np.where(b_sac > 0, b_sac, b_canal - 1.0) - margin
    a_in, b_in = np.minimum(a_in + margin, a_out), np.minimum(b_in + margin, b_out)
    a = a_in + fraction * (a_out - a_in)
    b = b_in + fraction * (b_out - b_in)
    return sign * a * np.cos(angle), b * np.sin(angle)


def _path(geometry, sign, kind, lane, origin, exit_s, through_foramen) -> np.ndarray:
    angle = np.radians(ORIGIN_ANGLE[kind])
    a, b = geometry.cord_semi_axes(origin)
    points = [(sign * float(a) * np.cos(angle), float(b) * np.sin(angle), origin)]
    first, last = origin + ENTRY_MM, exit_s - (EXIT_MM if through_foramen else 0.0)
    if last > first:
        s = np.linspace(first, last, max(int(np.ceil((last - first) / STEP_MM)), 1) + 1)
        u, v = _lane_point(geometry, sign, kind, lane, s)
        points.extend(zip(u, v, s))
    if through_foramen:
        a_canal, _ = geometry.canal_semi_axes(exit_s)
        points.append((sign * (float(a_canal) + ARCH_THICKNESS + 8.0), 0.0, exit_s))
    return np.asarray(points, dtype=float)
