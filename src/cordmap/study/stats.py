"""Compare two groups of a cohort on a numeric metric.

Mann-Whitney U (two-sided) by default, with the rank-biserial correlation as effect size
and a seeded bootstrap confidence interval of the difference in medians; or, on request,
Welch's t-test (unequal variances), with Cohen's d (pooled standard deviation) and the
exact Welch confidence interval of the difference in means. Differences are the first
group minus the second. Participants without a value are left out and counted.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from cordmap.errors import CordmapError

TESTS = ("mann-whitney", "welch")
#: Units of the metrics the registry knows (`Registry.cohort`).
UNITS = {
    "coverage": "%",
    "planned_coverage": "%",
    "surgery_time": "min",
    "age_at_implant": "years",
    "years_since_injury": "years",
}


@dataclass(frozen=True)
class GroupSummary:
    name: str
    n: int
    missing: int
    median: float
    q1: float
    q3: float
    mean: float
    sd: float


@dataclass(frozen=True)
class Comparison:
    metric: str
    unit: str
    groups: tuple[GroupSummary, GroupSummary]
    test: str  # "mann-whitney" or "welch"
    statistic: float  # U of the first group, or Welch's t
    p_value: float
    effect_name: str  # "rank-biserial" or "cohen-d"
    effect: float
    difference_name: str  # "difference in medians" or "difference in means"
    difference: float
    ci_low: float
    ci_high: float
    confidence: float
    ci_method: str

    def to_dict(self) -> dict:
        return asdict(self)


def summarise(name: str, values, missing: int = 0) -> GroupSummary:
    x = np.asarray(values, dtype=float)
    q1, median, q3 = np.percentile(x, [25, 50, 75])
    return GroupSummary(
        name,
        len(x),
        missing,
        float(median),
        float(q1),
        float(q3),
        float(x.mean()),
        float(x.std(ddof=1)) if len(x) > 1 else float("nan"),
    )


def rank_biserial(u_first: float, n_first: int, n_second: int) -> float:
    """Rank-biserial correlation from the first group's U: P(x > y) - P(x < y)."""
    return float(2.0 * u_first / (n_first * n_second) - 1.0)


def cohen_d(x, y) -> float:
    """Cohen's d with the pooled standard deviation."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    nx, ny = len(x), len(y)
    pooled = ((nx - 1) * x.var(ddof=1) + (ny - 1) * y.var(ddof=1)) / (nx + ny - 2)
    return float((x.mean() - y.mean()) / np.sqrt(pooled))


def compare_two(
    x,
    y,
    *,
    metric: str = "value",
    names: tuple[str, str] = ("A", "B"),
    test: str = "mann-whitney",
    confidence: float = 0.95,
    resamples: int = 9999,
    seed: int = 0,
    missing: tuple[int, int] = (0, 0),
) -> Comparison:
    """Compare the values `x` (group names[0]) with `y` (names[1])."""
    if test not in TESTS:
        raise CordmapError(f"unknown test '{test}'; use one of {', '.join(TESTS)}")
    if not 0 < confidence < 1:
        raise CordmapError(f"confidence {confidence} must lie between 0 and 1 (e.g. 0.95)")
    x, y = np.asarray(x, float), np.asarray(y, float)
    for name, values in zip(names, (x, y)):
        if len(values) < 2:
            raise CordmapError(
                f"group '{name}' has {len(values)} value(s) of {metric}; "
                "a comparison needs at least 2 per group"
            )
    summaries = (summarise(names[0], x, missing[0]), summarise(names[1], y, missing[1]))
    if test == "welch":
        if x.var() == 0 and y.var() == 0:
            raise CordmapError(
                f"{metric} does not vary within either group; Welch's t-test "
                "needs some spread (use mann-whitney)"
            )
        result = stats.ttest_ind(x, y, equal_var=False)
        interval = result.confidence_interval(confidence)
        return Comparison(
            metric,
            UNITS.get(metric, ""),
            summaries,
            test,
            float(result.statistic),
            float(result.pvalue),
            "cohen-d",
            cohen_d(x, y),
            "difference in means",
            float(x.mean() - y.mean()),
            float(interval.low),
            float(interval.high),
            confidence,
            "Welch t",
        )
    result = stats.mannwhitneyu(x, y, alternative="two-sided")
    low, high, method = _bootstrap_median_difference(x, y, confidence, resamples, seed)
    return Comparison(
        metric,
        UNITS.get(metric, ""),
        summaries,
        test,
        float(result.statistic),
        float(result.pvalue),
        "rank-biserial",
        rank_biserial(result.statistic, len(x), len(y)),
        "difference in medians",
        float(np.median(x) - np.median(y)),
        low,
        high,
        confidence,
        method,
    )


def _bootstrap_median_difference(x, y, confidence, resamples, seed) -> tuple[float, float, str]:
    """Bootstrap CI of the difference in medians: BCa, or percentile where BCa degenerates
    (tiny or heavily tied samples); returns (low, high, method)."""

    def difference(a, b, axis=-1):
        return np.median(a, axis=axis) - np.median(b, axis=axis)

    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # degenerate BCa: NaN bounds, handled below
            result = stats.bootstrap(
                (x, y),
                difference,
                n_resamples=resamples,
                confidence_level=confidence,
                method=method,
                rng=np.random.default_rng(seed),
                vectorized=True,
            )
        low, high = result.confidence_interval
        if np.isfinite(low) and np.isfinite(high):
            break
    return float(low), float(high), f"bootstrap {method}, {resamples} resamples, seed {seed}"


def group_values(
    rows: list[dict], by: str, metric: str, groups: tuple[str, str] | None = None
) -> dict[str, tuple[list[float], int]]:
    """{group: (values, missing count)} of `metric` in cohort rows, grouped by field `by`."""
    if rows and by not in rows[0]:
        raise CordmapError(
            f"cannot group by '{by}'; use a participant field such as group, sex, "
            "ais_grade or stimulator"
        )
    if not any(metric in row for row in rows):
        known = sorted({k for row in rows for k, v in row.items() if isinstance(v, float)})
        raise CordmapError(
            f"no participant has a value of '{metric}'; known metrics: "
            f"{', '.join(known) or 'none yet'}"
        )
    names = sorted({row[by] for row in rows if row[by] is not None})
    if groups is None:
        if len(names) != 2:
            raise CordmapError(
                f"'{by}' has {len(names)} groups ({', '.join(names)}); a comparison "
                "needs two: choose them with `groups` A,B"
            )
        groups = tuple(names)
    for name in groups:
        if name not in names:
            raise CordmapError(f"there is no {by} '{name}'; the registry has {', '.join(names)}")
    out = {}
    for name in groups:
        values = [row.get(metric) for row in rows if row[by] == name]
        present = [float(v) for v in values if v is not None]
        out[name] = (present, len(values) - len(present))
    return out


def compare_cohort(
    rows: list[dict],
    *,
    by: str = "group",
    metrics=("coverage",),
    test: str = "mann-whitney",
    groups: tuple[str, str] | None = None,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[Comparison]:
    """One `Comparison` per metric between the two groups of field `by`."""
    comparisons = []
    for metric in metrics:
        values = group_values(rows, by, metric, groups)
        (a, (x, mx)), (b, (y, my)) = values.items()
        comparisons.append(
            compare_two(
                x,
                y,
                metric=metric,
                names=(a, b),
                test=test,
                confidence=confidence,
                seed=seed,
                missing=(mx, my),
            )
        )
    return comparisons
