"""Names and order of vertebrae and spinal cord segments, with the field's numbering.

Spinal cord segments are numbered as in the PAM50 template (C1 = 1 … C8 = 8,
T1 = 9 … T12 = 20, L1 = 21 … L5 = 25, S1 = 26 … S5 = 30); vertebrae as in
TotalSpineSeg (C1 = 11 … C7 = 17, T1 = 21 … T12 = 32, L1 = 41 … L5 = 45, sacrum = 50),
and an intervertebral disc as TotalSpineSeg: the id of the vertebra below it + 50.
"""

from __future__ import annotations

from cordmap.errors import CordmapError

SEGMENTS: tuple[str, ...] = (
    *(f"C{i}" for i in range(1, 9)),
    *(f"T{i}" for i in range(1, 13)),
    *(f"L{i}" for i in range(1, 6)),
    *(f"S{i}" for i in range(1, 6)),
)

#: Vertebrae from the skull down; "S" is the sacrum (its S1 body included).
VERTEBRAE: tuple[str, ...] = (
    *(f"C{i}" for i in range(1, 8)),
    *(f"T{i}" for i in range(1, 13)),
    *(f"L{i}" for i in range(1, 6)),
    "S",
)


def pam50_segment(name: str) -> int:
    """PAM50 number of a spinal cord segment ("L1" -> 21)."""
    try:
        return SEGMENTS.index(name.upper()) + 1
    except ValueError:
        raise CordmapError(
            f"unknown spinal segment '{name}'; use C1..C8, T1..T12, L1..L5 or S1..S5"
        ) from None


def segment_name(number: int) -> str:
    """Name of the spinal cord segment with this PAM50 number (21 -> "L1")."""
    if not 1 <= number <= len(SEGMENTS):
        raise CordmapError(
            f"{number} is not a PAM50 spinal segment number; use 1..{len(SEGMENTS)} (C1..S5)"
        )
    return SEGMENTS[number - 1]


def vertebra(name: str) -> str:
    """Canonical vertebra name: "t11" -> "T11", "S1"/"sacrum" -> "S"."""
    key = name.strip().upper()
    if key in ("S1", "SACRUM"):
        key = "S"
    if key not in VERTEBRAE:
        raise CordmapError(f"unknown vertebra '{name}'; use C1..C7, T1..T12, L1..L5 or S (sacrum)")
    return key


def vertebra_index(name: str) -> int:
    """Position of a vertebra from the skull down (C1 = 0)."""
    return VERTEBRAE.index(vertebra(name))


def totalspineseg_vertebra(name: str) -> int:
    """TotalSpineSeg id of a vertebra ("L1" -> 41, "S" -> 50)."""
    v = vertebra(name)
    if v == "S":
        return 50
    region, number = v[0], int(v[1:])
    return {"C": 10, "T": 20, "L": 40}[region] + number


def totalspineseg_disc(upper: str, lower: str) -> int:
    """TotalSpineSeg id of the disc between two adjacent vertebrae ("T12", "L1" -> 91)."""
    if vertebra_index(lower) != vertebra_index(upper) + 1:
        raise CordmapError(f"{upper} and {lower} are not adjacent vertebrae")
    return totalspineseg_vertebra(lower) + 50
