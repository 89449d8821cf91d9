"""Segmentation commands: train, evaluate, segment, levels, auto, models, finetune."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cordmap.cli.common import command, console, parse_patch
from cordmap.cli.planning import print_best
from cordmap.errors import CordmapError


def _names(text: str | None) -> tuple[str, ...]:
    """'cord,csf' -> ('cord', 'csf')."""
    return tuple(n.strip() for n in text.split(",") if n.strip()) if text else ()


def _train_options(
    epochs,
    patches,
    batch_size,
    patch,
    seed,
    augment,
    extra_augmentation,
    balance_classes,
    accelerator,
    devices,
    strategy,
    progress,
    **extra,
):
    from cordmap.learn.train import TrainConfig

    return TrainConfig(
        epochs=epochs,
        patches_per_epoch=patches,
        batch_size=batch_size,
        patch=parse_patch(patch),
        seed=seed,
        augment=augment,
        extra_augmentation=_names(extra_augmentation),
        balance_classes=balance_classes,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        progress=progress,
        **extra,
    )


_EPOCHS = typer.Option(help="Maximum number of epochs (the best validation loss is kept).")
_PATCHES = typer.Option("--patches", help="Training patches drawn per epoch.")
_PATCH = typer.Option(help="Patch / sliding-window size X,Y,Z in voxels (default: the config's).")
_ACCEL = typer.Option(help="Lightning accelerator: auto, cpu, gpu.")
_DEVICES = typer.Option(help="Lightning devices: auto, 1, 2, ...")
_STRATEGY = typer.Option(help="Lightning strategy: auto, ddp, ...")
_EXTRA = typer.Option(
    help="Extra augmentations, comma-separated: intensity, bias, elastic, scale, tilt, remap."
)
_KEEP_LARGEST = typer.Option(help="Classes to keep only the largest connected piece of, e.g. cord.")
_BALANCE = typer.Option(
    help="Class-weighted cross-entropy (--no-balance-classes: the published plain loss)."
)


@command()
def train(
    cases: Annotated[list[Path] | None, typer.Argument(help="Annotated case folders.")] = None,
    out: Annotated[
        Path, typer.Option(help="Run folder (re-run the same command to resume).")
    ] = Path("unet-run"),
    phantoms: Annotated[int, typer.Option(help="Add N generated phantom cases.")] = 0,
    phantom_seed: Annotated[int, typer.Option(help="Seed of the first phantom.")] = 0,
    config: Annotated[
        str, typer.Option(help="Network: small (default, CPU) or published.")
    ] = "small",
    classes: Annotated[
        str,
        typer.Option(
            help="Training classes: published (7), spine (cord, CSF, vertebra, disc) or cord."
        ),
    ] = "published",
    epochs: Annotated[
        int | None,
        typer.Option(
            help="Maximum number of epochs, the best validation loss kept "
            "(default 30; with --recipe, the recipe's own)."
        ),
    ] = None,
    patches: Annotated[int, _PATCHES] = 24,
    batch_size: Annotated[int, typer.Option(help="Patches per optimiser step.")] = 2,
    patch: Annotated[str | None, _PATCH] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split, sampling and weights.")] = 0,
    augment: Annotated[bool, typer.Option(help="Published rotation + noise augmentation.")] = True,
    extra_augmentation: Annotated[str | None, _EXTRA] = None,
    balance_classes: Annotated[bool, _BALANCE] = True,
    accelerator: Annotated[str, _ACCEL] = "auto",
    devices: Annotated[str, _DEVICES] = "auto",
    strategy: Annotated[str, _STRATEGY] = "auto",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    recipe: Annotated[
        str | None,
        typer.Option(
            help="Train a recipe with its own data and settings: default (the bundled model)."
        ),
    ] = None,
    data: Annotated[
        Path,
        typer.Option(
            help="With --recipe: the folder holding lumbar-mri/, pam50/ and pam50-small/."
        ),
    ] = Path("../shared/data"),
):
    """Train the 3D U-Net on annotated cases and/or phantoms, or a recipe (resumable)."""
    from cordmap.learn.data import gather_cases
    from cordmap.learn.train import train as run_training
    from cordmap.pipeline.training import load_cases

    if recipe is not None:
        from cordmap.learn.recipe import train_recipe
        from cordmap.protocol.schema import LabelSchema

        if cases or phantoms:
            raise CordmapError("--recipe brings its own data: pass no case folders or --phantoms")
        result = train_recipe(
            recipe, data, out, LabelSchema.load(), epochs=epochs, progress=progress
        )
        console.print(
            f"trained {result.epochs_run} epochs; best validation loss {result.best_val_loss:.4f}"
        )
        console.print(f"written {result.model_path} and {result.loss_plot}")
        return
    settings = _train_options(
        30 if epochs is None else epochs,
        patches,
        batch_size,
        patch,
        seed,
        augment,
        extra_augmentation,
        balance_classes,
        accelerator,
        devices,
        strategy,
        progress,
        model=config,
        classes=classes,
    )
    data, schema = gather_cases(load_cases(cases or []), phantoms, phantom_seed)
    result = run_training(data, out, schema, settings)
    console.print(
        f"trained {result.epochs_run} epochs; best validation loss "
        f"{result.best_val_loss:.4f}; split { ({k: len(v) for k, v in result.split.items()}) }"
    )
    console.print(f"written {result.model_path} and {result.loss_plot}")


@command()
def evaluate(
    cases: Annotated[list[Path], typer.Argument(help="Case folders with manual labels.")],
    model: Annotated[
        Path | None, typer.Option(help="Model file; omit to score the stored desc-unet labels.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the full report (JSON) here.")] = None,
    keep_largest: Annotated[str | None, _KEEP_LARGEST] = None,
):
    """Score segmentations against manual labels: IoU, Dice, HD95, mIoU, pixel accuracy."""
    from cordmap.learn.evaluate import report_table, write_report
    from cordmap.pipeline.training import evaluate_case_dirs

    report = evaluate_case_dirs(cases, model, _names(keep_largest))
    console.print(report_table(report))
    if out is not None:
        console.print(f"written {write_report(report, out)}")


_ANCHOR = typer.Option(
    help="Vertebral anchor: 'L5' (the lowest vertebra in view), 'T12/L1 disc' (the lowest disc in view), '...@S' for the one nearest S mm."
)


@command()
def segment(
    case_dir: Annotated[Path, typer.Argument(help="Case folder.")],
    model: Annotated[
        Path | None,
        typer.Option(help="Model file written by `cordmap train` (default: the bundled model)."),
    ] = None,
    overlap: Annotated[float, typer.Option(help="Sliding-window overlap (0..0.9).")] = 0.25,
    device: Annotated[str, typer.Option(help="Torch device: cpu, cuda, cuda:1 ...")] = "cpu",
    keep_largest: Annotated[str | None, _KEEP_LARGEST] = None,
    anchor: Annotated[str | None, _ANCHOR] = None,
):
    """Segment a case with a U-Net (the bundled model by default) and number its vertebrae;
    writes its desc-unet labels."""
    from cordmap.pipeline.segment import segment_case

    result = segment_case(
        case_dir,
        model,
        overlap=overlap,
        device=device,
        keep_largest=_names(keep_largest),
        anchor=anchor,
    )
    _print_segmentation(result)


@command()
def levels(
    case_dir: Annotated[Path, typer.Argument(help="Case folder segmented by `cordmap segment`.")],
    anchor: Annotated[str | None, _ANCHOR] = None,
):
    """Number the vertebrae and discs of a case's segmentation again (e.g. from an anchor)."""
    from cordmap.pipeline.segment import renumber_case

    _print_segmentation(renumber_case(case_dir, anchor))


def _print_segmentation(result) -> None:
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    if result.levels:
        console.print(f"{result.levels['summary']}: {', '.join(result.levels['vertebrae'])}")
        if result.levels["conus_level"]:
            console.print(f"conus tip at {result.levels['conus_level']}")
    state = "up to date" if result.up_to_date else "written"
    console.print(f"{state} {result.path}")


@command()
def auto(
    image: Annotated[
        Path, typer.Argument(help="NIfTI file, DICOM folder or slice folder of the scan.")
    ],
    case_dir: Annotated[Path, typer.Argument(help="Case folder to create (or refresh).")],
    series: Annotated[
        str | None, typer.Option(help="DICOM series: number, UID or description.")
    ] = None,
    subject: Annotated[str, typer.Option(help="BIDS subject label.")] = "sub-01",
    anchor: Annotated[str | None, _ANCHOR] = None,
    model: Annotated[
        Path | None, typer.Option(help="Model file (default: the bundled model).")
    ] = None,
):
    """From an unlabelled scan to a plan: import, segment, levels, validate, mesh, plan,
    viewer site and report, unattended."""
    from rich.progress import Progress

    from cordmap.pipeline.auto import run_auto

    stages = ("import", "segment", "validate", "mesh", "plan", "viewer", "report")
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("cordmap auto", total=len(stages))

        def on_step(stage: str) -> None:
            progress.update(task, completed=stages.index(stage), description=stage)

        result = run_auto(
            image,
            case_dir,
            series=series,
            subject=subject,
            anchor=anchor,
            model=model,
            on_step=on_step,
        )
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    levels = result.levels
    console.print(f"{levels['summary']}: {', '.join(levels['vertebrae'])}")
    if levels["conus_level"]:
        console.print(f"conus tip at {levels['conus_level']}")
    if result.plan is not None:
        print_best(result.plan, f" ({result.plan.enlargement.span})")
    else:
        console.print(f"[yellow]no plan:[/yellow] {result.no_plan}", soft_wrap=True)
    if result.up_to_date:
        console.print(f"up to date: {', '.join(result.up_to_date)}")
    console.print(f"written {result.report} and {result.site}")


@command()
def models():
    """List the segmentation models bundled with cordmap, with their model cards."""
    from cordmap.learn.bundled import bundled_models

    found = bundled_models()
    if not found:
        console.print("no bundled models in this installation")
    for item in found:
        card = item.card
        console.print(f"[bold]{item.name}[/bold]  {item.path}")
        for key in ("summary", "classes", "command", "hardware", "training_time"):
            if key in card:
                console.print(f"  {key}: {card[key]}")
        for name, scores in card.get("heldout", {}).items():
            console.print(f"  held out, {name}: {scores}", highlight=False)


@command()
def finetune(
    model: Annotated[Path, typer.Argument(help="Trained model file.")],
    cases: Annotated[list[Path], typer.Argument(help="Annotated case folders to adapt to.")],
    out: Annotated[Path, typer.Option(help="Run folder of the fine-tuning.")] = Path(
        "unet-finetune"
    ),
    heldout: Annotated[
        list[Path] | None,
        typer.Option(help="Held-out case folder scored before and after (repeat)."),
    ] = None,
    freeze_encoder: Annotated[bool, typer.Option(help="Train the decoder only.")] = False,
    annotated: Annotated[
        str | None,
        typer.Option(help="Classes annotated in the cases, e.g. cord,csf (default: all)."),
    ] = None,
    epochs: Annotated[int, _EPOCHS] = 10,
    patches: Annotated[int, _PATCHES] = 24,
    batch_size: Annotated[int, typer.Option(help="Patches per optimiser step.")] = 2,
    patch: Annotated[str | None, _PATCH] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sampling.")] = 0,
    augment: Annotated[bool, typer.Option(help="Published rotation + noise augmentation.")] = True,
    extra_augmentation: Annotated[str | None, _EXTRA] = None,
    balance_classes: Annotated[bool, _BALANCE] = True,
    accelerator: Annotated[str, _ACCEL] = "auto",
    devices: Annotated[str, _DEVICES] = "auto",
    strategy: Annotated[str, _STRATEGY] = "auto",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
):
    """Adapt a trained U-Net to a few annotated cases; report held-out cases before/after."""
    from cordmap.learn.data import gather_cases
    from cordmap.learn.evaluate import report_table
    from cordmap.learn.finetune import finetune as run_finetune
    from cordmap.pipeline.training import load_cases

    settings = _train_options(
        epochs,
        patches,
        batch_size,
        patch,
        seed,
        augment,
        extra_augmentation,
        balance_classes,
        accelerator,
        devices,
        strategy,
        progress,
        freeze_encoder=freeze_encoder,
        annotated=_names(annotated) or None,
    )
    data, schema = gather_cases(load_cases(cases))
    held = gather_cases(load_cases(heldout))[0] if heldout else []
    result = run_finetune(model, data, out, schema, heldout=held, config=settings)
    for title, report in (("before", result.before), ("after", result.after)):
        if report is not None:
            console.print(report_table(report, title=f"held-out cases {title} fine-tuning"))
    console.print(f"written {result.training.model_path} and {result.report_path}")


# -- planning (cordmap.planning) ----------------------------------------------------------------
