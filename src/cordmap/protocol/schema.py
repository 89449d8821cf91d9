"""The annotation protocol as data: label ids, names, classes, levels, sides and colours.

The protocol lives in `protocol.json` beside this module (the label table, with each
label's PAM50 / TotalSpineSeg / SCT code). A user may pass their own file of the same
form. The schema exports to the formats of the tools annotators use: ITK-SNAP label
descriptions, 3D Slicer colour tables and Neuroglancer segment properties.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cordmap.errors import CordmapError

DEFAULT_PROTOCOL = Path(__file__).with_name("protocol.json")

#: Structure classes a protocol may use, from the cord outwards.
CLASSES = ("cord", "segment", "conus", "csf", "dorsal_root", "ventral_root", "vertebra", "disc")
#: The structure classes that are cord tissue (the cord whatever its segment, the conus).
CORD_CLASSES = ("cord", "segment", "conus")
SIDES = (None, "left", "right")
#: Export formats of `LabelSchema.export`.
EXPORT_FORMATS = ("itksnap", "slicer", "neuroglancer", "table")


@dataclass(frozen=True)
class Label:
    id: int
    name: str
    structure: str  # one of CLASSES
    colour: tuple[int, int, int]
    level: str | None = None
    side: str | None = None
    codes: tuple[tuple[str, int], ...] = ()  # (("pam50", 21), ("totalspineseg", 41))

    @property
    def hex(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.colour)

    def code(self, system: str) -> int | None:
        return dict(self.codes).get(system)


@dataclass(frozen=True)
class Requirement:
    structure: str
    classes: tuple[str, ...]


class LabelSchema:
    """An ordered set of labels; look labels up by id, class, level and side."""

    def __init__(
        self,
        name: str,
        version: str,
        labels: list[Label],
        required: Sequence[Requirement] = (),
        description: str = "",
    ):
        self.name = name
        self.version = version
        self.description = description
        self.required = tuple(required)
        self.labels: dict[int, Label] = {}
        for label in labels:
            if label.id in self.labels:
                raise CordmapError(f"protocol '{name}' defines label id {label.id} twice")
            self.labels[label.id] = label

    # -- loading ---------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None) -> LabelSchema:
        """Read a protocol JSON file; without a path, the protocol shipped with cordmap."""
        if path is None:
            return default_schema()
        return cls._from_file(Path(path))

    @classmethod
    def _from_file(cls, path: Path) -> LabelSchema:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CordmapError(f"protocol file {path} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CordmapError(f"protocol file {path} is not valid JSON ({exc})") from None
        try:
            labels = [_parse_label(item) for item in data["labels"]]
            required = [
                Requirement(r["structure"], tuple(r["classes"])) for r in data.get("required", [])
            ]
            return cls(
                data["name"], str(data["version"]), labels, required, data.get("description", "")
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CordmapError(
                f"protocol file {path} is malformed ({exc}); each label needs id, name, "
                "class and colour (see docs/protocol.md)"
            ) from None

    # -- lookup ------------------------------------------------------------------------
    def __contains__(self, label_id) -> bool:
        return int(label_id) in self.labels

    def __getitem__(self, label_id) -> Label:
        try:
            return self.labels[int(label_id)]
        except KeyError:
            raise CordmapError(
                f"label id {label_id} is not in the annotation protocol '{self.name}'"
            ) from None

    def __iter__(self):
        return iter(self.labels.values())

    def __len__(self) -> int:
        return len(self.labels)

    def of_class(self, *structures: str) -> list[Label]:
        return [label for label in self if label.structure in structures]

    def find(self, structure: str, level: str | None = None, side: str | None = None) -> Label:
        """The one label of a class at a level and side (e.g. "segment", "L1")."""
        for label in self:
            if label.structure == structure and label.level == level and label.side == side:
                return label
        where = " ".join(str(x) for x in (level, side) if x)
        raise CordmapError(f"the protocol '{self.name}' has no {structure} label {where}".strip())

    # -- exports -----------------------------------------------------------------------
    def export(self, fmt: str) -> str:
        """The protocol as text in one of `EXPORT_FORMATS`."""
        if fmt == "itksnap":
            return self.to_itksnap()
        if fmt == "slicer":
            return self.to_slicer()
        if fmt == "neuroglancer":
            return json.dumps(self.to_neuroglancer(), indent=1) + "\n"
        if fmt == "table":
            return self.to_table()
        raise CordmapError(
            f"unknown protocol format '{fmt}'; use one of {', '.join(EXPORT_FORMATS)}"
        )

    def to_table(self) -> str:
        """Markdown table of the labels with their PAM50 / TotalSpineSeg / SCT codes."""
        lines = [
            "| id | name | class | level | side | colour | PAM50 | TotalSpineSeg | SCT |",
            "| ---: | --- | --- | --- | --- | --- | ---: | ---: | ---: |",
        ]
        for label in self:
            cells = [
                label.id,
                label.name,
                label.structure,
                label.level or "",
                label.side or "",
                f"`{label.hex}`",
                *(_blank(label.code(c)) for c in ("pam50", "totalspineseg", "sct")),
            ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        return "\n".join(lines) + "\n"

    def to_itksnap(self) -> str:
        """ITK-SNAP label description file (File > Import label descriptions)."""
        lines = [
            "################################################",
            f"# ITK-SnAP Label Description File: {self.name} {self.version}",
            "# Columns: IDX -R- -G- -B- -A-- VIS MSH  LABEL",
            "################################################",
            '    0     0    0    0        0  0  0    "Clear Label"',
        ]
        for label in self:
            r, g, b = label.colour
            lines.append(f'{label.id:5d} {r:5d} {g:4d} {b:4d}        1  1  1    "{label.name}"')
        return "\n".join(lines) + "\n"

    def to_slicer(self) -> str:
        """3D Slicer colour table (.ctbl): id name r g b a."""
        lines = [
            f"# Color table file {self.name} {self.version}",
            f"# {len(self) + 1} values",
            "0 background 0 0 0 0",
        ]
        for label in self:
            r, g, b = label.colour
            lines.append(f"{label.id} {label.name.replace(' ', '_')} {r} {g} {b} 255")
        return "\n".join(lines) + "\n"

    def to_neuroglancer(self) -> dict:
        """Neuroglancer `neuroglancer_segment_properties` info (names, tags)."""
        tags = sorted({label.structure for label in self})
        return {
            "@type": "neuroglancer_segment_properties",
            "inline": {
                "ids": [str(label.id) for label in self],
                "properties": [
                    {"id": "label", "type": "label", "values": [label.name for label in self]},
                    {
                        "id": "description",
                        "type": "description",
                        "values": [
                            f"{label.structure} {label.level or ''} {label.side or ''}".strip()
                            for label in self
                        ],
                    },
                    {
                        "id": "tags",
                        "type": "tags",
                        "tags": tags,
                        "values": [[tags.index(label.structure)] for label in self],
                    },
                ],
            },
        }


def _parse_label(item: dict) -> Label:
    structure = item["class"]
    if structure not in CLASSES:
        raise ValueError(f"label {item['id']} has class '{structure}', not one of {CLASSES}")
    side = item.get("side")
    if side not in SIDES:
        raise ValueError(f"label {item['id']} has side '{side}', not left/right/null")
    colour = item["colour"].lstrip("#")
    if len(colour) != 6:
        raise ValueError(f"label {item['id']} colour must be #rrggbb")
    label_id = int(item["id"])
    if not 0 < label_id < 65536:
        raise ValueError(f"label id {label_id} must be between 1 and 65535")
    codes = tuple((key, int(item[key])) for key in ("pam50", "totalspineseg", "sct") if key in item)
    return Label(
        label_id,
        str(item["name"]),
        structure,
        (int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)),
        item.get("level"),
        side,
        codes,
    )


@cache
def default_schema() -> LabelSchema:
    """The protocol shipped with cordmap (read once)."""
    return LabelSchema._from_file(DEFAULT_PROTOCOL)


def _blank(value) -> str:
    return "" if value is None else str(value)
