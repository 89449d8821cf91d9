"""The PAM50 template as a label volume of the shipped protocol (the worked example).

PAM50 (De Leener et al., NeuroImage 2018) labels its cord twice: by spinal segment
(`PAM50_spinal_levels`, 1..30 = C1..S5) and by vertebral level (`PAM50_levels`,
1..20 = C1..L1). A label volume holds one id per voxel, so:

- cord voxels take their segment id (PAM50 number n -> 100 + n, e.g. L1 = 21 -> 121) where
  the protocol defines that segment (C1..S5 in the shipped protocol), else the plain cord id;
- the template has no vertebra masks, only the cord's vertebral level, so each vertebral
  level the protocol defines (C1..L1) is drawn as a stand-in "vertebra": the cord voxels of that
  level moved `VERTEBRA_OFFSET_MM` anteriorly. The template is straightened, so this keeps
  each level's exact rostro-caudal range (disc to disc) and its projection onto the cord;
- the CSF (`PAM50_csf`) takes the CSF id where nothing else is labelled, so that the dorsal
  CSF under each contact can be measured (`plan.contacts`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cordmap.errors import CordmapError
from cordmap.io.nifti import read_nifti
from cordmap.protocol.levels import SEGMENTS, VERTEBRAE, totalspineseg_vertebra
from cordmap.protocol.schema import LabelSchema
from cordmap.volume import LabelVolume

#: How far (mm, anterior) the stand-in vertebrae lie from the cord.
VERTEBRA_OFFSET_MM = 12.0
FILES = (
    "PAM50_cord.nii.gz",
    "PAM50_spinal_levels.nii.gz",
    "PAM50_levels.nii.gz",
    "PAM50_csf.nii.gz",
)


def load_pam50_labels(folder: str | Path, schema: LabelSchema | None = None) -> LabelVolume:
    """Combine the PAM50 cord, spinal-segment and vertebral-level masks into one label volume."""
    folder = Path(folder)
    schema = schema or LabelSchema.load()
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise CordmapError(
            f"{folder} lacks {', '.join(missing)}; point to the PAM50 template folder"
        )
    cord, segments, levels, csf = (read_nifti(folder / name) for name in FILES)
    out = np.zeros(cord.shape, dtype=np.uint16)
    out[cord.array > 0] = schema.find("cord").id
    for number in range(1, len(SEGMENTS) + 1):
        if 100 + number in schema:
            out[segments.array == number] = 100 + number
    shift = int(round(VERTEBRA_OFFSET_MM / levels.spacing[1]))
    for number, name in enumerate(VERTEBRAE[:20], start=1):  # PAM50_levels: C1..L1
        label_id = totalspineseg_vertebra(name)
        if label_id not in schema:
            continue
        mask = np.zeros_like(out, dtype=bool)
        mask[:, shift:, :] = levels.array[:, :-shift, :] == number
        out[mask & (out == 0)] = label_id
    out[(csf.array > 0) & (out == 0)] = schema.find("csf").id
    return LabelVolume(out, cord.affine, schema=schema)
