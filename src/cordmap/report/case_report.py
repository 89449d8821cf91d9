"""The case report: one self-contained HTML page a surgeon can open anywhere.

`draw_figures` and `render_html` make it from objects: MRI slices with the labels in the
schema colours, a 3D view of the cord, vertebrae and candidate paddles from behind, the
coverage curve, the candidates table in vertebral terms, the best placement's contacts
(table and figure over the dorsal root entry zones), the ranking by target roots when the
plan has targets, and how to open the live viewer. Images are embedded as base64 PNG, so
the page has no external reference except the optional relative link to a static viewer
site. `cordmap.pipeline.report` writes it for a case folder.
"""

from __future__ import annotations

import base64
import html
import os
import shlex
from pathlib import Path

import numpy as np

from cordmap import __version__
from cordmap.anatomy.cord_extent import CORE_NOTE_MM
from cordmap.planning.measured import UNITS
from cordmap.planning.paddles import Paddle
from cordmap.planning.results import Placement, Plan
from cordmap.report import figures

#: Without a plan, the axial slices and the 3D view follow the cord's last CORD_TAIL_MM:
#: its conus, and what the image shows of the enlargement above it.
CORD_TAIL_MM = 60.0


def draw_figures(
    image, labels, plan: Plan | None, meshes: dict, automatic: dict | None = None
) -> dict[str, bytes]:
    """The report's PNGs: sagittal, axial, 3d (from `meshes`, {label id: mesh}), and with a
    plan coverage and contacts. Without one the axial slices and the 3D view follow the
    cord's last CORD_TAIL_MM."""
    from cordmap.planning.geometry import candidate_strips, measure_cord

    schema = labels.schema
    geometry = measure_cord(labels)
    slices, segment_ids, strips = None, [], []
    if plan is not None:
        segment_ids = [schema.find("segment", n).id for n in plan.enlargement.segments]
        start, end = plan.enlargement.start, plan.enlargement.end
        if plan.enlargement.estimated:  # no segment labelled: slices along its extent
            slices = _slices_along(labels, geometry, start, end, "estimated enlargement")
        strips = [
            (f"paddle #{c.rank}: {c.coverage.volume_pct:.1f} %", strip)
            for c, strip, _ in candidate_strips(geometry, plan)
        ]
    else:
        end = geometry.length
        start = max(geometry.cord.start, end - CORD_TAIL_MM)
        slices = _slices_along(labels, geometry, start, end, "cord")
    levels = (automatic or {}).get("levels")
    title = levels["summary"] if levels else None
    conus = anchor_disc = core_end = None
    if levels and levels.get("conus_tip_ras_mm"):
        conus = (levels["conus_tip_ras_mm"], levels["conus_level"])
        core = (automatic or {}).get("conus_core_mm")
        if core is not None and core >= CORE_NOTE_MM:  # where the image puts the conus
            x, y, z = levels["conus_tip_ras_mm"]
            core_end = [x, y, z - core]
    if levels and levels.get("anchor_disc_ras_mm"):
        anchor_disc = (levels["anchor_disc_ras_mm"], levels["anchor_disc"])
    sagittal, axial = figures.slice_figures(
        image, labels, segment_ids, slices, title, conus, anchor_disc, core_end
    )
    present = set(labels.ids())
    wanted = [
        label.id
        for label in schema.of_class("cord", "segment", "conus", "vertebra", "disc")
        if label.id in present
    ]
    meshes = {i: meshes[i] for i in wanted if i in meshes}
    z = geometry.centreline.point([start, end])[:, 2]
    render = figures.render_3d(
        meshes,
        labels,
        strips,
        (z.min() - figures.RENDER_MARGIN_MM, z.max() + figures.RENDER_MARGIN_MM),
    )
    out = {"sagittal": sagittal, "axial": axial, "3d": render}
    if plan is not None:
        out["coverage"] = figures.coverage_figure(plan)
        out["contacts"] = figures.contact_figure(plan, contact_placements(plan))
    return out


def _slices_along(labels, geometry, start: float, end: float, title: str) -> list:
    """(title, colour, axial index) of AXIAL_SLICES slices between arc lengths start, end."""
    points = geometry.centreline.point(np.linspace(start, end, figures.AXIAL_SLICES))
    k = np.clip(np.round(labels.voxel(points)[:, 2]).astype(int), 0, labels.shape[2] - 1)
    return [(title, "#404040", int(i)) for i in dict.fromkeys(k)]


def contact_placements(plan: Plan) -> list[tuple[str, Placement]]:
    """The placements whose contacts the report shows: the best by volume, and the best by
    target score when the plan has targets."""
    shown = [("best by volume", plan.best)]
    if plan.targets is not None:
        shown.append(("best for the targets", plan.targets.best))
    return [(f"{title}\n{p.coverage.rostral:.1f} mm ({p.rostral_edge})", p) for title, p in shown]


# -- HTML ------------------------------------------------------------------------------------

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;border-bottom:1px solid #ccc;
padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right;vertical-align:top}
th{background:#f2f2f2}td.text,th.text{text-align:left}
.muted{color:#666;font-size:.9em}.warn{color:#a40}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}
.row{display:flex;gap:1em;flex-wrap:wrap;align-items:flex-start}
code{background:#f4f4f4;padding:.1em .3em}
"""


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def render_html(
    subject: str,
    plan: Plan | None,
    images: dict[str, bytes],
    case_root: Path,
    out: Path,
    site: Path | None,
    automatic: dict | None = None,
    labels_name: str = "",
    no_plan: str | None = None,
) -> str:
    """The report page (a string), naming the label file `labels_name`. Without a `plan`,
    `no_plan` says why: the page shows the labels, the automatic steps and the viewer."""
    e = html.escape
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>cordmap report {e(subject)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Paddle placement report: {e(subject)}</h1>",
        f"<p class='muted'>cordmap {e(__version__)} &middot; labels {e(labels_name)} "
        f"&middot; {e(UNITS)}</p>",
        "<h2>Summary</h2>",
        _summary(plan, automatic) if plan else _no_plan(no_plan or "", automatic),
        _automatic(automatic),
        _plan_sections(plan, images) if plan else "",
        "<h2>3D view</h2>",
        f"<figure>{_img(images['3d'], 'posterior 3D view')}<figcaption class='muted'>Seen "
        "from behind the patient (patient's right on the right, superior up)."
        + (
            f" Each candidate is drawn {plan.paddle.width_mm:g} mm wide over the dorsal "
            "midline between its rostral and caudal edges."
            if plan
            else ""
        )
        + "</figcaption></figure>",
        "<h2>MRI with labels</h2>",
        "<div class='row'>",
        f"<figure>{_img(images['sagittal'], 'mid-sagittal slice')}</figure>",
        f"<figure>{_img(images['axial'], 'axial slices')}<figcaption class='muted'>Axial "
        "slices shown radiologically: anterior up, the patient's right on the left."
        "</figcaption></figure>",
        "</div>",
        "<h2>Live 3D viewer</h2>",
        _viewer(case_root, out, site),
        _paddle(plan.paddle) if plan else "",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _plan_sections(plan: Plan, images: dict[str, bytes]) -> str:
    """The candidates, contacts and coverage sections of a planned case."""
    parts = [
        "<h2>Candidate placements</h2>",
        _candidates_table(plan),
        _segments_table(plan),
        _targets(plan),
        "<h2>Contacts</h2>",
        _contacts_table(plan.best, "contacts", "best placement by volume"),
        (
            _contacts_table(plan.targets.best, "target-contacts", "best placement for the targets")
            if plan.targets is not None
            else ""
        ),
        f"<figure>{_img(images['contacts'], 'contacts over the dorsal cord')}<figcaption "
        "class='muted'>The cord's dorsal surface seen from behind and unrolled along the "
        "centreline (rostral up, the patient's right on the right): the cord's width, the "
        "dorsal root entry zones of each segment (targets thick), the array's outline and its "
        "contacts numbered as in the table, coloured by the dorsal CSF thickness under them "
        "(hatched: unavailable).</figcaption></figure>",
        "<h2>Coverage along the cord</h2>",
        f"<figure>{_img(images['coverage'], 'coverage against position')}<figcaption "
        "class='muted'>Share of the enlargement under the array as its rostral end moves "
        "caudally along the cord; vertebral bodies at the level of the cord shaded.</figcaption>"
        "</figure>",
    ]
    return "\n".join(parts)


def _level_row(automatic: dict | None) -> str:
    """The summary's row of the automatic levels and conus tip, when there are any."""
    levels = (automatic or {}).get("levels")
    if not levels:
        return ""
    style = "warn" if levels["uncertain"] else "text"
    conus = f"; conus tip at {levels['conus_level']}" if levels["conus_level"] else ""
    return (
        f"<tr><th class='text'>levels</th><td class='{style}' id='levels'>"
        f"{html.escape(levels['summary'])}{html.escape(conus)}</td></tr>"
    )


def _no_plan(reason: str, automatic: dict | None) -> str:
    return (
        "<table>"
        + _level_row(automatic)
        + "<tr><th class='text'>plan</th><td class='text warn' id='no-plan'><b>no plan</b>: "
        f"{html.escape(reason)}</td></tr></table>"
    )


def _summary(plan: Plan, automatic: dict | None = None) -> str:
    e = html.escape
    enlargement, paddle, cord, best = plan.enlargement, plan.paddle, plan.cord, plan.best
    estimated = (
        "<span class='warn'>estimated from the conus tip and the PAM50 template "
        "(segments not labelled): label the segments to confirm</span>"
        if enlargement.estimated
        else "labelled segments"
    )
    return (
        "<table>"
        + _level_row(automatic)
        + f"<tr><th class='text'>enlargement</th><td class='text'>{e(enlargement.span)} "
        f"({estimated}): {enlargement.length:.1f} mm long, "
        f"{enlargement.volume_mm3:.0f} mm³</td></tr>"
        f"<tr><th class='text'>paddle</th><td class='text'>{e(paddle.manufacturer)} "
        f"{e(paddle.name)}: array {paddle.array_length_mm:g} mm &times; "
        f"{paddle.width_mm:g} mm</td></tr>"
        f"<tr><th class='text'>best placement</th><td class='text'>rostral edge "
        f"<b>{e(best.rostral_edge)}</b>, caudal edge <b>{e(best.caudal_edge)}</b>: "
        f"<b>{best.coverage.volume_pct:.2f} %</b> of the enlargement's volume</td></tr>"
        f"<tr><th class='text'>cord</th><td class='text'>{cord.length:.1f} mm in "
        "view, conus tip "
        + (f"at {cord.conus_tip:.1f} mm" if cord.conus_tip is not None else "out of view")
        + "</td></tr></table>"
    )


def _automatic(automatic: dict | None) -> str:
    """What a clinician should check when the labels are automatic."""
    if automatic is None:
        return ""
    e = html.escape
    items = [f"<li>Segmentation by the U-Net <code>{e(automatic['model'])}</code>"]
    card = automatic["card"]
    if card:
        items[-1] += f" (bundled model: {e(card.get('summary', ''))})"
    items[-1] += ": check the cord, CSF, vertebrae and discs on the slices below.</li>"
    levels = automatic["levels"]
    if levels:
        items.append(
            f"<li>Vertebral levels: {e(levels['summary'])} "
            f"({e(', '.join(levels['vertebrae']))}); confirm the count on the "
            "sagittal figure, where each vertebra is named.</li>"
        )
        if levels["conus_level"]:
            items.append(
                f"<li>Conus tip (the cord's lowest point in the canal): "
                f"{e(levels['conus_level'])}.</li>"
            )
    items += [f"<li class='warn'>{e(w)}</li>" for w in automatic["warnings"]]
    return "<h2>Automatic steps: check these</h2><ul id='automatic'>" + "".join(items) + "</ul>"


def _candidates_table(plan: Plan) -> str:
    e = html.escape
    rows = [
        "<table id='candidates'><tr><th>rank</th><th class='text'>rostral edge</th>"
        "<th class='text'>caudal edge</th><th>rostral mm</th><th>caudal mm</th>"
        "<th>volume %</th><th>length %</th><th>15 &times; 3 mm slices %</th></tr>"
    ]
    for c in plan.candidates:
        cover = c.coverage
        rows.append(
            f"<tr><td>{c.rank}</td><td class='text'>{e(c.rostral_edge)}</td>"
            f"<td class='text'>{e(c.caudal_edge)}</td><td>{cover.rostral:.1f}</td>"
            f"<td>{cover.caudal:.1f}</td><td class='volume'>{cover.volume_pct:.2f}</td>"
            f"<td class='length'>{cover.length_pct:.2f}</td><td>{c.slice_count_pct:.2f}</td></tr>"
        )
    rows.append(
        "</table><p class='muted'>volume %: share of the enlargement's volume between "
        "the array's ends, measured along the cord; length %: share of its length; the "
        "last column is the published 15 &times; 3 mm axial-slice method, for comparison."
        "</p>"
    )
    return "".join(rows)


def _segments_table(plan: Plan) -> str:
    e = html.escape
    candidates = plan.candidates
    names = [s.segment for s in plan.best.coverage.segments]
    head = "".join(
        f"<th>#{c.rank} covered %</th><th class='text'>#{c.rank} contact rows</th>"
        for c in candidates
    )
    rows = [f"<table id='segments'><tr><th class='text'>segment</th>{head}</tr>"]
    for n, name in enumerate(names):
        cells = "".join(
            f"<td>{c.coverage.segments[n].covered_pct:.1f}</td>"
            f"<td class='text'>{', '.join(map(str, c.coverage.segments[n].rows)) or '-'}</td>"
            for c in candidates
        )
        rows.append(f"<tr><th class='text'>{e(name)}</th>{cells}</tr>")
    rows.append(
        "</table><p class='muted'>Per-segment coverage (by volume when the segments "
        "are labelled, by length when estimated); contact rows numbered from the "
        "rostral end of the array.</p>"
    )
    return "".join(rows)


def _contacts_table(placement: Placement, table_id: str, title: str) -> str:
    e = html.escape
    rows = [
        f"<p><b>{e(title)}</b>: rostral edge {e(placement.rostral_edge)} "
        f"({placement.coverage.rostral:.1f} mm)</p>"
        f"<table id='{table_id}'><tr><th>contact</th><th>row</th><th class='text'>segment</th>"
        "<th class='text'>side</th><th>from midline mm</th><th>from entry zone mm</th>"
        "<th>dCSF mm</th></tr>"
    ]
    for c in placement.contacts:
        if c.dcsf_mm is not None:
            dcsf = f"<td class='dcsf'>{c.dcsf_mm:.2f}</td>"
        else:
            assert c.dcsf_note is not None, "an unavailable dCSF has its reason"
            dcsf = f"<td class='text warn'>unavailable: {e(c.dcsf_note)}</td>"
        rows.append(
            f"<tr><td>{c.number}</td><td>{c.row}</td>"
            f"<td class='text'>{e(c.segment or '-')}</td><td class='text'>{e(c.side)}</td>"
            f"<td>{c.lateral_mm:+.2f}</td><td>{c.entry_zone_offset_mm:+.2f}</td>{dcsf}</tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _targets(plan: Plan) -> str:
    """The ranking by target roots and where it disagrees with the ranking by volume."""
    if plan.targets is None:
        return ""
    e = html.escape
    targets, weights = plan.targets, plan.targets.weights
    keys = [f"{name} {side}" for name in targets.segments for side in targets.sides]
    head = "".join(f"<th>reach {e(k)}</th>" for k in keys)
    rows = [
        "<h2>Placements chosen for target roots</h2>",
        f"<p>Targets {e(', '.join(targets.segments))}, "
        f"{e(' and '.join(targets.sides))} side{'s' if len(targets.sides) > 1 else ''}; "
        "score = 100 &times; (mean reach of the targets' entry zones &minus; "
        f"{weights.non_target_weight:g} &times; mean reach of the other "
        "segments'); a contact reaches an entry zone by exp(&minus;(d<sub>rc</sub>/"
        f"{weights.rostrocaudal_mm:g})²/2 &minus; (d<sub>lat</sub>/"
        f"{weights.lateral_mm:g})²/2), d<sub>rc</sub> its distance along the "
        "cord from the segment, d<sub>lat</sub> across from the entry zone, in mm "
        "(docs/planning.md).</p>",
        "<table id='targets'><tr><th>rank</th><th class='text'>rostral edge</th>"
        f"<th>rostral mm</th><th>target score</th><th>volume %</th>{head}</tr>",
    ]
    for c in targets.candidates:
        assert c.reach is not None, "a placement ranked by target has its reach"
        reach = "".join(f"<td>{c.reach[k]:.2f}</td>" for k in keys)
        rows.append(
            f"<tr><td>{c.rank}</td><td class='text'>{e(c.rostral_edge)}</td>"
            f"<td>{c.coverage.rostral:.1f}</td><td class='score'>{c.target_score:.2f}</td>"
            f"<td>{c.coverage.volume_pct:.2f}</td>{reach}</tr>"
        )
    rows.append("</table>")
    diff = plan.comparison
    assert diff is not None, "a plan with targets compares the two rankings"
    by_volume, by_target = diff.by_volume, diff.by_target
    verdict = (
        "The two rankings agree on the best placement"
        if diff.agree
        else "<b class='warn'>The two rankings disagree</b>"
    )
    rows.append(
        f"<p id='comparison'>{verdict}: their best placements are "
        f"{diff.distance_mm:.1f} mm apart; volume coverage "
        f"{by_volume.coverage.volume_pct:.2f} % (best by volume) against "
        f"{by_target.coverage.volume_pct:.2f} % (best for the targets); "
        f"target score {by_volume.target_score:.2f} against {by_target.target_score:.2f}.</p>"
    )
    return "".join(rows)


def _viewer(case_root: Path, out: Path, site: Path | None) -> str:
    command = html.escape(f"cordmap view {shlex.quote(str(case_root))}")
    text = (
        f"<p>Open the case in the interactive viewer (slices, meshes, candidate paddles "
        f"as toggleable layers): <code>{command}</code></p>"
    )
    if site is not None:
        link = Path(os.path.relpath(site / "index.html", out.parent)).as_posix()
        text += (
            f"<p>Or the exported viewer site: <a href='{html.escape(link)}'>"
            f"{html.escape(link)}</a> (serve its folder over http, e.g. "
            "<code>python -m http.server</code>).</p>"
        )
    return text


def _paddle(paddle: Paddle) -> str:
    return (
        f"<h2>Paddle model</h2><p>{html.escape(paddle.manufacturer)} "
        f"{html.escape(paddle.name)}: {paddle.contacts} contacts in "
        f"{len(paddle.rows)} rows over an array of {paddle.array_length_mm:g} mm, "
        f"{paddle.width_mm:g} mm wide (dimensions and their sources: docs/planning.md)."
        "</p>"
    )
