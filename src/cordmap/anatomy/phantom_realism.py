"""The phantom's proportions beside those of the PAM50 template (a realism check).

Both are measured the same way: lengths along the cord, positions as a continuous
vertebral coordinate numbered as PAM50_levels (T9 = 16 ... T12 = 19, L1 = 20, L2 = 21),
where level n runs from the middle of the disc above vertebra n (n.0) to the middle of
the disc below it (n + 1), as PAM50_levels assigns cord voxels to vertebral levels.
PAM50 is straightened, so its lengths along the cord are lengths along z.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cordmap.anatomy.phantom_geometry import VERTEBRAE, PhantomGeometry
from cordmap.errors import CordmapError
from cordmap.io.nifti import read_nifti
from cordmap.protocol.levels import SEGMENTS

#: PAM50_levels number of each modelled vertebra (the sacrum continues the sequence).
LEVEL_NUMBER = {name: 16 + i for i, name in enumerate(VERTEBRAE)}
#: Spinal segments of PAM50: lumbosacral cord L1..S5 and enlargement L1..S2.
LUMBOSACRAL, ENLARGEMENT, THORACIC = (21, 30), (21, 27), (17, 20)
#: How far the phantom may lie from PAM50 (see docs/phantom.md): lengths as a fraction of
#: PAM50's (adult cords differ by about this much with stature), positions in vertebral
#: levels (the conus ends between T12 and L2 in most adults, one level around PAM50's).
#: The widest point gets 1.5 levels: the phantom puts it in the L4..S1 segments, as the
#: clinical descriptions do, while the template's shallow maximum lies at L2/L3.
TOLERANCE = {
    "lumbosacral_length_mm": 0.2,
    "enlargement_length_mm": 0.2,
    "thoracic_area_mm2": 0.15,
    "enlargement_top_level": 1.0,
    "enlargement_bottom_level": 1.0,
    "tip_level": 1.0,
    "max_area_level": 1.5,
}
FILES = ("PAM50_cord.nii.gz", "PAM50_spinal_levels.nii.gz", "PAM50_label_disc.nii.gz")


def pam50_proportions(folder: str | Path) -> dict:
    """Lumbosacral proportions of the PAM50 template in `folder` (its `pam50/` files)."""

    folder = Path(folder)
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise CordmapError(f"{folder} lacks {', '.join(missing)}; pass the PAM50 template folder")
    cord, segments, discs = (read_nifti(folder / name) for name in FILES)
    step = cord.spacing[2]
    z = cord.world(
        np.stack(
            [np.zeros(cord.shape[2]), np.zeros(cord.shape[2]), np.arange(cord.shape[2])], axis=1
        )
    )[:, 2]
    area = (cord.array > 0.5).sum(axis=(0, 1)) * cord.spacing[0] * cord.spacing[1]
    seg = np.rint(segments.array).astype(np.uint8)
    highest = seg.max(axis=(0, 1))  # segments present in a slice form a run of numbers
    lowest = np.where(seg > 0, seg, 255).min(axis=(0, 1))

    def span(first, last):
        """z of the top of segment `first` and the bottom of `last` (slice edges)."""
        top = z[(lowest <= first) & (highest >= first)].max() + step / 2
        bottom = z[(lowest <= last) & (highest >= last)].min() - step / 2
        return top, bottom

    points = np.argwhere(np.rint(discs.array) > 0)
    disc_ids = np.rint(discs.array[tuple(points.T)]).astype(int)
    disc_z = {int(n): float(discs.world(p)[2]) for n, p in zip(disc_ids, points) if 1 <= n <= 30}
    tops = sorted(disc_z)

    def level(zz):
        for n in tops:
            if n + 1 in disc_z and disc_z[n + 1] <= zz <= disc_z[n]:
                return n + (disc_z[n] - zz) / (disc_z[n] - disc_z[n + 1])
        raise CordmapError(f"PAM50 position z = {zz:.1f} mm lies outside its disc labels")

    ls_top, tip = span(*LUMBOSACRAL)
    _, enl_bottom = span(*ENLARGEMENT)
    th_top, th_bottom = span(*THORACIC)
    lumbar = (z < ls_top) & (z > tip)
    peak = float(z[np.flatnonzero(lumbar)[np.argmax(area[lumbar])]])
    thoracic = (z < th_top) & (z > th_bottom)
    peak_segment = int(highest[np.argmin(np.abs(z - peak))])
    return _proportions(
        lumbosacral=ls_top - tip,
        enlargement=ls_top - enl_bottom,
        thoracic_area=float(area[thoracic].mean()),
        max_area=float(area[lumbar].max()),
        peak_segment=_segment_name(peak_segment),
        levels=[level(x) for x in (ls_top, enl_bottom, tip, peak)],
    )


def phantom_proportions(geometry: PhantomGeometry) -> dict:
    """The same proportions, exact, for a phantom's geometry."""
    top, bottom = geometry.segment("L1").superior, geometry.segment("S2").inferior
    return _proportions(
        lumbosacral=geometry.tip - top,
        enlargement=bottom - top,
        thoracic_area=float(geometry.cord_area(geometry.segments[0].middle)),
        max_area=float(geometry.cord_area(geometry.peak)),
        peak_segment=geometry.segment_at(geometry.peak),
        levels=[vertebral_level(geometry, s) for s in (top, bottom, geometry.tip, geometry.peak)],
    )


def vertebral_level(geometry: PhantomGeometry, s: float) -> float:
    """Continuous PAM50_levels coordinate of arc length `s` (disc middles are whole numbers)."""
    bounds = [geometry.vertebrae[0].superior - 2.5]
    bounds += [d.middle for d in geometry.discs] + [geometry.vertebrae[-1].inferior]
    numbers = [LEVEL_NUMBER[v.name] for v in geometry.vertebrae] + [LEVEL_NUMBER["S"] + 1]
    return float(np.interp(s, bounds, numbers))


def compare(phantom: dict, pam50: dict) -> dict[str, tuple[float, float, bool]]:
    """For each toleranced measure: (phantom value, allowed deviation, within tolerance)."""
    out = {}
    for key, tolerance in TOLERANCE.items():
        allowed = tolerance * pam50[key] if key.endswith(("_mm", "_mm2")) else tolerance
        out[key] = (phantom[key], allowed, abs(phantom[key] - pam50[key]) <= allowed)
    return out


def _proportions(*, lumbosacral, enlargement, thoracic_area, max_area, peak_segment, levels):
    return {
        "lumbosacral_length_mm": round(float(lumbosacral), 2),
        "enlargement_length_mm": round(float(enlargement), 2),
        "enlargement_fraction": round(float(enlargement / lumbosacral), 3),
        "thoracic_area_mm2": round(thoracic_area, 2),
        "max_area_mm2": round(max_area, 2),
        "area_ratio": round(max_area / thoracic_area, 3),
        "max_area_segment": peak_segment,
        "enlargement_top_level": round(float(levels[0]), 2),
        "enlargement_bottom_level": round(float(levels[1]), 2),
        "tip_level": round(float(levels[2]), 2),
        "max_area_level": round(float(levels[3]), 2),
    }


def _segment_name(number: int) -> str:

    return SEGMENTS[number - 1]


def level_name(level: float) -> str:
    """Readable form of a continuous level: 19.4 -> "T12 (0.40)"."""
    names = {n: v for v, n in LEVEL_NUMBER.items()} | {7 + i: f"T{i}" for i in range(1, 9)}
    whole = int(np.floor(level))
    return f"{names.get(whole, whole)} ({level - whole:.2f})"
