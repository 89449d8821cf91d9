"""Evaluation of a model (or of stored predictions) against reference labels.

Comparisons are made on whole volumes at the image's original resolution, in training
classes: per case, per class IoU, Dice and HD95 (mm), the case's mean IoU and pixel
accuracy; and over all cases pooled (one confusion matrix summed over the cases).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cordmap.atomic import write_text
from cordmap.errors import CordmapError
from cordmap.learn.classes import ClassMapping
from cordmap.learn.infer import predict
from cordmap.learn.metrics import evaluate_arrays, scores
from cordmap.learn.modelfile import TrainedModel


def evaluate_model(model: TrainedModel, cases, keep_largest: tuple[str, ...] = ()) -> dict:
    """Segment each (name, image, labels) case with `model` (see `infer.predict` for
    `keep_largest`) and score it."""
    rows = []
    for name, image, labels in cases:
        image.require_same_grid(labels, what=f"labels of {name}")
        reference = model.mapping.encode(labels, source=f"labels of {name}")
        prediction = predict(model, image, name, keep_largest=keep_largest)
        rows.append((name, reference, prediction, image.spacing))
    return _report(rows, model.mapping.names)


def evaluate_labels(pairs, mapping: ClassMapping) -> dict:
    """Score stored predictions: (name, reference LabelVolume, predicted LabelVolume)."""
    rows = []
    for name, reference, prediction in pairs:
        reference.require_same_grid(prediction, what=f"predicted labels of {name}")
        rows.append(
            (
                name,
                mapping.encode(reference, f"reference labels of {name}"),
                mapping.encode(prediction, f"predicted labels of {name}"),
                reference.spacing,
            )
        )
    return _report(rows, mapping.names)


def _report(rows, names: list[str]) -> dict:
    if not rows:
        raise CordmapError("no cases to evaluate")
    cases, pooled = [], np.zeros((len(names), len(names)), dtype=np.int64)
    for name, reference, prediction, spacing in rows:
        result = evaluate_arrays(reference, prediction, names, spacing)
        pooled += np.array(result["confusion"])
        cases.append({"case": name, **result})
    return {"classes": names, "cases": cases, "pooled": scores(pooled, names)}


def write_report(report: dict, path: str | Path) -> Path:
    return write_text(path, json.dumps(report, indent=1) + "\n")


def report_table(report: dict, title: str = "segmentation accuracy"):
    """A rich table: one row per case and a pooled row; Dice per foreground class."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    foreground = report["classes"][1:]
    for column in ("case", "pixel acc.", "mIoU", *(f"Dice {n}" for n in foreground)):
        table.add_column(column, justify="left" if column == "case" else "right")
    for row in [*report["cases"], {"case": "pooled", **report["pooled"]}]:
        table.add_row(
            row["case"],
            _fmt(row["pixel_accuracy"]),
            _fmt(row["mean_iou"]),
            *(_fmt(row["per_class"][n]["dice"]) for n in foreground),
        )
    return table


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"
