"""What planning returns, at full precision: `Plan` (from `Planner.plan`) and `Assessment`
(from `Planner.assess`), made of `Placement`s and the case's measurements (`plan.measured`).

Lengths and positions are mm along the cord centreline from the rostral end of the cord
in view (arc length); coverages are % of the enlargement. `to_json()` gives the content
of plan.json (or assessment.json), rounded there and only there; `from_json` reads it back
into the same record, up to that rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cordmap.planning.contacts import Contact
from cordmap.planning.coverage import Coverage
from cordmap.planning.measured import Measured
from cordmap.planning.search import Curve
from cordmap.planning.targets import Weights


@dataclass(frozen=True)
class Placement:
    """One position of the paddle: where it lies, what it covers and what its contacts
    lie over.

    Parameters
    ----------
    rostral_edge, caudal_edge : str
        Where the array's ends lie, in the words of an X-ray reading ("T11/T12 disc").
    coverage : Coverage
        The array's ends (`rostral`, `caudal`, mm) and the enlargement covered: by volume
        (`volume_pct`, %), by length (`length_pct`, %) and per segment (`segments`).
    slice_count_pct : float
        Coverage by the published 15 x 3 mm axial-slice method (%).
    contacts : tuple of Contact
        The contact map: each contact's segment, side, offsets (mm) and dorsal CSF (mm).
    rank : int or None
        1.. among the candidates of a plan; None for an assessed placement.
    target_score : float or None
        With target segments: the target-root score (at most 100).
    reach : dict of str to float or None
        With target segments: how well the contacts reach each segment's entry zone on
        each side ("L2 left" -> 0..1).
    """

    rostral_edge: str
    caudal_edge: str
    coverage: Coverage
    slice_count_pct: float
    contacts: tuple[Contact, ...]
    rank: int | None = None
    target_score: float | None = None
    reach: dict[str, float] | None = None

    def to_json(self) -> dict:
        out: dict[str, Any] = {} if self.rank is None else {"rank": self.rank}
        out.update(
            rostral_edge=self.rostral_edge,
            caudal_edge=self.caudal_edge,
            **self.coverage.to_json(),
            slice_count_pct=round(self.slice_count_pct, 2),
            contacts=[c.to_json() for c in self.contacts],
        )
        if self.target_score is not None:
            assert self.reach is not None, "a target score comes with its reach"
            out["target_score"] = round(self.target_score, 2)
            out["reach"] = {k: round(v, 3) for k, v in self.reach.items()}
        return out

    @classmethod
    def from_json(cls, data: dict) -> Placement:
        return cls(
            data["rostral_edge"],
            data["caudal_edge"],
            Coverage.from_json(data),
            data["slice_count_pct"],
            tuple(Contact.from_json(c) for c in data["contacts"]),
            data.get("rank"),
            data.get("target_score"),
            data.get("reach"),
        )


@dataclass(frozen=True)
class TargetRanking:
    """Placements ranked by the target-root score (`plan.targets`).

    Parameters
    ----------
    segments : tuple of str
        The target segments.
    sides : tuple of str
        Their sides ("left", "right").
    others : tuple of str
        The enlargement's segments not targeted.
    weights : Weights
        The score's length scales (mm) and non-target weight.
    candidates : tuple of Placement
        The best placements by target score, best first.
    """

    segments: tuple[str, ...]
    sides: tuple[str, ...]
    others: tuple[str, ...]
    weights: Weights
    candidates: tuple[Placement, ...]

    @property
    def best(self) -> Placement:
        """The best placement by target score."""
        return self.candidates[0]

    def to_json(self) -> dict:
        return {
            "segments": list(self.segments),
            "sides": list(self.sides),
            "others": list(self.others),
            "weights": self.weights.to_json(),
            "candidates": [c.to_json() for c in self.candidates],
        }

    @classmethod
    def from_json(cls, data: dict) -> TargetRanking:
        return cls(
            tuple(data["segments"]),
            tuple(data["sides"]),
            tuple(data["others"]),
            Weights(**data["weights"]),
            tuple(Placement.from_json(c) for c in data["candidates"]),
        )


@dataclass(frozen=True)
class Comparison:
    """Where the best placement by volume and the best by target score differ.

    Parameters
    ----------
    by_volume, by_target : Placement
        The best placement of each ranking.
    separation_mm : float
        Placements closer than this (mm) count as the same.
    """

    by_volume: Placement
    by_target: Placement
    separation_mm: float

    @property
    def distance_mm(self) -> float:
        """Distance (mm) between the two placements' rostral ends."""
        return abs(self.by_volume.coverage.rostral - self.by_target.coverage.rostral)

    @property
    def agree(self) -> bool:
        """Whether the two rankings choose the same placement."""
        return bool(self.distance_mm < self.separation_mm)

    def to_json(self) -> dict:
        return {
            "agree": self.agree,
            "distance_mm": round(self.distance_mm, 2),
            "volume_pct": {
                "by_volume": round(self.by_volume.coverage.volume_pct, 2),
                "by_target": round(self.by_target.coverage.volume_pct, 2),
            },
            "target_score": {
                "by_volume": round(_target_score(self.by_volume), 2),
                "by_target": round(_target_score(self.by_target), 2),
            },
        }


def _target_score(placement: Placement) -> float:
    """The target score of a placement ranked with target segments (both of a
    `Comparison` are)."""
    assert placement.target_score is not None, "the placement was not scored by target"
    return placement.target_score


@dataclass(frozen=True)
class Plan(Measured):
    """The best placements of the paddle (`Planner.plan`), what plan.json holds.

    Parameters
    ----------
    step_mm : float
        The search step along the cord (mm).
    separation_mm : float
        The least distance between candidates (mm).
    top : int
        How many candidates were asked for.
    candidates : tuple of Placement
        The best placements by volume coverage, best first.
    curve : Curve
        Coverage (%) against the array's rostral position (mm).
    targets : TargetRanking or None
        With target segments: the placements ranked by the target-root score.
    """

    step_mm: float
    separation_mm: float
    top: int
    candidates: tuple[Placement, ...]
    curve: Curve
    targets: TargetRanking | None = None

    @property
    def best(self) -> Placement:
        """The best placement by volume coverage."""
        return self.candidates[0]

    @property
    def comparison(self) -> Comparison | None:
        """With target segments, how the best placements of the two rankings differ."""
        if self.targets is None:
            return None
        return Comparison(self.best, self.targets.best, self.separation_mm)

    def to_json(self) -> dict:
        out = {
            **self._measured_json(),
            "search": {
                "step_mm": self.step_mm,
                "separation_mm": self.separation_mm,
                "top": self.top,
            },
            "candidates": [c.to_json() for c in self.candidates],
            "curve": self.curve.to_json(),
        }
        if self.targets is not None:
            comparison = Comparison(self.best, self.targets.best, self.separation_mm)
            out["targets"] = {**self.targets.to_json(), "comparison": comparison.to_json()}
        return out

    @classmethod
    def from_json(cls, data: dict) -> Plan:
        search = data["search"]
        return cls(
            **cls._measured(data),
            step_mm=search["step_mm"],
            separation_mm=search["separation_mm"],
            top=search["top"],
            candidates=tuple(Placement.from_json(c) for c in data["candidates"]),
            curve=Curve.from_json(data["curve"]),
            targets=TargetRanking.from_json(data["targets"]) if "targets" in data else None,
        )


@dataclass(frozen=True)
class Compared:
    """A second placement assessed beside the first.

    Parameters
    ----------
    landmark : str
        The landmark of its array's rostral end.
    placement : Placement
    """

    landmark: str
    placement: Placement


@dataclass(frozen=True)
class Assessment(Measured):
    """The coverage of a placement read from X-ray landmarks (`Planner.assess`), what
    assessment.json holds.

    Parameters
    ----------
    rostral, caudal : str or None
        The landmark it was given by, of one end of the array (the other is None).
    placement : Placement
    compared : Compared or None
        A second placement to compare it with.
    """

    rostral: str | None
    caudal: str | None
    placement: Placement
    compared: Compared | None = None

    @property
    def distance_mm(self) -> float | None:
        """Distance (mm) between the rostral ends of the placement and the compared one."""
        if self.compared is None:
            return None
        return self._distance_to(self.compared)

    def _distance_to(self, compared: Compared) -> float:
        return abs(self.placement.coverage.rostral - compared.placement.coverage.rostral)

    def to_json(self) -> dict:
        out = {
            **self._measured_json(),
            "landmark": {"rostral": self.rostral, "caudal": self.caudal},
            "placement": self.placement.to_json(),
        }
        if self.compared is not None:
            out["compared"] = {
                "landmark": self.compared.landmark,
                "placement": self.compared.placement.to_json(),
                "distance_mm": round(self._distance_to(self.compared), 2),
            }
        return out

    @classmethod
    def from_json(cls, data: dict) -> Assessment:
        compared = data.get("compared")
        return cls(
            **cls._measured(data),
            rostral=data["landmark"]["rostral"],
            caudal=data["landmark"]["caudal"],
            placement=Placement.from_json(data["placement"]),
            compared=(
                Compared(compared["landmark"], Placement.from_json(compared["placement"]))
                if compared
                else None
            ),
        )
