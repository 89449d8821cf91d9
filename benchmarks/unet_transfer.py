"""From phantoms to real MRI: train on phantoms only, segment real images, fine-tune.

1. Train the small default configuration (published classes) on generated phantoms only
   (each with its own contrast, pixel and slice thickness; extra augmentations --extra).
2. Segment a held-out phantom (a check that the network learned the phantoms) and the
   real images ../shared/data/pam50-small/PAM50_small_t2.nii.gz and
   ../shared/data/sct-t2/t2.nii.gz (imported as case folders with their manual cord
   masks) and score cord Dice at the images' own resolution. The Spinal Cord Toolbox's
   own 3D model is scored on sct-t2 from its stored prediction, as a reference.
3. Fine-tune on pam50-small (cord the only annotated class: the marginal loss lets its
   unlabelled voxels be CSF, bone, ...) and score sct-t2 again.

Prints a table and writes JSON. Work files (cases, runs, models) go to --work. Usage:

    .venv/bin/python benchmarks/unet_transfer.py [--phantoms 16] [--epochs 40]
        [--patches 96] [--classes published|cord] [--extra intensity,bias,scale] [--finetune-epochs 10]
        [--work out/unet_transfer] [--resume]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from cordmap.atomic import write_text

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
REAL = {
    "pam50-small": ("pam50-small/PAM50_small_t2.nii.gz", "pam50-small/PAM50_small_cord.nii.gz"),
    "sct-t2": ("sct-t2/t2.nii.gz", "sct-t2/t2_seg-manual.nii.gz"),
}


HELDOUT_PHANTOM = 1000  # the seed of a phantom no training run here draws


def import_real(work: Path) -> dict[str, Path]:
    from cordmap.pipeline.imports import import_case

    cases = {}
    for name, (image, labels) in REAL.items():
        import_case(DATA / image, work / "cases" / name, labels_source=DATA / labels)
        cases[name] = work / "cases" / name
    return cases


def cord_dice(report: dict) -> dict[str, float]:
    return {row["case"]: row["per_class"]["cord"]["dice"] for row in report["cases"]}


def sct_reference_dice() -> float:
    from cordmap.io.nifti import read_nifti

    manual = read_nifti(DATA / "sct-t2/t2_seg-manual.nii.gz").array > 0.5
    sct = read_nifti(DATA / "sct-t2/t2_seg-deepseg_sc-3d.nii.gz").array > 0.5
    return float(2 * (manual & sct).sum() / (manual.sum() + sct.sum()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phantoms", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--patches", type=int, default=96, help="patches per epoch")
    parser.add_argument(
        "--classes", default="published", help="training class set: published or cord"
    )
    parser.add_argument(
        "--extra",
        default="intensity,bias,scale",
        help="extra augmentations of the phantom training ('' for none)",
    )
    parser.add_argument("--finetune-epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "unet_transfer")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the phantom training in --work up to --epochs "
        "(same result as one uninterrupted run) instead of starting anew",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "unet_transfer.json"
    )
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"real data folder {DATA} is absent (see shared/data/README.md)")

    from rich.console import Console

    from cordmap.learn.data import gather_cases, phantom_cases
    from cordmap.learn.evaluate import evaluate_model, report_table
    from cordmap.learn.finetune import finetune
    from cordmap.learn.modelfile import load_model
    from cordmap.learn.train import TrainConfig, train
    from cordmap.pipeline.training import load_cases

    console = Console()
    for part in ("cases", "finetune-run") if args.resume else ("",):
        shutil.rmtree(args.work / part, ignore_errors=True)
    timings = {}

    start = time.perf_counter()
    phantoms = phantom_cases(args.phantoms, seed=args.seed)
    schema = phantoms[0][2].schema
    timings["phantoms_s"] = time.perf_counter() - start

    start = time.perf_counter()
    extra = tuple(a for a in args.extra.split(",") if a)
    config = TrainConfig(
        epochs=args.epochs,
        patches_per_epoch=args.patches,
        seed=args.seed,
        val_fraction=1 / args.phantoms,
        test_fraction=0.0,
        extra_augmentation=extra,
        classes=args.classes,
    )
    trained = train(phantoms, args.work / "phantom-run", schema, config)
    timings["train_s"] = time.perf_counter() - start

    cases = import_real(args.work)
    real = {name: gather_cases(load_cases([path]))[0][0] for name, path in cases.items()}
    model = load_model(trained.model_path, schema)
    heldout_phantom = phantom_cases(1, seed=HELDOUT_PHANTOM)
    start = time.perf_counter()
    before = evaluate_model(model, heldout_phantom + list(real.values()))
    timings["segment_real_s"] = time.perf_counter() - start
    console.print(report_table(before, "phantom-trained model on real images"))
    largest = evaluate_model(model, heldout_phantom + list(real.values()), keep_largest=("cord",))
    console.print(
        report_table(largest, "the same, the cord's largest piece only (--keep-largest cord)")
    )

    start = time.perf_counter()
    tuned = finetune(
        trained.model_path,
        [real["pam50-small"]],
        args.work / "finetune-run",
        schema,
        heldout=[real["sct-t2"]],
        config=TrainConfig(
            epochs=args.finetune_epochs,
            patches_per_epoch=args.patches,
            seed=args.seed,
            annotated=("cord",),
        ),
    )
    timings["finetune_s"] = time.perf_counter() - start
    console.print(report_table(tuned.after, "after fine-tuning on pam50-small"))

    results = {
        "cord_dice_phantom_model": cord_dice(before),
        "phantom_model_dice_heldout_phantom": before["cases"][0]["per_class"],
        "cord_dice_phantom_model_largest_piece": cord_dice(largest),
        "cord_dice_sct_t2_after_finetune": cord_dice(tuned.after)["sct-t2"],
        "cord_dice_sct_deepseg_3d_reference": sct_reference_dice(),
        "phantom_training": {
            "phantoms": args.phantoms,
            "split": trained.split,
            "epochs": trained.epochs_run,
            "best_val_loss": trained.best_val_loss,
            "history": trained.history,
        },
        "finetune": {
            "epochs": tuned.training.epochs_run,
            "best_loss": tuned.training.best_val_loss,
        },
        "reports": {
            "phantom_model": before,
            "phantom_model_largest_piece": largest,
            "before_finetune": tuned.before,
            "after_finetune": tuned.after,
        },
        "timings": timings,
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "settings": vars(args) | {"work": str(args.work), "out": str(args.out)},
    }
    for key in (
        "cord_dice_phantom_model",
        "cord_dice_phantom_model_largest_piece",
        "cord_dice_sct_t2_after_finetune",
        "cord_dice_sct_deepseg_3d_reference",
    ):
        console.print(f"{key}: {results[key]}")
    console.print(f"timings (s): { {k: round(v, 1) for k, v in timings.items()} }")
    write_text(args.out, json.dumps(results, indent=1, default=_json) + "\n")
    console.print(f"written {args.out}")


def _json(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(type(value))


if __name__ == "__main__":
    main()
