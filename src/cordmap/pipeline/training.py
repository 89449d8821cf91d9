"""Case folders as the learning data: what `cordmap train`, `finetune` and `evaluate` read.

Only a case's manual labels are truth: its own desc-unet prediction never trains or scores
a model. The training and scoring themselves work on objects (`cordmap.learn`).
"""

from __future__ import annotations

from pathlib import Path

from cordmap.case import Case
from cordmap.errors import CordmapError
from cordmap.volume import LabelVolume, Volume


def load_cases(case_dirs) -> list[tuple[str, Volume, LabelVolume]]:
    """(name, image, manual labels) of each case folder; the name is the folder's name
    (for `cordmap.learn.data.gather_cases`)."""
    out = []
    for case_dir in case_dirs:
        case = Case.open(case_dir)
        out.append((Path(case_dir).name, case.image(), case.labels("manual")))
    return out


def evaluate_case_dirs(
    case_dirs, model_path: str | Path | None = None, keep_largest: tuple[str, ...] = ()
) -> dict:
    """Evaluate case folders: a model's predictions (`model_path`, `keep_largest` as in
    `cordmap.learn.infer.predict`), else the stored desc-unet labels, against the
    desc-manual labels (`cordmap.learn.evaluate`)."""
    from cordmap.learn.classes import ClassMapping
    from cordmap.learn.evaluate import evaluate_labels, evaluate_model
    from cordmap.learn.modelfile import load_model

    cases = [Case.open(d) for d in case_dirs]
    if not cases:
        raise CordmapError("no case folders to evaluate; pass one or more case folders")
    if model_path is not None:
        model = load_model(model_path, cases[0].schema)
        return evaluate_model(
            model, [(Path(c.root).name, c.image(), c.labels("manual")) for c in cases], keep_largest
        )
    mapping = ClassMapping(cases[0].schema)
    return evaluate_labels(
        [(Path(c.root).name, c.labels("manual"), c.labels("unet")) for c in cases], mapping
    )
