"""Regenerate src/cordmap/protocol/protocol.json, the annotation protocol (run from the repo root).

The JSON file is the source of truth that cordmap reads; this script only documents how
its ids and colours were chosen and rebuilds it if the protocol's coverage changes.

Ids and colours never change once published (models and cases depend on them): the
lumbosacral labels of 1.1.0 (T8..S5, vertebrae T8..sacrum) keep their colours, computed as
before from their place in that range; the labels added in 1.2.0 (C1..T7) get colours of
their own, and the script refuses to write a protocol in which two labels share a colour.
"""

import colorsys
import json
from pathlib import Path

from cordmap.protocol.levels import SEGMENTS, VERTEBRAE, pam50_segment, totalspineseg_vertebra

SEG_RANGE = SEGMENTS  # C1 .. S5
VERT_RANGE = VERTEBRAE  # C1 .. L5, sacrum
#: The range of protocol 1.1.0, whose colours are kept.
FIRST_SEG_1_1 = SEGMENTS.index("T8")
FIRST_VERT_1_1 = VERTEBRAE.index("T8")
N_SEG_1_1 = len(SEGMENTS) - FIRST_SEG_1_1  # 15 segments T8 .. S5
N_VERT_1_1 = len(VERTEBRAE) - FIRST_VERT_1_1  # 11 vertebrae T8 .. sacrum
ROOT_OFFSETS = {
    ("dorsal_root", "left"): 200,
    ("dorsal_root", "right"): 300,
    ("ventral_root", "left"): 400,
    ("ventral_root", "right"): 500,
}
CHANGELOG = [
    "1.2.0: the whole cord: cord segments and dorsal/ventral roots C1..S5, vertebrae C1..T7 and "
    "discs C2-C3..T7-T8 added (TotalSpineSeg ids); existing ids and colours unchanged",
    "1.1.0: level-free vertebra, disc and root labels (ids 3-6)",
    "1.0.0: lumbosacral protocol: vertebrae T8..sacrum, discs, cord segments and roots T8..S5",
]


def hexcolour(h, s, v):
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def label(id, name, cls, colour, level=None, side=None, **codes):
    return {
        "id": id,
        "name": name,
        "class": cls,
        "level": level,
        "side": side,
        "colour": colour,
        **{k: v for k, v in codes.items() if v is not None},
    }


def segment_colour(seg):
    i = SEGMENTS.index(seg) - FIRST_SEG_1_1
    if i >= 0:  # 1.1.0: blue (T8) through green to red (S5)
        return hexcolour(0.66 - 0.66 * i / (N_SEG_1_1 - 1), 0.75, 0.95)
    # C1..T7: paler, from pink (C1) to violet, running on into T8's blue
    j = SEGMENTS.index(seg)
    return hexcolour(0.92 - 0.24 * j / (FIRST_SEG_1_1 - 1), 0.55, 0.9)


def vertebra_colour(v):
    # bone tones, alternating in saturation and darkening caudally: every colour unique, so
    # colour-coded masks can tell vertebrae apart
    i = VERTEBRAE.index(v) - FIRST_VERT_1_1
    if i >= 0:
        return hexcolour(0.11, 0.18 if i % 2 == 0 else 0.34, 0.95 - 0.3 * i / (N_VERT_1_1 - 1))
    j = VERTEBRAE.index(v)  # C1..T7: a redder bone tone
    return hexcolour(0.07, 0.12 if j % 2 == 0 else 0.27, 0.98 - 0.2 * j / (FIRST_VERT_1_1 - 1))


def disc_colour(lower):
    i = VERTEBRAE.index(lower) - FIRST_VERT_1_1 - 1
    if i >= 0:
        return hexcolour(0.62, 0.5, 1.0 - 0.35 * i / (N_VERT_1_1 - 2))
    j = VERTEBRAE.index(lower) - VERTEBRAE.index("C3")  # C2-C3 .. T7-T8: a greener blue
    return hexcolour(0.55, 0.45, 1.0 - 0.3 * j / (FIRST_VERT_1_1 - 2))


def root_colour(cls, side, seg):
    # 1.1.0's gradient along T8..S5, run on rostrally (negative i) for C1..T7
    i = SEGMENTS.index(seg) - FIRST_SEG_1_1
    base_hue = 0.08 if cls == "dorsal_root" else 0.33
    return hexcolour(
        base_hue + (0.04 if side == "right" else 0.0) + 0.08 * i / N_SEG_1_1,
        0.85,
        0.95 if side == "left" else 0.8,
    )


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
for seg in SEG_RANGE:
    labels.append(
        label(
            100 + pam50_segment(seg),
            f"cord segment {seg}",
            "segment",
            segment_colour(seg),
            level=seg,
            pam50=pam50_segment(seg),
        )
    )
for v in VERT_RANGE:
    name = "sacrum" if v == "S" else f"vertebra {v}"
    labels.append(
        label(
            totalspineseg_vertebra(v),
            name,
            "vertebra",
            vertebra_colour(v),
            level=v,
            totalspineseg=totalspineseg_vertebra(v),
        )
    )
for upper, lower in zip(VERT_RANGE[1:], VERT_RANGE[2:]):  # no disc between C1 and C2
    tid = totalspineseg_vertebra(lower) + 50
    labels.append(
        label(
            tid,
            f"disc {upper}-{lower if lower != 'S' else 'S1'}",
            "disc",
            disc_colour(lower),
            level=f"{upper}-{lower}",
            totalspineseg=tid,
        )
    )
for (cls, side), offset in ROOT_OFFSETS.items():
    for seg in SEG_RANGE:
        labels.append(
            label(
                offset + pam50_segment(seg),
                f"{cls.split('_')[0]} root {seg} {side}",
                cls,
                root_colour(cls, side, seg),
                level=seg,
                side=side,
                pam50=pam50_segment(seg),
            )
        )

colours = [item["colour"] for item in labels]
shared = sorted({c for c in colours if colours.count(c) > 1})
if shared:
    raise SystemExit(f"labels share the colours {shared}: choose other colours")

protocol = {
    "name": "cordmap-lumbosacral",
    "version": "1.2.0",
    "description": "Annotation protocol for planning epidural stimulation over the lumbosacral "
    "spinal cord, covering the whole cord so that cervical and thoracic data "
    "(e.g. Spinal Cord Toolbox outputs) use it too: vertebrae C1..sacrum, discs, "
    "cord segments C1..S5, dorsal and ventral roots by level and side, CSF and "
    "the conus medullaris.",
    "changelog": CHANGELOG,
    "codes": {
        "pam50": "PAM50 spinal segment number (C1=1 .. T12=20, L1=21 .. S5=30)",
        "totalspineseg": "TotalSpineSeg label id (cord=1, canal=2, C1=11 .. T1=21 .. L1=41 .. sacrum=50; disc = vertebra below + 50)",
        "sct": "Spinal Cord Toolbox point label (conus=60)",
    },
    "required": [
        {"structure": "spinal cord", "classes": ["cord", "segment", "conus"]},
        {"structure": "CSF", "classes": ["csf"]},
        {"structure": "vertebrae", "classes": ["vertebra"]},
    ],
    "labels": labels,
}
out = Path("src/cordmap/protocol/protocol.json")
out.write_text(json.dumps(protocol, indent=1) + "\n")
print(f"{out}: {len(labels)} labels")
