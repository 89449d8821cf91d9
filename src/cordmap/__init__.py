"""cordmap: plan epidural stimulation over the lumbosacral spinal cord from MRI.

From an MRI to a paddle placement in a notebook::

    import cordmap

    image = cordmap.load("scan/")             # DICOM folder, NIfTI file or slice folder
    labels = cordmap.segment(image)           # bundled U-Net, vertebrae numbered
    print(cordmap.validate(labels).as_text())
    plan = cordmap.plan(labels, top=3)
    print(plan.best.coverage.volume_pct, plan.best.rostral_edge)

The functions (see `cordmap.api`): `load`, `load_labels`, `segment`, `number_vertebrae`,
`validate`, `mesh_labels`, `plan`, `assess`, `make_phantom`; the objects they pass:
`Volume`, `LabelVolume`, `LabelSchema`, `Numbering`, `ValidationReport`, `Plan`,
`Placement`, `Assessment`, `Planner`, `Phantom`, `Case`. The command line
(`cordmap --help`) runs the same steps on a case folder.
The API is imported on first use, so ``import cordmap`` stays quick.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from cordmap.api import (
        Assessment,
        Case,
        CordmapError,
        LabelSchema,
        LabelVolume,
        Numbering,
        Phantom,
        Placement,
        Plan,
        Planner,
        SegmentationWarning,
        ValidationReport,
        Volume,
        assess,
        load,
        load_labels,
        make_phantom,
        mesh_labels,
        number_vertebrae,
        plan,
        segment,
        validate,
    )

__all__ = [
    "Assessment",
    "Case",
    "CordmapError",
    "LabelSchema",
    "LabelVolume",
    "Numbering",
    "Phantom",
    "Placement",
    "Plan",
    "Planner",
    "SegmentationWarning",
    "ValidationReport",
    "Volume",
    "assess",
    "load",
    "load_labels",
    "make_phantom",
    "mesh_labels",
    "number_vertebrae",
    "plan",
    "segment",
    "validate",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module("cordmap.api"), name)
    raise AttributeError(f"module 'cordmap' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
