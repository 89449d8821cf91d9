"""Training classes as a mapping of the label schema, not a second list of labels.

Each training class names the schema structure classes it gathers: the published
network learns background, cord (cord + its segments + the conus), CSF, vertebra, disc,
dorsal root and ventral root. Label ids are turned into class indices through the
schema, so a protocol that adds a label of a known structure class needs no change here.

A predicted class is written back as the schema's level-free label of that class (e.g.
"spinal cord (unassigned segment)", "CSF"); a class whose labels all carry a level
(vertebrae, discs, roots in the shipped protocol) cannot be written without assigning
levels, which the U-Net does not do, and is left out of the written volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cordmap.errors import CordmapError
from cordmap.protocol.schema import CORD_CLASSES as CORD_STRUCTURES
from cordmap.protocol.schema import LabelSchema
from cordmap.volume import LabelVolume

UNMAPPED = 255


#: Stands for "every structure class no other training class gathers" (background only).
REST = "*"


@dataclass(frozen=True)
class TrainingClass:
    name: str
    structures: tuple[str, ...]  # schema structure classes gathered into this class


#: The published classes. Background (index 0) gathers nothing: it is the absence of labels.
PUBLISHED_CLASSES = (
    TrainingClass("background", ()),
    TrainingClass("cord", CORD_STRUCTURES),
    TrainingClass("csf", ("csf",)),
    TrainingClass("vertebra", ("vertebra",)),
    TrainingClass("disc", ("disc",)),
    TrainingClass("dorsal_root", ("dorsal_root",)),
    TrainingClass("ventral_root", ("ventral_root",)),
)

#: Cord against everything else (other structures are background).
CORD_CLASSES = (TrainingClass("background", (REST,)), PUBLISHED_CLASSES[1])

#: The bundled default model's classes: cord, CSF, vertebra, disc; the rest (roots included:
#: the cauda equina is not cord) is background.
SPINE_CLASSES = (TrainingClass("background", (REST,)), *PUBLISHED_CLASSES[1:5])

CLASS_SETS = {"published": PUBLISHED_CLASSES, "cord": CORD_CLASSES, "spine": SPINE_CLASSES}


class ClassMapping:
    """Label ids of a schema <-> training class indices."""

    def __init__(self, schema: LabelSchema, classes=PUBLISHED_CLASSES):
        if not classes or set(classes[0].structures) - {REST}:
            raise CordmapError(
                "the first training class must be background, gathering no "
                f"labels or '{REST}' (the labels no other class gathers)"
            )
        self.schema = schema
        self.classes = tuple(classes)
        self._index: dict[str, int] = {}
        self._rest_is_background = REST in self.classes[0].structures
        for index, cls in enumerate(self.classes[1:], start=1):
            for structure in cls.structures:
                if structure in self._index:
                    raise CordmapError(
                        f"structure class '{structure}' is mapped to two "
                        "training classes; map each to one"
                    )
                self._index[structure] = index

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def __len__(self) -> int:
        return len(self.classes)

    def class_of(self, label_id: int) -> int | None:
        """Training class index of a schema label id (None when no class gathers it)."""
        default = 0 if self._rest_is_background else None
        return self._index.get(self.schema[label_id].structure, default)

    def lookup_table(self) -> np.ndarray:
        """Array indexed by label id giving its class index (UNMAPPED for unknown ids)."""
        table = np.full(max(label.id for label in self.schema) + 1, UNMAPPED, dtype=np.uint8)
        table[0] = 0
        for label in self.schema:
            index = self.class_of(label.id)
            if index is not None:
                table[label.id] = index
        return table

    def encode(self, labels: LabelVolume, source: str = "label volume") -> np.ndarray:
        """Class index of every voxel (uint8); label ids without a class are an error."""
        if labels.schema.name != self.schema.name:
            raise CordmapError(
                f"{source} uses protocol '{labels.schema.name}', but the training "
                f"classes map protocol '{self.schema.name}'; use one protocol"
            )
        table = self.lookup_table()
        array = np.asarray(labels.array)
        ids = np.unique(array)
        bad = [int(i) for i in ids if i >= len(table) or table[i] == UNMAPPED]
        if bad:
            raise CordmapError(
                f"{source} holds label ids {bad} that no training class gathers "
                f"(classes: {', '.join(self.names)}); relabel them or train with a class "
                "mapping that includes their structure class"
            )
        return table[array]

    def output_ids(self) -> dict[int, int | None]:
        """Label id written for each class index: its level-free schema label, else None."""
        out: dict[int, int | None] = {0: 0}
        for index, cls in enumerate(self.classes[1:], start=1):
            free = [
                label
                for label in self.schema
                if label.structure in cls.structures and label.level is None and label.side is None
            ]
            out[index] = min(free, key=lambda label: label.id).id if free else None
        return out

    def decode(self, class_map: np.ndarray, affine: np.ndarray) -> LabelVolume:
        """Label volume of the schema from a class-index map (see the module note)."""
        table = np.zeros(len(self.classes), dtype=np.uint16)
        for index, label_id in self.output_ids().items():
            table[index] = label_id or 0
        return LabelVolume(table[class_map], affine, schema=self.schema)

    def unwritten(self) -> list[str]:
        """Classes that `decode` leaves out (no level-free label in the schema)."""
        return [self.classes[i].name for i, v in self.output_ids().items() if v is None]

    # -- model files -------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "schema": {"name": self.schema.name, "version": self.schema.version},
            "classes": [{"name": c.name, "structures": list(c.structures)} for c in self.classes],
        }

    @classmethod
    def from_dict(cls, data: dict, schema: LabelSchema, source: str = "model") -> ClassMapping:
        """Rebuild a mapping for `schema`, refusing one made for an incompatible protocol.

        Classes gather structure classes, not label ids, so a model serves every version of
        its protocol with the same major version (minor versions only add labels).
        """
        want = data["schema"]
        if want["name"] != schema.name or _major(want["version"]) != _major(schema.version):
            raise CordmapError(
                f"{source} was trained for protocol '{want['name']}' version {want['version']}, "
                f"but the case uses '{schema.name}' version {schema.version}; use a model "
                "trained on this protocol or fine-tune one on cases annotated with it"
            )
        classes = [TrainingClass(c["name"], tuple(c["structures"])) for c in data["classes"]]
        return cls(schema, classes)


def _major(version) -> str:
    return str(version).split(".")[0]
