"""Planning in memory: from a label volume to candidates, and scoring a given placement.

`Planner.prepare` measures once (cord geometry, enlargement, vertebrae, paddle);
`Planner.plan` proposes the best placements (by volume coverage, and with `targets` by the
target-root score too); `Planner.assess` scores one read from X-ray. Every placement comes
with its contact map (`plan.contacts`). Both return full-precision records
(`plan.results`); JSON, rounded, is written by `plan.files`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from cordmap import __version__
from cordmap.errors import CordmapError
from cordmap.planning.contacts import ContactMapper, entry_zone_lateral
from cordmap.planning.coverage import coverage_at, slice_count_coverage
from cordmap.planning.enlargement import (
    DEFAULT_ENLARGEMENT,
    Enlargement,
    find_enlargement,
    segment_extents,
)
from cordmap.planning.geometry import CordGeometry, cord_ids, measure_cord
from cordmap.planning.measured import CordSummary, DorsalSurface, EnlargementSummary
from cordmap.planning.paddles import DEFAULT_PADDLE, Paddle, get_paddle
from cordmap.planning.results import Assessment, Compared, Placement, Plan, TargetRanking
from cordmap.planning.search import SEARCH_STEP_MM, SEPARATION_MM, best_positions, search_positions
from cordmap.planning.targets import Targets
from cordmap.planning.vertebral import VertebralMap
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
    ) -> Plan:
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
            return tuple(
                replace(self.placement(s, chosen), rank=rank)
                for rank, s in enumerate(best_positions(curve, top, separation, by), start=1)
            )

        return Plan(
            **self._measured(),
            step_mm=step,
            separation_mm=separation,
            top=top,
            candidates=ranked("volume_pct"),
            curve=curve,
            targets=None
            if chosen is None
            else TargetRanking(
                chosen.segments,
                chosen.sides,
                chosen.others,
                chosen.weights,
                ranked("target_score"),
            ),
        )

    def targets(self, targets: str, sides: str = "both") -> Targets:
        """The target segments and sides, checked against the enlargement."""
        return Targets.parse(targets, sides, self.enlargement, self.geometry)

    def placement(self, rostral: float, targets: Targets | None = None) -> Placement:
        """Everything about one position of the array's rostral end (arc length, mm)."""
        coverage = coverage_at(self.enlargement, self.paddle, rostral)
        score, reach = None, None
        if targets is not None:
            by_segment = targets.reach(self.geometry, self.paddle, [rostral])
            score = float(targets.score(by_segment)[0])
            reach = {k: float(v[0]) for k, v in by_segment.items()}
        return Placement(
            self.vertebral.describe(coverage.rostral),
            self.vertebral.describe(coverage.caudal),
            coverage,
            self.slice_count(rostral),
            tuple(self.contact_map.contacts(self.paddle, rostral)),
            target_score=score,
            reach=reach,
        )

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
                "give the landmark of exactly one end of the array (`rostral` or `caudal`)"
            )
        self.vertebral.require("a landmark")
        if rostral is not None:
            return self.vertebral.locate(rostral)
        assert caudal is not None  # exactly one of them was given
        return self.vertebral.locate(caudal) - self.paddle.array_length_mm

    def assess(
        self, rostral: str | None = None, caudal: str | None = None, compare: str | None = None
    ) -> Assessment:
        """Coverage achieved by a placement read from X-ray landmarks; with `compare` (the
        rostral-end landmark of another placement), that placement too."""
        return Assessment(
            **self._measured(),
            rostral=rostral,
            caudal=caudal,
            placement=self.placement(self.position_of(rostral, caudal)),
            compared=None
            if compare is None
            else Compared(compare, self.placement(self.position_of(rostral=compare))),
        )

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

    def _measured(self) -> dict:
        """The fields of `measured.Measured`."""
        e, g = self.enlargement, self.geometry
        s = g.csa_s[::2]
        return dict(
            cordmap_version=__version__,
            labels=self.source,
            paddle=self.paddle,
            enlargement=EnlargementSummary(
                e.segments,
                e.estimated,
                e.start,
                e.end,
                e.total_volume,
                dict(e.segment_extents),
                e.csa_peak,
            ),
            cord=CordSummary(
                g.length, g.conus_tip, self._segments(), tuple(g.csa_s[::4]), tuple(g.csa[::4])
            ),
            levels=self.vertebral,
            dorsal_surface=DorsalSurface(
                tuple(s),
                tuple(np.interp(s, g.csa_s, g.half_width)),
                tuple(entry_zone_lateral(g, s)),
                self.contact_map.has_csf,
                dict(self.contact_map.segments),
            ),
        )
