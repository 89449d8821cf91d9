"""Regenerate src/cordmap/anatomy/protocol.json, the annotation protocol (run from the repo root).

The JSON file is the source of truth that cordmap reads; this script only documents how
its ids and colours were chosen and rebuilds it if the protocol's coverage changes.
"""

import colorsys
import json
from pathlib import Path

from cordmap.anatomy.levels import SEGMENTS, VERTEBRAE, pam50_segment, totalspineseg_vertebra

SEG_RANGE = SEGMENTS[SEGMENTS.index("T8"):]               # T8 .. S5
VERT_RANGE = VERTEBRAE[VERTEBRAE.index("T8"):]            # T8 .. L5, sacrum
ROOT_OFFSETS = {("dorsal_root", "left"): 200, ("dorsal_root", "right"): 300,
                ("ventral_root", "left"): 400, ("ventral_root", "right"): 500}


def hexcolour(h, s, v):
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return "#{:02x}{:02x}{:02x}".format(round(r * 255), round(g * 255), round(b * 255))


def label(id, name, cls, colour, level=None, side=None, **codes):
    return {"id": id, "name": name, "class": cls, "level": level, "side": side,
            "colour": colour, **{k: v for k, v in codes.items() if v is not None}}


labels = [
    label(1, "spinal cord (unassigned segment)", "cord", "#d9d9d9", totalspineseg=1),
    label(2, "CSF", "csf", "#5fc3e4", totalspineseg=2),
    label(60, "conus medullaris", "conus", "#ff2fa0", sct=60),
    # level-free labels: what an annotator or a model knows before levels are assigned (the
    # U-Net writes these; cordmap's own level labelling or an annotator refines them)
    label(3, "vertebra (level not assigned)", "vertebra", "#c8b89a"),
    label(4, "disc (level not assigned)", "disc", "#8fa8e8"),
    label(5, "dorsal root (level and side not assigned)", "dorsal_root", "#f2b33d"),
    label(6, "ventral root (level and side not assigned)", "ventral_root", "#5fd35f"),
]
n = len(SEG_RANGE)
for i, seg in enumerate(SEG_RANGE):
    labels.append(label(100 + pam50_segment(seg), f"cord segment {seg}", "segment",
                        hexcolour(0.66 - 0.66 * i / (n - 1), 0.75, 0.95), level=seg,
                        pam50=pam50_segment(seg)))
for i, v in enumerate(VERT_RANGE):
    name = "sacrum" if v == "S" else f"vertebra {v}"
    # bone tones, alternating in saturation and darkening caudally: every colour unique, so
    # colour-coded masks can tell vertebrae apart
    shade = 0.95 - 0.3 * i / (len(VERT_RANGE) - 1)
    labels.append(label(totalspineseg_vertebra(v), name, "vertebra",
                        hexcolour(0.11, 0.18 if i % 2 == 0 else 0.34, shade),
                        level=v, totalspineseg=totalspineseg_vertebra(v)))
for i, (upper, lower) in enumerate(zip(VERT_RANGE, VERT_RANGE[1:])):
    tid = totalspineseg_vertebra(lower) + 50
    labels.append(label(tid, f"disc {upper}-{lower if lower != 'S' else 'S1'}", "disc",
                        hexcolour(0.62, 0.5, 1.0 - 0.35 * i / (len(VERT_RANGE) - 2)),
                        level=f"{upper}-{lower}", totalspineseg=tid))
for (cls, side), offset in ROOT_OFFSETS.items():
    base_hue = 0.08 if cls == "dorsal_root" else 0.33
    for i, seg in enumerate(SEG_RANGE):
        labels.append(label(offset + pam50_segment(seg),
                            f"{cls.split('_')[0]} root {seg} {side}", cls,
                            hexcolour(base_hue + (0.04 if side == "right" else 0.0) + 0.08 * i / n,
                                      0.85, 0.95 if side == "left" else 0.8),
                            level=seg, side=side, pam50=pam50_segment(seg)))

protocol = {
    "name": "cordmap-lumbosacral",
    "version": "1.1.0",
    "description": "Annotation protocol for planning epidural stimulation over the lumbosacral "
                   "spinal cord: vertebrae T8..sacrum, discs, cord segments T8..S5, dorsal and "
                   "ventral roots by level and side, CSF and the conus medullaris.",
    "codes": {
        "pam50": "PAM50 spinal segment number (C1=1 .. T12=20, L1=21 .. S5=30)",
        "totalspineseg": "TotalSpineSeg label id (cord=1, canal=2, T1=21 .. L1=41 .. sacrum=50; disc = vertebra below + 50)",
        "sct": "Spinal Cord Toolbox point label (conus=60)",
    },
    "required": [
        {"structure": "spinal cord", "classes": ["cord", "segment", "conus"]},
        {"structure": "CSF", "classes": ["csf"]},
        {"structure": "vertebrae", "classes": ["vertebra"]},
    ],
    "labels": labels,
}
out = Path("src/cordmap/anatomy/protocol.json")
out.write_text(json.dumps(protocol, indent=1) + "\n")
print(f"{out}: {len(labels)} labels")
