"""Check a label volume against its annotation protocol.

`validate(labels)` returns a `ValidationReport`: findings (errors and warnings, each
with a code, a message, the label ids and the axial slices involved) and a per-label
summary of voxel counts and volumes. Slices are the canonical axial slice indices k
(`array[:, :, k]`, 0 = most inferior). Checks:

| code                 | severity | what                                                       |
| -------------------- | -------- | ---------------------------------------------------------- |
| unknown-id           | error    | an id the protocol does not define                          |
| required-missing     | error    | a required structure (protocol `required`) has no voxels    |
| segment-outside-cord | error    | cord segment voxels in an island apart from the cord         |
| cord-island          | warning  | cord / conus voxels in an island apart from the cord         |
| segment-order        | error    | segments not in PAM50 order going caudally (along -S)       |
| root-inside-cord     | error    | root voxels enclosed by the cord in an axial slice          |
| root-side            | warning  | a left root right of the canal's midline, or the reverse    |
| vertebra-order       | error    | vertebrae not in C..T..L..sacrum order going caudally       |
| disc-position        | error    | a disc not between its two vertebrae, none cut by the image |

With `partial=True` (labels of part of the anatomy on purpose, e.g. SCT's cord and
rootlets) `required-missing` is not reported; every other check runs.

The cord is the union of the `cord`, `segment` and `conus` classes; its largest
26-connected piece is "the cord". Order checks compare the structures' centroids along
the world S axis. When most labelled voxels carry unknown ids (an image passed as labels),
only `unknown-id` is reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

from cordmap.errors import CordmapError
from cordmap.protocol import levels
from cordmap.protocol.schema import CORD_CLASSES, Label
from cordmap.volume import LabelVolume

ROOT_CLASSES = ("dorsal_root", "ventral_root")


@dataclass(frozen=True)
class Finding:
    """One problem in a label volume."""

    severity: str  # "error" or "warning"
    code: str
    message: str
    label_ids: tuple[int, ...] = ()
    slices: tuple[int, ...] = ()  # canonical axial slice indices k

    def as_text(self) -> str:
        where = f" [slices {_ranges(self.slices)}]" if self.slices else ""
        return f"{self.severity.upper():7s} {self.code}: {self.message}{where}"


@dataclass(frozen=True)
class LabelSummary:
    """Size of one label present in the volume."""

    id: int
    name: str
    voxels: int
    volume_mm3: float
    slices: tuple[int, int]  # first and last axial slice holding it


@dataclass
class ValidationReport:
    protocol: str
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    findings: list[Finding] = field(default_factory=list)
    labels: list[LabelSummary] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    def codes(self) -> set[str]:
        return {f.code for f in self.findings}

    def as_text(self) -> str:
        """The report for people: verdict, findings, then the label table."""
        verdict = "OK" if self.ok else "FAILED"
        lines = [
            f"validation against protocol '{self.protocol}': {verdict} "
            f"({_count(len(self.errors), 'error')}, {_count(len(self.warnings), 'warning')})",
            f"volume {' x '.join(map(str, self.shape))} voxels of "
            f"{' x '.join(f'{s:g}' for s in self.spacing_mm)} mm",
            "",
        ]
        lines += [finding.as_text() for finding in self.findings]
        if self.findings:
            lines.append("")
        width = max([len(s.name) for s in self.labels] + [5])
        lines.append(f"{'id':>5}  {'label':<{width}}  {'voxels':>9}  {'mm3':>10}  slices")
        for s in self.labels:
            lines.append(
                f"{s.id:>5}  {s.name:<{width}}  {s.voxels:>9}  {s.volume_mm3:>10.1f}  "
                f"{s.slices[0]}-{s.slices[1]}"
            )
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "protocol": self.protocol,
            "ok": self.ok,
            "shape": list(self.shape),
            "spacing_mm": list(self.spacing_mm),
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "findings": [
                {**asdict(f), "label_ids": list(f.label_ids), "slices": list(f.slices)}
                for f in self.findings
            ],
            "labels": [{**asdict(s), "slices": list(s.slices)} for s in self.labels],
        }


@dataclass(frozen=True)
class _Extent:
    """Where one label lies: voxel count, centroid (RAS+ mm) and axial slices."""

    voxels: int
    centre_voxel: np.ndarray  # mean (i, j, k)
    centroid: np.ndarray  # the same in RAS+ mm
    slices: tuple[int, ...]


def validate(labels: LabelVolume, *, partial: bool = False) -> ValidationReport:
    """Check `labels` against its schema; see the module docstring for the checks.

    Parameters
    ----------
    labels : LabelVolume
        The labels to check.
    partial : bool
        The labels annotate only part of the anatomy on purpose (e.g. the cord and rootlets
        of Spinal Cord Toolbox outputs), so the protocol's required structures are not asked
        for (no ``required-missing``); every other check runs.

    Returns
    -------
    ValidationReport
        Findings (errors and warnings, each with the labels and slices at fault) and a
        summary per label.
    """
    schema = labels.schema
    extents = _extents(labels)
    unknown, unknown_slices = _unknown(labels)
    report = ValidationReport(schema.name, labels.shape, labels.spacing)
    sizes = {i: (e.voxels, e.slices[0], e.slices[-1]) for i, e in extents.items()} | unknown
    for label_id, (voxels, first, last) in sorted(sizes.items()):
        name = schema[label_id].name if label_id in schema else f"unknown id {label_id}"
        report.labels.append(
            LabelSummary(
                label_id, name, voxels, round(voxels * labels.voxel_volume, 3), (first, last)
            )
        )

    unknown_voxels = sum(size[0] for size in unknown.values())
    known_voxels = sum(extent.voxels for extent in extents.values())
    if unknown:
        ids = sorted(unknown)
        shown = ", ".join(map(str, ids[:10])) + (", ..." if len(ids) > 10 else "")
        hint = "; is this an image rather than labels?" if len(ids) > 10 else ""
        skipped = (
            "; the other checks were skipped, as most labelled voxels are unknown"
            if unknown_voxels > known_voxels
            else ""
        )
        report.findings.append(
            Finding(
                "error",
                "unknown-id",
                f"label ids {shown} ({unknown_voxels} voxels) are not in the protocol "
                f"'{schema.name}': relabel them (see `cordmap protocol`){hint}{skipped}",
                tuple(ids),
                unknown_slices,
            )
        )
    if unknown_voxels <= known_voxels:
        report.findings += _anatomy(labels, extents, partial)
    return report


def _anatomy(labels: LabelVolume, extents: dict[int, _Extent], partial: bool) -> list[Finding]:
    """The checks of the protocol's structures: presence, cord, roots, order, discs."""
    array = labels.array
    known = {i: labels.schema[i] for i in extents}
    findings = [] if partial else _missing_required(labels, known)
    cord_ids = [i for i, label in known.items() if label.structure in CORD_CLASSES]
    if cord_ids:  # the cord checks look only inside the cord's bounding box
        box = _bounding_box(array, cord_ids, [extents[i].slices for i in cord_ids])
        near_cord = array[box]
        cord = np.isin(near_cord, cord_ids)
        first_slice = box[2].start
        findings += _cord_islands(near_cord, cord, known, first_slice)
        findings += _roots_inside_cord(near_cord, cord, known, first_slice)
    findings += _root_sides(array, known, extents)
    findings += _order(
        known,
        extents,
        "segment",
        "segment-order",
        key=lambda label: levels.pam50_segment(label.level),
        rule="segments must follow PAM50 order going caudally",
    )
    findings += _order(
        known,
        extents,
        "vertebra",
        "vertebra-order",
        key=lambda label: levels.vertebra_index(label.level),
        rule="vertebrae must follow C1..L5, sacrum going caudally",
    )
    findings += _discs(labels, known, extents)
    return findings


def _extents(labels: LabelVolume) -> dict[int, _Extent]:
    """Extent of every protocol label present, from histograms of (slice, label) built
    plane by plane: one pass over the volume, however many labels it holds."""
    array = labels.array
    ids = np.array(sorted(labels.schema.labels))
    column = np.zeros(ids[-1] + 1, dtype=np.intp)  # label id -> histogram column (0 = other)
    column[ids] = np.arange(1, len(ids) + 1)
    n_slices, n_columns = array.shape[2], len(ids) + 1
    grid = np.indices(array.shape[1:])
    j_index, k_index = grid[0], grid[1]
    counts = np.zeros(n_slices * n_columns)
    i_sums = np.zeros(n_slices * n_columns)
    j_sums = np.zeros(n_slices * n_columns)
    for i, plane in enumerate(array):  # contiguous (j, k) planes
        keep = (plane > 0) & (plane <= ids[-1])
        key = k_index[keep] * n_columns + column[plane[keep]]
        found = np.bincount(key, minlength=n_slices * n_columns)
        counts += found
        i_sums += i * found
        j_sums += np.bincount(key, weights=j_index[keep], minlength=n_slices * n_columns)
    counts, i_sums, j_sums = (a.reshape(n_slices, n_columns) for a in (counts, i_sums, j_sums))
    extents = {}
    for label_id, col in zip(ids, range(1, n_columns)):
        voxels = int(counts[:, col].sum())
        if voxels:
            centre = (
                np.array(
                    [
                        i_sums[:, col].sum(),
                        j_sums[:, col].sum(),
                        counts[:, col] @ np.arange(n_slices),
                    ]
                )
                / voxels
            )
            extents[int(label_id)] = _Extent(
                voxels,
                centre,
                labels.world(centre),
                tuple(int(k) for k in np.flatnonzero(counts[:, col])),
            )
    return extents


def _bounding_box(array: np.ndarray, ids: list[int], slices) -> tuple[slice, slice, slice]:
    """Voxel box holding every voxel of `ids`, given the slices each lies on."""
    first = min(s[0] for s in slices)
    last = max(s[-1] for s in slices)
    inside = np.isin(array[:, :, first : last + 1], ids)
    i = np.flatnonzero(inside.any(axis=(1, 2)))
    j = np.flatnonzero(inside.any(axis=(0, 2)))
    return slice(i[0], i[-1] + 1), slice(j[0], j[-1] + 1), slice(first, last + 1)


def _unknown(labels: LabelVolume) -> tuple[dict[int, tuple[int, int, int]], tuple[int, ...]]:
    """Ids outside the protocol: {id: (voxels, first slice, last slice)}, and all their slices."""
    array = labels.array
    outside = ~np.isin(array, [0, *labels.schema.labels])
    slices = np.flatnonzero(outside.any(axis=(0, 1)))
    per_slice = [
        (k, *np.unique(array[:, :, k][outside[:, :, k]], return_counts=True)) for k in slices
    ]
    if not per_slice:
        return {}, ()
    ids = np.unique(np.concatenate([found for _, found, _ in per_slice]))
    voxels = np.zeros(len(ids), dtype=np.int64)
    first = np.full(len(ids), -1)
    last = np.full(len(ids), -1)
    for k, found, counts in per_slice:
        at = np.searchsorted(ids, found)
        voxels[at] += counts
        first[at] = np.where(first[at] < 0, k, first[at])
        last[at] = k
    sizes = {int(i): (int(n), int(a), int(b)) for i, n, a, b in zip(ids, voxels, first, last)}
    return sizes, tuple(int(k) for k in slices)


def _missing_required(labels: LabelVolume, known: dict[int, Label]) -> list[Finding]:
    present = {label.structure for label in known.values()}
    return [
        Finding(
            "error",
            "required-missing",
            f"the required structure '{req.structure}' is not annotated (no voxels of "
            f"class {', '.join(req.classes)}); annotate it as protocol "
            f"'{labels.schema.name}' asks",
        )
        for req in labels.schema.required
        if not present.intersection(req.classes)
    ]


def _cord_islands(
    array: np.ndarray, cord: np.ndarray, known: dict[int, Label], first_slice: int
) -> list[Finding]:
    """Cord-class voxels outside the largest 26-connected piece of the cord."""
    pieces, count = ndimage.label(cord, structure=np.ones((3, 3, 3), bool))
    if count < 2:
        return []
    sizes = np.bincount(pieces.ravel())
    sizes[0] = 0
    island = (pieces != np.argmax(sizes)) & cord
    findings = []
    for label_id in (int(i) for i in np.unique(array[island])):
        label = known[label_id]
        voxels = island & (array == label_id)
        slices = _slices(voxels, first_slice)
        if label.structure == "segment":
            findings.append(
                Finding(
                    "error",
                    "segment-outside-cord",
                    f"{label.name} has {int(voxels.sum())} voxels in an island apart from the cord; "
                    "a segment must be part of the cord: erase or reconnect them",
                    (label_id,),
                    slices,
                )
            )
        else:
            findings.append(
                Finding(
                    "warning",
                    "cord-island",
                    f"{label.name} has {int(voxels.sum())} voxels in an island apart from the cord "
                    "(stray voxels?)",
                    (label_id,),
                    slices,
                )
            )
    return findings


def _order(
    known: dict[int, Label],
    extents: dict[int, _Extent],
    structure: str,
    code: str,
    *,
    key,
    rule: str,
) -> list[Finding]:
    """Consecutive present labels of `structure` (sorted by `key`, rostral first) must lie
    ever lower along S; level-free labels have no place in the order."""
    present = sorted(
        (label for label in known.values() if label.structure == structure and label.level), key=key
    )
    findings = []
    for upper, lower in zip(present, present[1:]):
        z_upper = extents[upper.id].centroid[2]
        z_lower = extents[lower.id].centroid[2]
        if z_lower >= z_upper:
            findings.append(
                Finding(
                    "error",
                    code,
                    f"{lower.name} (centre S {z_lower:.1f} mm) is not below {upper.name} "
                    f"(S {z_upper:.1f} mm); {rule}: check these two labels",
                    (upper.id, lower.id),
                    extents[lower.id].slices,
                )
            )
    return findings


def _discs(
    labels: LabelVolume, known: dict[int, Label], extents: dict[int, _Extent]
) -> list[Finding]:
    """Each levelled disc between its two vertebrae along S, unless one of the three is cut
    by the field of view (a sliver of a vertebra at the image's edge has its centre
    wherever the edge cuts it)."""
    vertebrae = {
        levels.vertebra(label.level): label
        for label in known.values()
        if label.structure == "vertebra" and label.level
    }
    findings = []
    for disc in (label for label in known.values() if label.structure == "disc"):
        if disc.level is None:
            continue  # a protocol disc without a "U-L" level cannot be placed
        try:
            upper_name, lower_name = (levels.vertebra(v) for v in disc.level.split("-"))
        except (AttributeError, ValueError, CordmapError):
            continue  # nor one whose level is not "U-L" (or not text, in a user's protocol)
        upper, lower = vertebrae.get(upper_name), vertebrae.get(lower_name)
        if upper is None or lower is None:
            continue
        z = extents[disc.id].centroid[2]
        z_upper = extents[upper.id].centroid[2]
        z_lower = extents[lower.id].centroid[2]
        if not z_lower < z < z_upper and not _cut_by_view(labels, (disc.id, upper.id, lower.id)):
            findings.append(
                Finding(
                    "error",
                    "disc-position",
                    f"{disc.name} (centre S {z:.1f} mm) is not between {upper.name} "
                    f"(S {z_upper:.1f} mm) and {lower.name} (S {z_lower:.1f} mm); relabel the disc "
                    "or the vertebrae",
                    (disc.id, upper.id, lower.id),
                    extents[disc.id].slices,
                )
            )
    return findings


def _cut_by_view(labels: LabelVolume, ids) -> bool:
    """Whether any of the labels `ids` touches the first or last plane of the image along
    the axis nearest S."""
    axis = int(np.argmax(np.abs(labels.affine[2, :3])))
    array = np.asarray(labels.array)
    ends = np.take(array, [0, array.shape[axis] - 1], axis=axis)
    return bool(np.isin(ends, ids).any())


def _roots_inside_cord(
    array: np.ndarray, cord: np.ndarray, known: dict[int, Label], first_slice: int
) -> list[Finding]:
    """Root voxels in holes of the cord's axial cross-section (filled in 2D)."""
    root_ids = [i for i, label in known.items() if label.structure in ROOT_CLASSES]
    if not root_ids:
        return []
    roots = np.isin(array, root_ids)
    inside = np.zeros_like(roots)
    for k in np.flatnonzero(roots.any(axis=(0, 1)) & cord.any(axis=(0, 1))):
        inside[:, :, k] = ndimage.binary_fill_holes(cord[:, :, k]) & roots[:, :, k]
    findings = []
    for label_id in (int(i) for i in np.unique(array[inside])):
        voxels = inside & (array == label_id)
        findings.append(
            Finding(
                "error",
                "root-inside-cord",
                f"{known[label_id].name} has {int(voxels.sum())} voxels inside the cord; roots run "
                "outside the cord: relabel them as cord or segment",
                (label_id,),
                _slices(voxels, first_slice),
            )
        )
    return findings


def _root_sides(
    array: np.ndarray, known: dict[int, Label], extents: dict[int, _Extent]
) -> list[Finding]:
    """Left roots must lie left of the canal's midline (lower i in RAS+), right roots right.

    The midline on a slice is the mean i of the canal there (cord, CSF and roots).
    """
    roots = [
        label
        for label in known.values()
        if label.structure in ROOT_CLASSES and label.side in ("left", "right")
    ]
    if not roots:
        return []
    canal_ids = [i for i, label in known.items() if label.structure in (*CORD_CLASSES, "csf")]
    canal = np.isin(array, canal_ids + [label.id for label in roots])
    count = canal.sum(axis=(0, 1))
    i_sum = (canal.sum(axis=1) * np.arange(array.shape[0])[:, None]).sum(axis=0)
    findings = []
    for label in roots:
        i_root = extents[label.id].centre_voxel[0]
        slices = list(extents[label.id].slices)
        midline = i_sum[slices].sum() / count[slices].sum()
        if (i_root < midline) != (label.side == "left"):
            wrong = "right" if label.side == "left" else "left"
            findings.append(
                Finding(
                    "warning",
                    "root-side",
                    f"{label.name} lies on the patient's {wrong} of the canal; left and right are "
                    "the patient's (a radiological display shows the patient's right on the "
                    "screen's left): swap its side if needed",
                    (label.id,),
                    tuple(slices),
                )
            )
    return findings


def _slices(voxels: np.ndarray, first_slice: int) -> tuple[int, ...]:
    """Axial slices (k) holding any of `voxels`, a crop starting at slice `first_slice`."""
    return tuple(int(k) + first_slice for k in np.flatnonzero(voxels.any(axis=(0, 1))))


def _ranges(values) -> str:
    """[1, 2, 3, 7] -> "1-3, 7"."""
    parts, start = [], None
    for a, b in zip(values, list(values[1:]) + [None]):
        start = a if start is None else start
        if b != a + 1:
            parts.append(str(start) if start == a else f"{start}-{a}")
            start = None
    return ", ".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
