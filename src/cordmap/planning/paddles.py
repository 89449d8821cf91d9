"""Paddle electrode models as data: array length, width and contact rows.

The shipped catalogue is `paddles.json` beside this module (Medtronic Specify 5-6-5 is the
default). A user adds models without code by passing a JSON file of the same form
(`--paddles FILE`); its models are added to (and may override) the shipped ones.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from cordmap.errors import CordmapError

CATALOGUE = Path(__file__).with_name("paddles.json")
DEFAULT_PADDLE = "Specify 5-6-5"


@dataclass(frozen=True)
class ContactRow:
    """Contacts at one rostro-caudal position: `offset_mm` is their centre measured from the
    array's rostral end; `lateral_mm` their centres across the paddle."""

    offset_mm: float
    lateral_mm: tuple[float, ...]
    contact_length_mm: float
    contact_width_mm: float

    @property
    def span(self) -> tuple[float, float]:
        """Rostro-caudal extent of the row's contacts, from the array's rostral end (mm)."""
        half = self.contact_length_mm / 2
        return self.offset_mm - half, self.offset_mm + half


@dataclass(frozen=True)
class Paddle:
    name: str
    manufacturer: str
    array_length_mm: float
    width_mm: float
    rows: tuple[ContactRow, ...]  # rostral to caudal
    sources: dict

    @property
    def contacts(self) -> int:
        return sum(len(row.lateral_mm) for row in self.rows)

    def layout(self) -> list[tuple[int, ContactRow, float]]:
        """Every contact as (row number, its row, lateral_mm), numbered 1.. in this order:
        rows rostral to caudal, each from the patient's left to right."""
        return [
            (n, row, lateral)
            for n, row in enumerate(self.rows, start=1)
            for lateral in sorted(row.lateral_mm)
        ]

    @classmethod
    def from_json(cls, data: dict) -> Paddle:
        """The model as `to_json` wrote it (without its `sources`)."""
        return _parse(data)[0]

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "manufacturer": self.manufacturer,
            "array_length_mm": self.array_length_mm,
            "width_mm": self.width_mm,
            "contacts": self.contacts,
            "rows": [
                {
                    "row": i + 1,
                    "offset_mm": r.offset_mm,
                    "lateral_mm": list(r.lateral_mm),
                    "contact_length_mm": r.contact_length_mm,
                    "contact_width_mm": r.contact_width_mm,
                }
                for i, r in enumerate(self.rows)
            ],
        }


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def load_catalogue(extra: str | Path | None = None) -> dict[str, Paddle]:
    """Paddle models by name: the shipped catalogue plus those of the file `extra`."""
    models = {}
    for path in (CATALOGUE, extra):
        if path is None:
            continue
        for paddle, aliases in _read(Path(path)):
            for alias in (paddle.name, *aliases):
                models[_key(alias)] = paddle
    return models


def get_paddle(name: str = DEFAULT_PADDLE, extra: str | Path | None = None) -> Paddle:
    """The paddle model `name` (case, spaces and hyphens ignored)."""
    models = load_catalogue(extra)
    try:
        return models[_key(name)]
    except KeyError:
        known = sorted({p.name for p in models.values()})
        raise CordmapError(
            f"unknown paddle model '{name}'; known models: {', '.join(known)}. "
            "Add yours in a JSON file passed with `paddles_file` (see docs/planning.md)"
        ) from None


def _read(path: Path) -> list[tuple[Paddle, list[str]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CordmapError(f"paddle file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CordmapError(f"paddle file {path} is not valid JSON ({exc})") from None
    try:
        return [_parse(item) for item in data["models"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise CordmapError(
            f"paddle file {path} is malformed ({exc}); each model needs name, "
            "array_length_mm, width_mm and rows of contacts (offset_mm, lateral_mm, "
            "contact_length_mm, contact_width_mm; see docs/planning.md)"
        ) from None


def _mm(value) -> float:
    """A finite number of mm (JSON's NaN and Infinity are refused)."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value} is not a finite number of mm")
    return number


def _parse(item: dict) -> tuple[Paddle, list[str]]:
    name = str(item["name"])
    length, width = _mm(item["array_length_mm"]), _mm(item["width_mm"])
    if length <= 0 or width <= 0:
        raise ValueError(f"model '{name}' needs a positive array_length_mm and width_mm")
    if not item.get("rows"):
        raise ValueError(f"model '{name}' has no contact geometry: give its rows of contacts")
    rows = sorted(
        (
            ContactRow(
                _mm(r["offset_mm"]),
                tuple(_mm(x) for x in r["lateral_mm"]),
                _mm(r["contact_length_mm"]),
                _mm(r["contact_width_mm"]),
            )
            for r in item["rows"]
        ),
        key=lambda r: r.offset_mm,
    )
    if any(row.contact_length_mm <= 0 or row.contact_width_mm <= 0 for row in rows):
        raise ValueError(f"model '{name}' has a contact of zero or negative size")
    for row in rows:
        start, end = row.span
        if start < -1e-9 or end > length + 1e-9 or not row.lateral_mm:
            raise ValueError(
                f"model '{name}' has a row at {row.offset_mm} mm outside its "
                f"{length} mm array, or without contacts"
            )
        if any(abs(x) + row.contact_width_mm / 2 > width / 2 + 1e-9 for x in row.lateral_mm):
            raise ValueError(
                f"model '{name}' has a contact of the row at {row.offset_mm} mm "
                f"beyond its {width} mm width"
            )
    paddle = Paddle(
        name,
        str(item.get("manufacturer", "")),
        length,
        width,
        tuple(rows),
        dict(item.get("sources", {})),
    )
    return paddle, [str(a) for a in item.get("aliases", [])]
