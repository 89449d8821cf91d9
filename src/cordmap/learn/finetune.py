"""Fine-tuning: adapt a trained model to a few annotated cases from a new scanner.

Starts from the model's weights (optionally with the encoder frozen), trains on the new
cases with the published optimiser, and scores the held-out cases before and after, so
the gain (or loss) of adaptation is measured, not assumed. The report is written to
`finetune.json` in the run folder beside the new `model.pt`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from cordmap.errors import CordmapError
from cordmap.learn.evaluate import evaluate_model, write_report
from cordmap.learn.modelfile import load_model
from cordmap.learn.train import TrainConfig, TrainResult, train


@dataclass
class FinetuneResult:
    training: TrainResult
    before: dict | None
    after: dict | None
    report_path: Path


def finetune(
    model_path: str | Path,
    cases,
    out_dir: str | Path,
    schema,
    *,
    heldout=(),
    val_cases=None,
    config: TrainConfig = TrainConfig(epochs=10),
) -> FinetuneResult:
    """Fine-tune `model_path` on (name, image, labels) `cases`; score `heldout` cases
    before and after. Without `val_cases`, the training cases also select the best epoch."""
    if not cases:
        raise CordmapError("no cases to fine-tune on: pass annotated case folders")
    model = load_model(model_path, schema)
    config = replace(config, classes=_class_set_name(model))
    before = evaluate_model(model, heldout) if heldout else None
    result = train(
        cases,
        out_dir,
        schema,
        config,
        initial=model.network,
        val_cases=val_cases if val_cases else cases,
    )
    tuned = load_model(result.model_path, schema)
    after = evaluate_model(tuned, heldout) if heldout else None
    report = {
        "from_model": str(Path(model_path).resolve()),
        "trained_on": [name for name, _, _ in cases],
        "held_out": [name for name, _, _ in heldout],
        "freeze_encoder": config.freeze_encoder,
        "before": before,
        "after": after,
    }
    path = write_report(report, Path(out_dir) / "finetune.json")
    return FinetuneResult(result, before, after, path)


def _class_set_name(model) -> str:
    from cordmap.learn.classes import CLASS_SETS

    for name, classes in CLASS_SETS.items():
        if tuple(classes) == model.mapping.classes:
            return name
    raise CordmapError(f"model {model.path} uses a class mapping this cordmap does not know")
