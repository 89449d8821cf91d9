"""The case report's figures, drawn offscreen with matplotlib into PNG bytes.

Figures are made with `matplotlib.figure.Figure` (the Agg canvas), not pyplot, so that
several reports can be drawn at once in threads (`cordmap batch --stage report`).

- `slice_figures`: a mid-sagittal slice through the cord and axial slices through the
  lumbosacral enlargement, with the labels in the schema's colours over the MRI (as the
  published Fig. 1B), level names written on the structures.
- `render_3d`: cord segments, vertebrae, discs and the candidate paddles seen from behind
  the patient (superior up, the patient's right on the right), decimated meshes in mplot3d.
- `coverage_figure`: coverage against the array's rostral position, vertebral levels
  shaded along the axis, candidates marked.
- `contact_figure`: a placement's contacts over the dorsal cord surface, with the dorsal
  root entry zones of each segment and the dorsal CSF thickness under each contact.

All coordinates are world RAS+ mm; positions along the cord are arc lengths from plan.json.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from cordmap.planning.geometry import cord_ids
from cordmap.planning.vertebral import body_name
from cordmap.viewer.state import PADDLE_COLOURS
from cordmap.volume import LabelVolume, Volume

if TYPE_CHECKING:
    from cordmap.planning.results import Placement, Plan

#: Opacity of the label colours over the MRI.
OVERLAY_ALPHA = 0.6
#: Structure classes drawn over the MRI slices and in 3D.
OVERLAY_CLASSES = ("cord", "segment", "conus", "vertebra", "disc")
#: Half the width (mm) of the axial crops, centred on the cord.
AXIAL_HALF_WIDTH_MM = 30.0
#: Number of axial slices through the enlargement.
AXIAL_SLICES = 4
#: Millimetres shown above and below the enlargement in the 3D view.
RENDER_MARGIN_MM = 45.0
#: Triangles kept per structure in the 3D view.
RENDER_FACES = 1500
#: Length (mm) of the scale bar in the 3D view.
SCALE_BAR_MM = 50.0
DPI = 110


def png_bytes(figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    return buffer.getvalue()


def label_overlay(
    gray: np.ndarray,
    labels: np.ndarray,
    colours: dict[int, tuple[float, float, float]],
    alpha: float = OVERLAY_ALPHA,
) -> np.ndarray:
    """RGB (float 0..1) of a grey image (0..1) with each label id in `colours` blended in
    at opacity `alpha`; other pixels stay grey."""
    rgb = np.repeat(np.clip(gray, 0, 1)[..., None], 3, axis=-1)
    for label_id, colour in colours.items():
        mask = labels == label_id
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.asarray(colour)
    return rgb


def overlay_colours(labels: LabelVolume) -> dict[int, tuple[float, float, float]]:
    """Schema colours (0..1) of the present labels drawn over the MRI."""
    schema = labels.schema
    present = set(labels.ids())
    return {
        label.id: _unit_rgb(label.colour)
        for label in schema.of_class(*OVERLAY_CLASSES)
        if label.id in present
    }


def _unit_rgb(colour: tuple[int, int, int]) -> tuple[float, float, float]:
    """A 0..255 RGB colour as matplotlib's 0..1 floats."""
    red, green, blue = colour
    return red / 255, green / 255, blue / 255


def normalised(image: Volume) -> np.ndarray:
    """The image scaled to 0..1 between its 0.5th and 99.5th percentiles."""
    low, high = np.percentile(image.array, [0.5, 99.5])
    return np.clip((image.array - low) / max(high - low, 1e-9), 0, 1)


def mid_sagittal_index(labels: LabelVolume, segments: list[int]) -> int:
    """Index (first voxel axis) of the sagittal slice through the enlargement's cord (the
    whole cord when none of `segments` is labelled)."""
    mask = np.isin(labels.array, segments)
    if not mask.any():
        mask = np.isin(labels.array, cord_ids(labels))
    return int(round(np.median(np.nonzero(mask)[0])))


def axial_picks(labels: LabelVolume, segment_ids: list[int]) -> list[tuple[str, str, int]]:
    """(title, colour, axial index) of up to AXIAL_SLICES labelled enlargement segments,
    evenly spread: the slice holding most of each segment's voxels."""
    present = [i for i in segment_ids if (labels.array == i).any()]
    chosen = [
        present[int(round(p))]
        for p in np.linspace(0, len(present) - 1, min(AXIAL_SLICES, len(present)))
    ]
    out = []
    for label_id in dict.fromkeys(chosen):
        counts = (labels.array == label_id).sum(axis=(0, 1))
        label = labels.schema[label_id]
        out.append((f"cord segment {label.level}", label.hex, int(np.argmax(counts))))
    return out


def slice_figures(
    image: Volume,
    labels: LabelVolume,
    segment_ids: list[int],
    axial: list[tuple[str, str, int]] | None = None,
    title: str | None = None,
    conus: tuple[list[float], str] | None = None,
    anchor_disc: tuple[list[float], str] | None = None,
    core_end: list[float] | None = None,
) -> tuple[bytes, bytes]:
    """PNGs of the mid-sagittal slice and of axial slices through the enlargement segments
    (`segment_ids`, rostral to caudal), labels in the schema colours over the MRI. `axial`:
    (title, colour, index) of the axial slices, by default `axial_picks`; `title` of the
    sagittal figure (how its vertebrae were numbered); `conus`: the conus tip found (RAS mm)
    and its level, `anchor_disc`: the disc an automatic count started from (RAS mm) and
    its name, and `core_end`: where the image shows the cord's core ending below that tip
    (RAS mm), marked on the sagittal figure."""
    gray = normalised(image)
    colours = overlay_colours(labels)
    picks = axial if axial is not None else axial_picks(labels, segment_ids)
    return (
        _sagittal(gray, labels, colours, segment_ids, title, conus, anchor_disc, core_end),
        _axial(gray, labels, colours, picks),
    )


def _mark(ax, y: float, z: float, text: str, colour: str) -> None:
    """A point of the sagittal figure marked with an arrowhead and named beside it."""
    ax.plot(y, z, marker="<", color=colour, markersize=7)
    ax.annotate(
        text,
        (y, z),
        (y - 10, z),
        fontsize=7,
        color=colour,
        va="center",
        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8),
    )


def _extent(labels: LabelVolume, axes: tuple[int, int]) -> list[float]:
    """imshow extent (mm, voxel edges) of a slice spanning voxel axes `axes`."""
    spacing = np.asarray(labels.spacing)
    origin = labels.world(np.zeros(3))
    out = []
    for axis in axes:
        start = origin[axis] - spacing[axis] / 2
        out += [start, start + labels.shape[axis] * spacing[axis]]
    return out


def _name_structures(ax, labels: LabelVolume, plane: np.ndarray, axes, ids, **style) -> None:
    """Write each label's level name at its centroid in a slice."""
    spacing = np.asarray(labels.spacing)
    origin = labels.world(np.zeros(3))
    for label_id in ids:
        where = np.argwhere(plane == label_id)
        if len(where) < 3:
            continue
        centre = where.mean(axis=0)
        x, y = (origin[a] + centre[n] * spacing[a] for n, a in enumerate(axes))
        ax.text(
            x, y, labels.schema[label_id].level, ha="center", va="center", clip_on=True, **style
        )


def _sagittal(
    gray,
    labels: LabelVolume,
    colours,
    segment_ids,
    title: str | None = None,
    conus: tuple[list[float], str] | None = None,
    anchor_disc: tuple[list[float], str] | None = None,
    core_end: list[float] | None = None,
) -> bytes:
    i = mid_sagittal_index(labels, segment_ids)
    plane = labels.array[i]  # (y, z)
    rgb = label_overlay(gray[i], plane, colours)
    figure = Figure(figsize=(4.2, 9))
    ax = figure.subplots()
    y0, y1, z0, z1 = _extent(labels, (1, 2))
    # anterior on the left, superior up
    ax.imshow(
        np.transpose(rgb, (1, 0, 2)),
        origin="lower",
        extent=(y0, y1, z0, z1),
        interpolation="nearest",
    )
    ax.invert_xaxis()
    schema = labels.schema
    present = [int(v) for v in np.unique(plane) if v in colours]
    vertebrae = [v for v in present if schema[v].structure == "vertebra"]
    segments = [v for v in present if schema[v].structure == "segment"]
    enlargement = [v for v in segments if v in segment_ids]
    spacing = np.asarray(labels.spacing)
    origin = labels.world(np.zeros(3))
    for label_id in vertebrae:  # vertebra names in front of their bodies
        where = np.argwhere(plane == label_id)
        front = where[where[:, 0] >= np.percentile(where[:, 0], 75)]
        z = origin[2] + front[:, 1].mean() * spacing[2]
        y = origin[1] + where[:, 0].max() * spacing[1] + 2
        ax.text(
            y,
            z,
            schema[label_id].level or "",
            fontsize=7,
            ha="right",
            va="center",
            bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8),
        )
    for label_id in enlargement:  # segment names beside the cord, on the posterior side
        where = np.argwhere(plane == label_id)
        z = origin[2] + where[:, 1].mean() * spacing[2]
        y = origin[1] + where[:, 0].min() * spacing[1] - 4
        ax.annotate(
            schema[label_id].level or "",
            (y + 4, z),
            (y - 8, z),
            fontsize=7,
            va="center",
            color=schema[label_id].hex,
            fontweight="bold",
            arrowprops=dict(arrowstyle="-", color=schema[label_id].hex, lw=0.8),
        )
    if conus is not None:  # where the automatic conus tip is, to check at a glance
        (_, y, z), level = conus
        _mark(ax, y, z, f"conus tip ({level})", "red")
    if core_end is not None:  # where the image puts the conus, below the segmented tip
        _, y, z = core_end
        _mark(ax, y, z, "cord's core in the image ends", "darkorange")
    if anchor_disc is not None:  # where the count started, to check at a glance
        (_, y, z), name = anchor_disc
        ax.plot(y, z, marker="o", color="navy", markersize=4)
        ax.annotate(
            f"{name} disc: count starts here",
            (y, z),
            (y - 8, z + 14),
            fontsize=7,
            color="navy",
            va="center",
            arrowprops=dict(arrowstyle="-", color="navy", lw=0.8),
            bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8),
        )
    ax.set_xlabel("anterior  \u2190  y (mm)  \u2192  posterior")
    ax.set_ylabel("inferior  \u2190  z (mm)  \u2192  superior")
    heading = f"Mid-sagittal slice (x = {labels.world([i, 0, 0])[0]:.1f} mm)"
    ax.set_title(heading + (f"\n{title}" if title else ""), fontsize=10 if not title else 8)
    handles = [Patch(color=colours[v], label=schema[v].name) for v in enlargement]
    if handles:
        ax.legend(
            handles=handles,
            loc="lower right",
            fontsize=6,
            title="enlargement",
            title_fontsize=7,
            framealpha=0.85,
        )
    return png_bytes(figure)


def _axial(gray, labels: LabelVolume, colours, picks) -> bytes:
    figure = Figure(figsize=(3.2 * max(len(picks), 1), 3.6))
    axes = figure.subplots(1, max(len(picks), 1), squeeze=False)
    schema = labels.schema
    x0, x1, y0, y1 = _extent(labels, (0, 1))
    cord = np.isin(labels.array, cord_ids(labels))
    for ax, (title, colour, k) in zip(axes[0], picks):
        plane = labels.array[:, :, k]
        rgb = label_overlay(gray[:, :, k], plane, colours)
        # radiological: anterior up, the patient's right on the left
        ax.imshow(
            np.transpose(rgb, (1, 0, 2)),
            origin="lower",
            extent=(x0, x1, y0, y1),
            interpolation="nearest",
        )
        inside = np.argwhere(cord[:, :, k])  # no cord in this slice: the image's centre
        middle = inside.mean(axis=0) if len(inside) else (np.array(labels.shape[:2]) - 1) / 2
        centre = labels.world(np.append(middle, k))
        ax.set_xlim(centre[0] + AXIAL_HALF_WIDTH_MM, centre[0] - AXIAL_HALF_WIDTH_MM)
        ax.set_ylim(centre[1] - AXIAL_HALF_WIDTH_MM, centre[1] + AXIAL_HALF_WIDTH_MM)
        z = labels.world([0, 0, k])[2]
        ax.set_title(f"{title}  (z = {z:.1f} mm)", fontsize=9, color=colour)
        ax.set_xlabel("R  \u2190  x (mm)  \u2192  L", fontsize=8)
        ax.set_ylabel("P  \u2190  y (mm)  \u2192  A", fontsize=8)
        ax.tick_params(labelsize=7)
        shown = [int(v) for v in np.unique(plane) if v in colours]
        present = [v for v in shown if schema[v].structure == "vertebra"]
        _name_structures(
            ax,
            labels,
            plane,
            (0, 1),
            present,
            fontsize=8,
            color="black",
            bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.7),
        )
    figure.suptitle("Axial slices along the cord", fontsize=10)
    figure.tight_layout()
    return png_bytes(figure)


# -- 3D ------------------------------------------------------------------------------------


def render_3d(
    meshes: dict,
    labels: LabelVolume,
    paddles: list[tuple[str, np.ndarray]],
    z_range: tuple[float, float],
) -> bytes:
    """PNG of the meshes ({label id: trimesh}) and paddle strips ((name, (n, 2, 3) edges) from
    `Centreline.dorsal_strip`) seen from behind, between heights `z_range` (mm)."""
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    schema = labels.schema
    figure = Figure(figsize=(7, 8.5))
    ax = figure.add_subplot(projection="3d", computed_zorder=False)
    low, high = z_range
    lows, highs = [], []
    order = sorted(meshes, key=lambda i: schema[i].structure not in ("vertebra", "disc"))
    for label_id in order:  # vertebrae first: translucent, behind the cord in drawing order
        mesh = _decimated(meshes[label_id])
        triangles = mesh.vertices[mesh.faces]
        keep = (triangles[:, :, 2].max(axis=1) >= low) & (triangles[:, :, 2].min(axis=1) <= high)
        triangles = triangles[keep]
        if not len(triangles):
            continue
        bony = schema[label_id].structure in ("vertebra", "disc")
        shade = _shaded(triangles, schema[label_id].colour[:3], 0.25 if bony else 1.0)
        ax.add_collection3d(Poly3DCollection(triangles, facecolors=shade, edgecolors="none"))
        lows.append(triangles.reshape(-1, 3).min(axis=0))
        highs.append(triangles.reshape(-1, 3).max(axis=0))
        if schema[label_id].structure == "vertebra":
            centre = triangles.reshape(-1, 3).mean(axis=0)
            right = triangles.reshape(-1, 3)[:, 0].max()
            ax.text(right + 4, centre[1], centre[2], schema[label_id].level, fontsize=8, zorder=10)
    handles = []
    for rank, (name, strip) in reversed(list(enumerate(paddles))):  # the best drawn last
        colour = PADDLE_COLOURS[rank % len(PADDLE_COLOURS)]
        quads = np.concatenate([strip[:-1], strip[1:, ::-1]], axis=1)  # (n-1, 4, 3)
        ax.add_collection3d(
            Poly3DCollection(
                quads,
                facecolors=colour,
                edgecolors="none",
                alpha=0.55 if rank == 0 else 0.3,
                zorder=5 + rank,
            )
        )
        outline = np.concatenate([strip[:, 0], strip[::-1, 1], strip[:1, 0]])
        ax.plot(*outline.T, color=colour, lw=1.6, zorder=6 + rank)
        handles.append(Patch(color=colour, label=name))
    lo, hi = np.min(lows, axis=0), np.max(highs, axis=0)
    lo[2], hi[2] = max(lo[2], low), min(hi[2], high)
    for setter, a, b in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), lo, hi):
        setter(a, b)
    ax.set_box_aspect(hi - lo)
    ax.view_init(elev=0, azim=-90)  # from behind: -y, superior up, patient's right on the right
    ax.set_axis_off()
    bar_x, bar_y, bar_top = lo[0] - 3, lo[1], hi[2] - 2
    ax.plot([bar_x, bar_x], [bar_y, bar_y], [bar_top - SCALE_BAR_MM, bar_top], color="black", lw=2)
    ax.text(
        bar_x - 2,
        bar_y,
        bar_top - SCALE_BAR_MM / 2,
        f"{SCALE_BAR_MM:g} mm",
        ha="right",
        va="center",
        fontsize=8,
    )
    ax.set_title(
        "Posterior view (superior up, patient's right on the right):\n"
        + ("cord segments, vertebrae and candidate paddles" if paddles else "cord and vertebrae"),
        fontsize=10,
    )
    segments = [i for i in meshes if schema[i].structure == "segment"]
    handles = handles[::-1] + [
        Patch(color=_unit_rgb(schema[i].colour), label=schema[i].name) for i in segments
    ]
    ax.legend(
        handles=handles, loc="upper left", fontsize=7, framealpha=0.85, bbox_to_anchor=(0.78, 0.95)
    )
    return png_bytes(figure)


def _decimated(mesh):
    if len(mesh.faces) <= RENDER_FACES:
        return mesh
    return mesh.simplify_quadric_decimation(face_count=RENDER_FACES)


def _shaded(triangles: np.ndarray, rgb, alpha: float) -> np.ndarray:
    """Per-face RGBA lit from the viewer's side (behind the patient) and from above."""
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    light = np.array([0.3, -0.8, 0.5])
    light /= np.linalg.norm(light)
    shade = 0.45 + 0.55 * np.abs(normals @ light)
    colour = np.asarray(rgb, dtype=float) / 255
    return np.column_stack([np.clip(shade[:, None] * colour, 0, 1), np.full(len(shade), alpha)])


# -- coverage curve --------------------------------------------------------------------------


def coverage_figure(plan: Plan) -> bytes:
    """PNG of volume and length coverage against the rostral end's arc length, vertebral
    bodies shaded and named along the axis, the candidates marked."""
    curve = plan.curve
    figure = Figure(figsize=(9, 4.2))
    ax = figure.subplots()
    ax.plot(
        curve.positions,
        curve.volume_pct,
        color="#1f4e9a",
        lw=2,
        label="enlargement volume covered",
    )
    ax.plot(
        curve.positions,
        curve.length_pct,
        color="#1f4e9a",
        lw=1,
        ls="--",
        label="enlargement length covered",
    )
    left, right = curve.positions[0], curve.positions[-1]
    for n, (name, (a, b)) in enumerate(plan.levels.vertebrae.items()):
        if b < left or a > right:
            continue
        ax.axvspan(max(a, left), min(b, right), color="0.85" if n % 2 else "0.92", zorder=0)
        ax.text(
            (max(a, left) + min(b, right)) / 2,
            102,
            body_name(name),
            ha="center",
            va="bottom",
            fontsize=8,
            color="0.25",
        )
    for rank, candidate in enumerate(plan.candidates):
        colour = PADDLE_COLOURS[rank % len(PADDLE_COLOURS)]
        ax.axvline(candidate.coverage.rostral, color=colour, lw=1.2)
        ax.plot(
            candidate.coverage.rostral,
            candidate.coverage.volume_pct,
            "o",
            color=colour,
            markeredgecolor="black",
            zorder=5,
            label=f"#{candidate.rank}: {candidate.coverage.volume_pct:.1f} % "
            f"(rostral edge {candidate.rostral_edge})",
        )
    ax.set_xlim(left, right)
    ax.set_ylim(0, 110)
    ax.set_xlabel(
        "position of the array's rostral end: mm along the cord (vertebral bodies "
        "shaded and named at the level of the cord)"
    )
    ax.set_ylabel("coverage of the enlargement (%)")
    ax.set_title(
        f"Coverage of the {plan.enlargement.span} enlargement by the "
        f"{plan.paddle.name} array ({plan.paddle.array_length_mm:g} mm)",
        fontsize=10,
    )
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    return png_bytes(figure)


# -- contacts over the dorsal cord surface ----------------------------------------------------

#: Millimetres of cord shown above and below the array in the contact figure.
CONTACT_MARGIN_MM = 8.0


def contact_figure(plan: Plan, placements: list[tuple[str, Placement]]) -> bytes:
    """PNG of each placement's contacts over the dorsal surface of the cord, seen from
    behind (the patient's right on the right, rostral up), unrolled along the centreline:
    the cord's width, the dorsal root entry zones of each segment (target segments drawn
    thick) with the segments named, the paddle's outline and its contacts numbered as in
    the contact map, coloured by their dorsal CSF thickness."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    surface = plan.dorsal_surface
    s = np.asarray(surface.s)
    width = np.asarray(surface.cord_half_width)
    zone = np.asarray(surface.entry_zone)
    targets = set(plan.targets.segments if plan.targets else ())
    paddle = plan.paddle
    values = [c.dcsf_mm for _, p in placements for c in p.contacts if c.dcsf_mm is not None]
    norm = Normalize(min(values, default=0.0), max(values, default=1.0) + 1e-6)
    cmap = colormaps["viridis"]
    figure = Figure(figsize=(3.6 * len(placements) + 1.2, 7.5))
    axes = figure.subplots(1, len(placements), squeeze=False)[0]
    for ax, (title, placement) in zip(axes, placements):
        top = placement.coverage.rostral - CONTACT_MARGIN_MM
        bottom = placement.coverage.caudal + CONTACT_MARGIN_MM
        shown = (s >= top) & (s <= bottom)
        ax.fill_betweenx(
            s[shown],
            -width[shown],
            width[shown],
            color="0.88",
            zorder=0,
            label="cord (moment-equivalent width)",
        )
        for n, (name, (a, b)) in enumerate(
            sorted(surface.segments.items(), key=lambda item: item[1][0])
        ):
            if b < top or a > bottom:
                continue
            part = shown & (s >= a) & (s <= b)
            colour = "#c03020" if n % 2 else "#2050b0"
            thick = 3.0 if name in targets else 1.2
            for side in (-1, 1):
                ax.plot(side * zone[part], s[part], color=colour, lw=thick, zorder=2)
            ax.axhline(a, color="0.55", lw=0.6, ls=":", zorder=1)
            ax.text(
                -paddle.width_mm / 2 - 1.2,
                (max(a, top) + min(b, bottom)) / 2,
                name + (" (target)" if name in targets else ""),
                ha="right",
                va="center",
                fontsize=8,
                color=colour,
            )
        ax.add_patch(
            Rectangle(
                (-paddle.width_mm / 2, placement.coverage.rostral),
                paddle.width_mm,
                placement.coverage.caudal - placement.coverage.rostral,
                fill=False,
                ec="black",
                lw=1.2,
                zorder=3,
            )
        )
        for contact in placement.contacts:
            row = paddle.rows[contact.row - 1]
            dcsf = contact.dcsf_mm
            ax.add_patch(
                Rectangle(
                    (
                        contact.lateral_mm - row.contact_width_mm / 2,
                        contact.s_mm - row.contact_length_mm / 2,
                    ),
                    row.contact_width_mm,
                    row.contact_length_mm,
                    fc=cmap(norm(dcsf)) if dcsf is not None else "white",
                    ec="black",
                    lw=0.8,
                    hatch=None if dcsf is not None else "///",
                    zorder=4,
                )
            )
            ax.text(
                contact.lateral_mm,
                contact.s_mm,
                str(contact.number),
                ha="center",
                va="center",
                fontsize=6.5,
                zorder=5,
                color="white" if dcsf is not None and norm(dcsf) < 0.6 else "black",
            )
        half = max(paddle.width_mm / 2, float(width[shown].max(initial=0.0))) + 1.5
        ax.set_xlim(-half - 7, half)
        ax.set_ylim(bottom, top)  # rostral up
        ax.set_aspect("equal")
        ax.set_xlabel("mm from the midline (patient's right →)", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("mm along the cord (rostral up)", fontsize=8)
    if values:
        bar = figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=list(axes), shrink=0.6)
        bar.set_label("dorsal CSF thickness under the contact (mm)", fontsize=8)
    figure.suptitle(
        "Contacts over the dorsal cord: entry zones of the dorsal roots by segment", fontsize=10
    )
    return png_bytes(figure)
