"""Planning in memory: from a label volume to candidates, and scoring a given placement.

`Planner.prepare` measures once (cord geometry, enlargement, vertebrae, paddle);
`Planner.plan` proposes the best placements (by volume coverage, and with `targets` by the
target-root score too); `Planner.assess` scores one read from X-ray. Every placement comes
with its contact map (`plan.contacts`). Both return JSON-ready dicts (what plan.json holds).
Files are handled in `plan.files`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from cordmap import __version__
from cordmap.errors import CordmapError
from cordmap.plan.contacts import ContactMapper, entry_zone_lateral
from cordmap.plan.coverage import coverage_at, slice_count_coverage
from cordmap.plan.enlargement import (
    DEFAULT_ENLARGEMENT,
    Enlargement,
    find_enlargement,
    segment_extents,
)
from cordmap.plan.geometry import CordGeometry, cord_ids, measure_cord
from cordmap.plan.paddles import DEFAULT_PADDLE, Paddle, get_paddle
from cordmap.plan.search import SEARCH_STEP_MM, SEPARATION_MM, best_positions, search_positions
from cordmap.plan.targets import Targets
from cordmap.plan.vertebral import VertebralMap
from cordmap.protocol.levels import SEGMENTS
from cordmap.volume import LabelVolume


@dataclass(frozen=True)
class Planner:
    """One label volume measured for planning with one paddle model; `source` names the
    labels in messages and in the output."""

    labels: LabelVolume
    geometry: CordGeometry
    enlargement: Enlargement
    vertebral: VertebralMap
    paddle: Paddle
    source: str

    @classmethod
    def prepare(
        cls,
        labels: LabelVolume,
        paddle: str = DEFAULT_PADDLE,
        paddles_file: str | Path | None = None,
        enlargement: str = DEFAULT_ENLARGEMENT,
        source: str = "the label volume",
    ) -> Planner:
        """Measure the cord, find the enlargement and the vertebrae, load the paddle."""
        model = get_paddle(paddle, paddles_file)
        geometry = measure_cord(labels, source)
        found = find_enlargement(geometry, labels.schema, enlargement, source)
        return cls(
            labels,
            geometry,
            found,
            VertebralMap.from_geometry(geometry, labels.schema),
            model,
            source,
        )

    # -- candidates --------------------------------------------------------------------------
    def plan(
        self,
        top: int = 3,
        step: float = SEARCH_STEP_MM,
        separation: float = SEPARATION_MM,
        targets: str | None = None,
        sides: str = "both",
    ) -> dict:
        """The top placements with their coverage, vertebral description and contact map,
        and the curve. With `targets` ("L2,L3,L4,S1") and `sides` (both, left, right), the
        top placements by the target-root score as well, and how the two rankings differ."""
        chosen = self.targets(targets, sides) if targets else None
        curve = search_positions(self.geometry, self.paddle, self.enlargement, step, self.source)
        if chosen is not None:
            curve = replace(
                curve,
                target_score=chosen.score(
                    chosen.reach(self.geometry, self.paddle, curve.positions)
                ),
            )

        def ranked(by):
            return [
                dict(rank=rank, **self.placement(s, chosen))
                for rank, s in enumerate(best_positions(curve, top, separation, by), start=1)
            ]

        result = {
            **self._header(),
            "search": {"step_mm": step, "separation_mm": separation, "top": top},
            "candidates": ranked("volume_pct"),
            "curve": curve.to_json(),
        }
        if chosen is not None:
            by_target = ranked("target_score")
            result["targets"] = {
                **chosen.to_json(),
                "candidates": by_target,
                "comparison": _comparison(result["candidates"][0], by_target[0], separation),
            }
        return result

    def targets(self, targets: str, sides: str = "both") -> Targets:
        """The target segments and sides, checked against the enlargement."""
        return Targets.parse(targets, sides, self.enlargement, self.geometry)

    def placement(self, rostral: float, targets: Targets | None = None) -> dict:
        """Everything about one position of the array's rostral end (arc length, mm)."""
        coverage = coverage_at(self.enlargement, self.paddle, rostral)
        out = {
            "rostral_edge": self.vertebral.describe(coverage.rostral),
            "caudal_edge": self.vertebral.describe(coverage.caudal),
            **coverage.to_json(),
            "slice_count_pct": round(self.slice_count(rostral), 2),
            "contacts": [c.to_json() for c in self.contact_map.contacts(self.paddle, rostral)],
        }
        if targets is not None:
            reach = targets.reach(self.geometry, self.paddle, [rostral])
            out["target_score"] = round(float(targets.score(reach)[0]), 2)
            out["reach"] = {k: round(float(v[0]), 3) for k, v in reach.items()}
        return out

    @cached_property
    def contact_map(self) -> ContactMapper:
        """Contact maps over the labelled segments (else the estimated enlargement's)."""
        segments = (
            self.enlargement.segment_extents if self.enlargement.estimated else self._segments()
        )
        return ContactMapper(self.labels, self.geometry, segments)

    def slice_count(self, rostral: float) -> float:
        """The published 15 x 3 mm axial-slice coverage with the rostral end at `rostral`."""
        top = float(self.geometry.centreline.point(rostral)[0, 2])
        return slice_count_coverage(self._enlargement_mask, self._slice_s(), top)

    @cached_property
    def _enlargement_mask(self) -> np.ndarray:
        """The enlargement's voxels: its segments, or the cord within its estimated S range."""
        array = self.labels.array
        if not self.enlargement.estimated:
            ids = [self.labels.schema.find("segment", n).id for n in self.enlargement.segments]
            return np.isin(array, ids)
        start, end = self.geometry.centreline.point([self.enlargement.start, self.enlargement.end])[
            :, 2
        ]
        slice_s = self._slice_s()
        return np.isin(array, cord_ids(self.labels)) & ((slice_s <= start) & (slice_s >= end))

    def _slice_s(self) -> np.ndarray:
        k = np.arange(self.labels.shape[2])
        centre = (np.array(self.labels.shape[:2]) - 1) / 2
        return self.labels.world(np.column_stack([np.tile(centre, (len(k), 1)), k]))[:, 2]

    # -- assessment --------------------------------------------------------------------------
    def position_of(self, rostral: str | None = None, caudal: str | None = None) -> float:
        """Rostral-end arc length of a placement given by one landmark of either array end."""
        if (rostral is None) == (caudal is None):
            raise CordmapError(
                "give the landmark of exactly one end of the array (--rostral or --caudal)"
            )
        self.vertebral.require("a landmark")
        if rostral is not None:
            return self.vertebral.locate(rostral)
        return self.vertebral.locate(caudal) - self.paddle.array_length_mm

    def assess(
        self, rostral: str | None = None, caudal: str | None = None, compare: str | None = None
    ) -> dict:
        """Coverage achieved by a placement read from X-ray landmarks; with `compare` (the
        rostral-end landmark of another placement), the distance between the two in mm."""
        position = self.position_of(rostral, caudal)
        result = {
            **self._header(),
            "landmark": {"rostral": rostral, "caudal": caudal},
            "placement": self.placement(position),
        }
        if compare is not None:
            other = self.position_of(rostral=compare)
            result["compared"] = {
                "landmark": compare,
                "placement": self.placement(other),
                "distance_mm": round(abs(position - other), 2),
            }
        return result

    def _segments(self) -> dict[str, tuple[float, float]]:
        """Extents of all labelled cord segments, rostral to caudal."""
        schema = self.labels.schema
        names = [
            label.level
            for label in schema.of_class("segment")
            if label.id in self.geometry.structures
        ]
        names.sort(key=SEGMENTS.index)
        return segment_extents(self.geometry, schema, names)

    def _header(self) -> dict:
        e = self.enlargement
        return {
            "cordmap_version": __version__,
            "labels": self.source,
            "units": "mm along the cord centreline from the rostral end of the cord in view",
            "paddle": self.paddle.to_json(),
            "enlargement": {
                "segments": f"{e.segments[0]}..{e.segments[-1]}",
                "estimated": e.estimated,
                "extent_mm": [round(e.start, 2), round(e.end, 2)],
                "length_mm": round(e.length, 2),
                "volume_mm3": round(e.total_volume, 1),
                "segment_extents_mm": {
                    k: [round(a, 2), round(b, 2)] for k, (a, b) in e.segment_extents.items()
                },
                **(
                    {
                        "csa_peak_mm": round(e.csa_peak, 2),
                        "csa_peak_inside": bool(e.start <= e.csa_peak <= e.end),
                    }
                    if e.csa_peak is not None
                    else {}
                ),
            },
            "cord": {
                "length_mm": round(self.geometry.length, 2),
                "conus_tip_mm": (
                    None if self.geometry.conus_tip is None else round(self.geometry.conus_tip, 2)
                ),
                "segments_mm": {
                    name: [round(a, 2), round(b, 2)] for name, (a, b) in self._segments().items()
                },
                "csa_mm2": {
                    "s_mm": self.geometry.csa_s[::4].round(2).tolist(),
                    "area": self.geometry.csa[::4].round(2).tolist(),
                },
            },
            "levels": self.vertebral.to_json(),
            "dorsal_surface": self._dorsal_surface(),
        }

    def _dorsal_surface(self) -> dict:
        """The cord's half-width and the entry zones' distance from the midline every 1 mm,
        with the segment extents the contact map uses (for the report's contact figure)."""
        g = self.geometry
        s = g.csa_s[::2]
        return {
            "s_mm": s.round(2).tolist(),
            "cord_half_width_mm": np.interp(s, g.csa_s, g.half_width).round(2).tolist(),
            "entry_zone_mm": entry_zone_lateral(g, s).round(2).tolist(),
            "csf_labelled": self.contact_map.has_csf,
            "segments_mm": {
                n: [round(a, 2), round(b, 2)] for n, (a, b) in self.contact_map.segments.items()
            },
        }


def _comparison(by_volume: dict, by_target: dict, separation: float) -> dict:
    """Where the best placement by volume and the best by target score differ."""
    distance = abs(by_volume["rostral_mm"] - by_target["rostral_mm"])
    return {
        "agree": bool(distance < separation),
        "distance_mm": round(distance, 2),
        "volume_pct": {"by_volume": by_volume["volume_pct"], "by_target": by_target["volume_pct"]},
        "target_score": {
            "by_volume": by_volume["target_score"],
            "by_target": by_target["target_score"],
        },
    }
