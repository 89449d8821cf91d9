"""What `Planner.prepare` measured on a case, as `Plan` and `Assessment` hold it
(`plan.results`): the enlargement, the cord, its dorsal surface, the vertebrae and the paddle,
at full precision (mm along the cord centreline, mm³, mm²); rounded only in `to_json()`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cordmap.planning.enlargement import parse_segment_range
from cordmap.planning.paddles import Paddle
from cordmap.planning.vertebral import VertebralMap

UNITS = "mm along the cord centreline from the rostral end of the cord in view"

Extents = dict[str, tuple[float, float]]


def _extents_json(extents: Extents) -> dict:
    return {name: [round(a, 2), round(b, 2)] for name, (a, b) in extents.items()}


def _extents(data: dict) -> Extents:
    return {name: (float(a), float(b)) for name, (a, b) in data.items()}


def _values_json(values: tuple[float, ...]) -> list:
    return np.round(np.asarray(values, dtype=float), 2).tolist()


def _values(data: list) -> tuple[float, ...]:
    return tuple(float(v) for v in data)


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True)
class EnlargementSummary:
    """The enlargement the placements cover.

    Parameters
    ----------
    segments : tuple of str
        Its segments, rostral to caudal ("L1", ..., "S2").
    estimated : bool
        True when placed from the conus tip (no segment labelled), False when labelled.
    start, end : float
        Its extent along the cord (mm).
    volume_mm3 : float
        Its volume (mm³).
    segment_extents : dict of str to (float, float)
        Each segment's extent along the cord (mm).
    csa_peak : float or None
        Estimated only: arc length (mm) of the caudal cross-sectional-area peak.
    """

    segments: tuple[str, ...]
    estimated: bool
    start: float
    end: float
    volume_mm3: float
    segment_extents: Extents
    csa_peak: float | None = None

    @property
    def span(self) -> str:
        """The segment range, e.g. "L1..S2"."""
        return f"{self.segments[0]}..{self.segments[-1]}"

    @property
    def length(self) -> float:
        """Its length along the cord (mm)."""
        return self.end - self.start

    def to_json(self) -> dict:
        out = {
            "segments": self.span,
            "estimated": self.estimated,
            "extent_mm": [round(self.start, 2), round(self.end, 2)],
            "length_mm": round(self.length, 2),
            "volume_mm3": round(self.volume_mm3, 1),
            "segment_extents_mm": _extents_json(self.segment_extents),
        }
        if self.csa_peak is not None:
            out["csa_peak_mm"] = round(self.csa_peak, 2)
            out["csa_peak_inside"] = bool(self.start <= self.csa_peak <= self.end)
        return out

    @classmethod
    def from_json(cls, data: dict) -> EnlargementSummary:
        start, end = data["extent_mm"]
        return cls(
            parse_segment_range(data["segments"]),
            data["estimated"],
            start,
            end,
            data["volume_mm3"],
            _extents(data["segment_extents_mm"]),
            data.get("csa_peak_mm"),
        )


@dataclass(frozen=True)
class CordSummary:
    """The cord in view.

    Parameters
    ----------
    length : float
        Its length along the centreline (mm).
    conus_tip : float or None
        Arc length (mm) of the conus tip; None when out of view.
    segments : dict of str to (float, float)
        Extents (mm) of all its labelled segments, rostral to caudal.
    csa_s, csa : tuple of float
        Its cross-sectional area (mm²) at arc lengths `csa_s` (mm), every 2 mm.
    """

    length: float
    conus_tip: float | None
    segments: Extents
    csa_s: tuple[float, ...]
    csa: tuple[float, ...]

    def to_json(self) -> dict:
        return {
            "length_mm": round(self.length, 2),
            "conus_tip_mm": _round(self.conus_tip),
            "segments_mm": _extents_json(self.segments),
            "csa_mm2": {"s_mm": _values_json(self.csa_s), "area": _values_json(self.csa)},
        }

    @classmethod
    def from_json(cls, data: dict) -> CordSummary:
        csa = data["csa_mm2"]
        return cls(
            data["length_mm"],
            data["conus_tip_mm"],
            _extents(data["segments_mm"]),
            _values(csa["s_mm"]),
            _values(csa["area"]),
        )


@dataclass(frozen=True)
class DorsalSurface:
    """The cord's dorsal surface as the contact maps see it, every 1 mm.

    Parameters
    ----------
    s : tuple of float
        Arc lengths (mm).
    cord_half_width : tuple of float
        The cord's half-width (mm) at `s`.
    entry_zone : tuple of float
        Distance (mm) of the dorsal root entry zones from the midline at `s`.
    csf_labelled : bool
        Whether the labels hold CSF (else no dorsal CSF thickness is measured).
    segments : dict of str to (float, float)
        The segment extents (mm) the contact maps use.
    """

    s: tuple[float, ...]
    cord_half_width: tuple[float, ...]
    entry_zone: tuple[float, ...]
    csf_labelled: bool
    segments: Extents

    def to_json(self) -> dict:
        return {
            "s_mm": _values_json(self.s),
            "cord_half_width_mm": _values_json(self.cord_half_width),
            "entry_zone_mm": _values_json(self.entry_zone),
            "csf_labelled": self.csf_labelled,
            "segments_mm": _extents_json(self.segments),
        }

    @classmethod
    def from_json(cls, data: dict) -> DorsalSurface:
        return cls(
            _values(data["s_mm"]),
            _values(data["cord_half_width_mm"]),
            _values(data["entry_zone_mm"]),
            data["csf_labelled"],
            _extents(data["segments_mm"]),
        )


@dataclass(frozen=True)
class Measured:
    """What `Planner.prepare` measured, common to plans and assessments.

    Parameters
    ----------
    cordmap_version : str
        The cordmap that measured it.
    labels : str
        The label volume it was measured on.
    paddle : Paddle
        The paddle model (lengths in mm).
    enlargement : EnlargementSummary
    cord : CordSummary
    levels : VertebralMap
        Arc-length extents (mm) of the labelled vertebrae and discs.
    dorsal_surface : DorsalSurface
    """

    cordmap_version: str
    labels: str
    paddle: Paddle
    enlargement: EnlargementSummary
    cord: CordSummary
    levels: VertebralMap
    dorsal_surface: DorsalSurface

    def _measured_json(self) -> dict:
        return {
            "cordmap_version": self.cordmap_version,
            "labels": self.labels,
            "units": UNITS,
            "paddle": self.paddle.to_json(),
            "enlargement": self.enlargement.to_json(),
            "cord": self.cord.to_json(),
            "levels": self.levels.to_json(),
            "dorsal_surface": self.dorsal_surface.to_json(),
        }

    @staticmethod
    def _measured(data: dict) -> dict:
        """The fields of `Measured` from a plan.json or assessment.json."""
        return dict(
            cordmap_version=data["cordmap_version"],
            labels=data["labels"],
            paddle=Paddle.from_json(data["paddle"]),
            enlargement=EnlargementSummary.from_json(data["enlargement"]),
            cord=CordSummary.from_json(data["cord"]),
            levels=VertebralMap.from_json(data["levels"]),
            dorsal_surface=DorsalSurface.from_json(data["dorsal_surface"]),
        )
