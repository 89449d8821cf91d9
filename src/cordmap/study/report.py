"""The study report: one self-contained HTML file with the cohort, the group comparisons
and their box plots (embedded as base64 PNG, so the file can be mailed or archived)."""

from __future__ import annotations

import base64
import html
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from cordmap import __version__
from cordmap.atomic import write_text
from cordmap.protocol.levels import SEGMENTS
from cordmap.study.figures import box_plots, format_p
from cordmap.study.registry import Registry
from cordmap.study.stats import Comparison, compare_cohort, group_values

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border-bottom: 1px solid #ccc; padding: 0.3em 0.8em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.note { color: #666; font-size: 0.9em; }
"""


def study_report(
    registry: Registry,
    out: str | Path,
    *,
    by: str = "group",
    metrics=("coverage", "surgery_time"),
    test: str = "mann-whitney",
    groups: tuple[str, str] | None = None,
    seed: int = 0,
    title: str = "Study report",
    note: str = "",
) -> list[Comparison]:
    """Compare the groups of the registry and write the HTML report `out`; return the results."""
    rows = registry.cohort()
    comparisons = compare_cohort(rows, by=by, metrics=metrics, test=test, groups=groups, seed=seed)
    png = box_plots(
        comparisons,
        [
            {name: v for name, (v, _) in group_values(rows, by, c.metric, groups).items()}
            for c in comparisons
        ],
        seed=seed,
    )
    write_text(out, render_report(rows, by, comparisons, png, title=title, note=note))
    return comparisons


def render_report(
    rows: list[dict],
    by: str,
    comparisons: list[Comparison],
    png: bytes,
    *,
    title: str,
    note: str = "",
) -> str:
    names = [g.name for g in comparisons[0].groups]
    image = base64.b64encode(png).decode("ascii")
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">cordmap {__version__}, {made}. {html.escape(note)}</p>',
        "<h2>Cohort</h2>",
        _cohort_table(rows, by, names),
        "<h2>Comparisons</h2>",
        _comparison_table(comparisons),
        f'<img alt="box plots of {html.escape(", ".join(c.metric for c in comparisons))} by '
        f'{html.escape(by)}" src="data:image/png;base64,{image}">',
        '<h2>Methods</h2><p class="note">' + html.escape(_methods(comparisons)) + "</p>",
        '<script type="application/json" id="results">'
        + json.dumps([c.to_dict() for c in comparisons]).replace("</", "<\\/")
        + "</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _cohort_table(rows: list[dict], by: str, names: list[str]) -> str:
    members = {name: [r for r in rows if r[by] == name] for name in names}

    def median_iqr(field):
        def cell(group):
            values = [r[field] for r in group if r[field] is not None]
            if not values:
                return "-"
            q1, q2, q3 = np.percentile(values, [25, 50, 75])
            return f"{q2:.1f} [{q1:.1f}-{q3:.1f}]"

        return cell

    def counts(field):
        def cell(group):
            tally = Counter(r[field] for r in group if r[field] is not None)
            ordered = sorted(tally.items(), key=lambda item: _order(item[0]))
            return ", ".join(f"{k} {n}" for k, n in ordered) or "-"

        return cell

    lines = [
        ("participants", lambda g: str(len(g))),
        ("sex", counts("sex")),
        ("age at implant, years", median_iqr("age_at_implant")),
        ("years since injury", median_iqr("years_since_injury")),
        ("AIS grade", counts("ais_grade")),
        ("injury level", counts("injury_level")),
        ("stimulator", counts("stimulator")),
    ]
    head = "".join(f"<th>{html.escape(str(n))}</th>" for n in names)
    body = "".join(
        f"<tr><td>{label}</td>"
        + "".join(f"<td>{html.escape(cell(members[n]))}</td>" for n in names)
        + "</tr>"
        for label, cell in lines
    )
    return f"<table><tr><th>{html.escape(by)}</th>{head}</tr>{body}</table>"


def _order(value) -> tuple:
    """Sort key: spinal levels rostral to caudal, anything else alphabetically after them."""
    return (SEGMENTS.index(value), "") if value in SEGMENTS else (len(SEGMENTS), str(value))


def _comparison_table(comparisons: list[Comparison]) -> str:
    a, b = (g.name for g in comparisons[0].groups)
    head = (
        "<tr><th>metric</th>"
        f"<th>{html.escape(a)}: median [IQR]</th><th>{html.escape(b)}: median [IQR]</th>"
        "<th>test</th><th>p</th><th>effect size</th><th>difference (CI)</th></tr>"
    )
    body = []
    for c in comparisons:
        unit = f" {c.unit}" if c.unit else ""
        cells = [
            f"{c.metric}{unit and ' (' + c.unit + ')'}",
            *(f"{g.median:.1f} [{g.q1:.1f}-{g.q3:.1f}] (n={g.n})" for g in c.groups),
            f"{c.test}: {c.statistic:.3g}",
            format_p(c.p_value),
            f"{c.effect_name} {c.effect:.2f}",
            f"{c.difference_name}: {c.difference:.1f}{unit} "
            f"({c.confidence:.0%} CI {c.ci_low:.1f} to {c.ci_high:.1f})",
        ]
        body.append("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in cells) + "</tr>")
    return "<table>" + head + "".join(body) + "</table>"


def _methods(comparisons: list[Comparison]) -> str:
    c = comparisons[0]
    missing = sum(g.missing for comp in comparisons for g in comp.groups)
    methods = "; ".join(dict.fromkeys(x.ci_method for x in comparisons))
    test = (
        "two-sided Mann-Whitney U test, effect size the rank-biserial correlation"
        if c.test == "mann-whitney"
        else "two-sided Welch's t-test (unequal variances), effect size Cohen's d (pooled SD)"
    )
    return (
        f"Groups compared with the {test}; {c.difference_name} with {c.confidence:.0%} "
        f"confidence interval ({methods}); differences are {c.groups[0].name} minus "
        f"{c.groups[1].name}. Participants without a value of a metric are left out of that "
        f"comparison ({missing} value(s) missing in all)."
    )
