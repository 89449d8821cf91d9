"""Vertebral landmarks along the cord, in both directions.

- `VertebralMap.describe(s)`: an arc length as a surgeon reads it on X-ray
  ("lower third of T11 body", "T12/L1 disc", "T11 upper endplate").
- `VertebralMap.locate(text)`: the reverse, from a landmark written in a small grammar:

      <vertebra> upper endplate | lower endplate | middle | upper third | lower third
      <vertebra>/<vertebra> disc          e.g. "T12/L1 disc" (also "T12-L1 disc")

  Vertebra names as in `protocol.levels` (T11, L1, S for the sacrum); "upper" is rostral.

Each vertebra's extent along the cord is that of its body (the part of its label anterior
to the cord) projected onto the centreline (see `geometry`). A disc is its labelled extent;
without disc labels, the gap between two adjacent bodies, or their shared boundary when they
touch. Landmarks name points of the body: "upper third" is the middle of its upper third.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cordmap.errors import CordmapError
from cordmap.planning.geometry import ArcVolume, CordGeometry, boundary
from cordmap.protocol.levels import VERTEBRAE, totalspineseg_disc, totalspineseg_vertebra, vertebra

#: Points within this distance (mm) of a vertebra's end are read as its endplate, and
#: within it of a boundary between touching vertebrae as the disc.
ENDPLATE_MM = 1.0

_POSITIONS = {  # landmark -> fraction of the vertebra from its rostral end
    "upper endplate": 0.0,
    "upper third": 1 / 6,
    "middle": 0.5,
    "lower third": 5 / 6,
    "lower endplate": 1.0,
}
_VERTEBRA = r"([CTL]\d{1,2}|S1?|sacrum)"
_SIMPLE = re.compile(rf"^{_VERTEBRA}\s+(?:body\s+)?({'|'.join(_POSITIONS)})$", re.I)
_DISC = re.compile(rf"^{_VERTEBRA}\s*[/-]\s*{_VERTEBRA}\s+disc$", re.I)
GRAMMAR = (
    "<vertebra> upper endplate|lower endplate|middle|upper third|lower third, "
    "or <vertebra>/<vertebra> disc (e.g. 'T11 upper endplate', 'T12/L1 disc')"
)


@dataclass(frozen=True)
class VertebralMap:
    """Arc-length extents (mm) of the labelled vertebrae and discs, rostral to caudal."""

    vertebrae: dict[str, tuple[float, float]]
    discs: dict[str, tuple[float, float]]  # "T12/L1" -> extent (labelled or inferred)

    @classmethod
    def from_geometry(cls, geometry: CordGeometry, schema) -> VertebralMap:
        """Extents of the labelled vertebrae and discs; where a vertebra touches a labelled
        disc, their shared end is the volume-balanced `boundary` (see `geometry`)."""
        # (kind, name, volume) from the skull down: vertebra, disc, vertebra, ...
        chain: list[tuple[str, str, ArcVolume | None]] = []
        for upper, lower in zip(VERTEBRAE, (*VERTEBRAE[1:], None)):
            chain.append(
                ("vertebra", upper, _volume(geometry, schema, totalspineseg_vertebra(upper)))
            )
            if lower:
                chain.append(
                    (
                        "disc",
                        f"{upper}/{lower}",
                        _volume(geometry, schema, totalspineseg_disc(upper, lower)),
                    )
                )
        found: dict[str, dict[str, tuple[float, float]]] = {"vertebra": {}, "disc": {}}
        for index, (kind, name, volume) in enumerate(chain):
            if volume is None:
                continue
            above = chain[index - 1][2] if index else None
            below = chain[index + 1][2] if index + 1 < len(chain) else None
            found[kind][name] = (
                boundary(above, volume) if above else volume.start,
                boundary(volume, below) if below else volume.end,
            )
        vertebrae, discs = found["vertebra"], found["disc"]
        for upper, lower in zip(VERTEBRAE, VERTEBRAE[1:]):
            key = f"{upper}/{lower}"
            if key not in discs and upper in vertebrae and lower in vertebrae:
                gap = (vertebrae[upper][1], vertebrae[lower][0])
                discs[key] = (min(gap), max(gap))
        order = {f"{u}/{w}": i for i, (u, w) in enumerate(zip(VERTEBRAE, VERTEBRAE[1:]))}
        return cls(vertebrae, dict(sorted(discs.items(), key=lambda item: order[item[0]])))

    def require(self, what: str = "this") -> None:
        if not self.vertebrae:
            raise CordmapError(
                f"the labels have no vertebrae, so {what} cannot be given in vertebral terms; "
                "label the vertebrae (T8..sacrum) first"
            )

    # -- arc length -> words ---------------------------------------------------------------
    def describe(self, s: float) -> str:
        """Where arc length `s` falls, in the words of an X-ray reading."""
        if not self.vertebrae:
            return f"{s:.1f} mm along the cord (no vertebrae labelled)"
        for name, (a, b) in self.discs.items():
            if b - a < ENDPLATE_MM:  # touching vertebrae: a thin band around their boundary
                a, b = (a + b - ENDPLATE_MM) / 2, (a + b + ENDPLATE_MM) / 2
            if a < s < b:
                return f"{name} disc"
        for name, (a, b) in self.vertebrae.items():
            if a <= s <= b:
                if s - a <= ENDPLATE_MM:
                    return f"{body_name(name)} upper endplate"
                if b - s <= ENDPLATE_MM:
                    return f"{body_name(name)} lower endplate"
                third = ("upper", "middle", "lower")[min(int(3 * (s - a) / (b - a)), 2)]
                return f"{third} third of {body_name(name)} body"
        first, last = next(iter(self.vertebrae)), list(self.vertebrae)[-1]
        if s < self.vertebrae[first][0]:
            return f"{self.vertebrae[first][0] - s:.0f} mm above {body_name(first)} (above the labelled vertebrae)"
        if s > self.vertebrae[last][1]:
            return f"{s - self.vertebrae[last][1]:.0f} mm below {body_name(last)} (below the labelled vertebrae)"
        return "between labelled vertebrae"

    # -- words -> arc length ---------------------------------------------------------------
    def locate(self, landmark: str) -> float:
        """Arc length (mm) of a landmark written in the grammar of this module."""
        text = " ".join(landmark.strip().split())
        simple, disc = _SIMPLE.match(text), _DISC.match(text)
        if simple:
            name = self._present(simple.group(1), landmark)
            a, b = self.vertebrae[name]
            return a + _POSITIONS[simple.group(2).lower()] * (b - a)
        if disc:
            upper, lower = vertebra(disc.group(1)), vertebra(disc.group(2))
            key = f"{upper}/{lower}"
            if VERTEBRAE.index(lower) != VERTEBRAE.index(upper) + 1:
                raise CordmapError(f"landmark '{landmark}': {upper} and {lower} are not adjacent")
            if key not in self.discs:
                for name in (upper, lower):
                    self._present(name, landmark)
            a, b = self.discs[key]
            return (a + b) / 2
        raise CordmapError(f"cannot read the landmark '{landmark}'; write {GRAMMAR}")

    def _present(self, name: str, landmark: str) -> str:
        name = vertebra(name)
        if name not in self.vertebrae:
            have = ", ".join(body_name(v) for v in self.vertebrae) or "none"
            raise CordmapError(
                f"landmark '{landmark}' names vertebra {body_name(name)}, which is not in the labels "
                f"(labelled: {have}); label it or use a landmark on a labelled vertebra"
            )
        return name

    def to_json(self) -> dict:
        return {
            "vertebrae": {
                body_name(k): [round(a, 2), round(b, 2)] for k, (a, b) in self.vertebrae.items()
            },
            "discs": {k: [round(a, 2), round(b, 2)] for k, (a, b) in self.discs.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> VertebralMap:
        return cls(
            {vertebra(k): (a, b) for k, (a, b) in data["vertebrae"].items()},
            {k: (a, b) for k, (a, b) in data["discs"].items()},
        )


def _volume(geometry: CordGeometry, schema, label_id: int) -> ArcVolume | None:
    return geometry.levels.get(label_id) if label_id in schema else None


def body_name(name: str) -> str:
    """How a vertebra is named in plan.json and on figures: "T11", "sacrum"."""
    return "sacrum" if name == "S" else name
