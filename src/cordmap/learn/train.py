"""Training, resuming and fine-tuning with PyTorch Lightning.

As published: Adam (lr 1.2e-3), cross-entropy, up to 100 epochs, the weights of the best
validation loss kept. Unlike the published run, the cross-entropy is class-weighted by
default (`class_weights`; `balance_classes=False` for the published plain loss): thin
classes (cord, roots) are a fraction of a percent of the voxels, and a short CPU training
otherwise learns to predict none of them. A run folder holds `checkpoints/last.ckpt` (saved after every
epoch, so an interruption loses at most the current epoch; running again with the same
settings resumes from it), `checkpoints/best.ckpt`, CSV logs (`logs/part-N/metrics.csv`,
one per session), the loss curves (`loss.png`, the published Fig. 3), the split
(`split.json`) and the final `model.pt`. Everything is seeded.

Fine-tuning may use cases annotated with only some classes (`annotated`): their
unlabelled voxels then count as "background or any unannotated class" (the marginal
cross-entropy for partial labels), so a cord-only mask does not teach that CSF is
background.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference

from cordmap import __version__
from cordmap.atomic import atomic_file, write_text
from cordmap.errors import CordmapError
from cordmap.learn.classes import CLASS_SETS, ClassMapping
from cordmap.learn.data import (
    UNKNOWN,
    Example,
    PatchDataset,
    VolumeDataset,
    check_augmentations,
    crop_patch,
    crop_to_labels,
    prepare,
    split_cases,
)
from cordmap.learn.model import CONFIGS, UNet3D, UNetConfig
from cordmap.learn.modelfile import save_model

LEARNING_RATE = 1.2e-3


@dataclass
class TrainConfig:
    """Settings of a training run (the defaults: the small configuration)."""

    model: str = "small"  # a name of CONFIGS
    classes: str = "published"  # a name of CLASS_SETS
    epochs: int = 30
    patches_per_epoch: int = 24
    batch_size: int = 2
    lr: float = LEARNING_RATE
    seed: int = 0
    augment: bool = True
    extra_augmentation: tuple[str, ...] = ()  # any of data.EXTRA_AUGMENTATIONS
    foreground: float = 0.67  # chance that a patch is centred on a labelled voxel
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    patch: tuple[int, int, int] | None = None  # default: the model configuration's patch
    filters: int | None = None  # override the configuration's width
    accelerator: str = "auto"
    devices: str = "auto"
    strategy: str = "auto"
    progress: bool = True
    freeze_encoder: bool = False
    annotated: tuple[str, ...] | None = None  # classes annotated in the data (None: all)
    balance_classes: bool = True  # weight the loss by `class_weights` (published: False)

    def network_config(self, classes: int) -> UNetConfig:
        if self.model not in CONFIGS:
            raise CordmapError(
                f"unknown model configuration '{self.model}'; use one of {', '.join(CONFIGS)}"
            )
        base = CONFIGS[self.model]
        changes: dict[str, Any] = {"classes": classes}
        if self.patch is not None:
            changes["patch"] = tuple(self.patch)
        if self.filters is not None:
            changes["filters"] = self.filters
        return replace(base, **changes)

    def mapping(self, schema) -> ClassMapping:
        if self.classes not in CLASS_SETS:
            raise CordmapError(
                f"unknown class set '{self.classes}'; use one of {', '.join(CLASS_SETS)}"
            )
        return ClassMapping(schema, CLASS_SETS[self.classes])

    def as_json(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    def resumable_settings(self) -> dict:
        """The settings a resumed run must share (epochs and hardware may change)."""
        return {
            key: value
            for key, value in self.as_json().items()
            if key not in ("epochs", "progress", "accelerator", "devices", "strategy")
        }


@dataclass
class TrainResult:
    model_path: Path
    best_val_loss: float | None
    epochs_run: int
    split: dict[str, list[str]]
    loss_plot: Path
    history: list[dict] = field(default_factory=list)


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    unlabelled: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy, weighted per target class by `weights` (a weighted mean, as
    F.cross_entropy's `weight`). `unlabelled` (one bit mask per batch item, bit c for class
    c, as `data.unlabelled_bits`) lists the classes a voxel labelled background may also
    be: its loss is then the marginal -log(p_background + p_those classes). Voxels of
    class UNKNOWN are left out."""
    if unlabelled is None or not bool(torch.as_tensor(unlabelled).any()):
        return F.cross_entropy(logits, target, weight=weights, ignore_index=UNKNOWN)
    classes = logits.shape[1]
    known = target != UNKNOWN
    target = torch.where(known, target, torch.zeros_like(target))
    bits = torch.as_tensor(unlabelled, device=logits.device).long()
    possible = ((bits[:, None] >> torch.arange(classes, device=logits.device)) & 1).bool()
    possible[:, 0] = True
    log_p = F.log_softmax(logits, dim=1)
    mask = possible.reshape(*possible.shape, *([1] * (logits.dim() - 2)))
    background = torch.logsumexp(log_p.masked_fill(~mask, float("-inf")), dim=1)
    labelled = log_p.gather(1, target[:, None])[:, 0]
    nll = -torch.where(target == 0, background, labelled)
    voxel_weights = known.float() if weights is None else weights[target] * known
    return (nll * voxel_weights).sum() / voxel_weights.sum().clamp_min(1e-12)


def class_weights(patches: PatchDataset, classes: int, probes: int = 64) -> list[float]:
    """Loss weights that keep thin classes (cord, roots) from being ignored:
    (background frequency / class frequency) ** 0.5, the frequencies counted in `probes`
    patches drawn as training draws them (before augmentation; classes absent weigh 1;
    without background voxels the most frequent class stands in for it)."""
    counts = np.zeros(classes)
    for index in range(probes):
        rng = np.random.default_rng((patches.seed, index, 0, 1))  # not a training draw
        example = patches.examples[rng.choice(len(patches.examples), p=patches.chances)]
        _, target = crop_patch(example, patches.patch, rng, patches.foreground, augment=False)
        counts += np.bincount(target.ravel(), minlength=UNKNOWN + 1)[:classes]
    weights = np.ones(classes)
    present = counts > 0
    weights[present] = np.sqrt((counts[0] or counts.max()) / counts[present])
    return [round(float(w), 4) for w in weights]


class SegmentationModule(pl.LightningModule):
    """The U-Net with its loss and optimiser, for Lightning."""

    weights: torch.Tensor | None  # a buffer (register_buffer)

    def __init__(
        self,
        config: dict,
        lr: float = LEARNING_RATE,
        freeze_encoder: bool = False,
        weights: list[float] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.network = UNet3D(UNetConfig.from_dict(config))
        self.register_buffer(
            "weights", None if weights is None else torch.tensor(weights, dtype=torch.float32)
        )
        if freeze_encoder:
            for parameter in self.network.encoder_parameters():
                parameter.requires_grad_(False)

    def forward(self, x):
        return self.network(x)

    def training_step(self, batch, batch_index):
        image, target, unlabelled = batch
        loss = segmentation_loss(self.network(image), target, unlabelled, self.weights)
        self.log(
            "train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(image)
        )
        return loss

    def validation_step(self, batch, batch_index):
        image, target, unlabelled = batch
        logits = sliding_window_inference(
            image, self.network.config.patch, 2, self.network, overlap=0.0
        )
        assert isinstance(logits, torch.Tensor)  # the network returns one tensor
        loss = segmentation_loss(logits, target, unlabelled, self.weights)
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=1)

    def on_train_epoch_start(self):
        loader = self.trainer.train_dataloader
        assert loader is not None  # set by the time an epoch starts
        loader.dataset.epoch = self.current_epoch

    def configure_optimizers(self):
        return torch.optim.Adam(
            [p for p in self.parameters() if p.requires_grad], lr=self.hparams["lr"]
        )


def train(
    cases,
    out_dir: str | Path,
    schema,
    config: TrainConfig = TrainConfig(),
    *,
    initial: UNet3D | None = None,
    val_cases=None,
) -> TrainResult:
    """Train a U-Net on (name, image, labels) cases; resume if `out_dir` holds this run.

    The cases are split by `config.seed` unless `val_cases` is given, in which case all
    `cases` train and `val_cases` validate (fine-tuning). `initial` starts from trained
    weights of the same architecture.
    """
    check_augmentations(config.extra_augmentation)
    mapping = config.mapping(schema)
    unannotated = _unannotated(mapping, config.annotated)
    net_config = initial.config if initial is not None else config.network_config(len(mapping))
    if initial is not None and config.patch is not None:
        net_config = replace(net_config, patch=(*config.patch,))
    by_name = {name: (image, labels) for name, image, labels in cases}
    if val_cases is None:
        split = split_cases(by_name, config.seed, config.val_fraction, config.test_fraction)
    else:
        by_name.update({name: (image, labels) for name, image, labels in val_cases})
        split = {
            "train": sorted(n for n, _, _ in cases),
            "val": sorted(n for n, _, _ in val_cases),
            "test": [],
        }
    if not split["train"]:
        raise CordmapError("the training set is empty: pass case folders with labels")
    settings = {
        "train": config.resumable_settings(),
        "network": net_config.to_dict(),
        "split": split,
        "fine_tuned": initial is not None,
    }
    resume = _resume_checkpoint(Path(out_dir), settings)
    examples = {
        name: replace(prepare(name, *by_name[name], mapping, net_config), unlabelled=unannotated)
        for name in split["train"] + split["val"]
    }
    return fit(
        examples,
        split,
        out_dir,
        mapping,
        net_config,
        config,
        settings,
        initial=initial,
        resume=resume,
    )


def fit(
    examples: dict[str, Example],
    split: dict[str, list[str]],
    out_dir: str | Path,
    mapping: ClassMapping,
    net_config: UNetConfig,
    config: TrainConfig,
    settings: dict,
    *,
    initial: UNet3D | None = None,
    resume: str | None = None,
) -> TrainResult:
    """Train on prepared examples (`split`: the names that train and validate); write the
    run folder. `settings` (recorded in run.json) identify the run for resuming."""
    out_dir = Path(out_dir)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    if resume is None:  # only once every input has been read and checked
        write_text(out_dir / "run.json", json.dumps(settings, indent=1) + "\n")
        write_text(out_dir / "split.json", json.dumps(split, indent=1) + "\n")
    train_data = PatchDataset(
        [examples[n] for n in split["train"]],
        net_config.patch,
        config.patches_per_epoch,
        config.seed,
        config.augment,
        config.foreground,
        tuple(config.extra_augmentation),
    )
    weights = class_weights(train_data, len(mapping)) if config.balance_classes else None
    module = SegmentationModule(net_config.to_dict(), config.lr, config.freeze_encoder, weights)
    if initial is not None:
        module.network.load_state_dict(initial.state_dict())
    val_examples = [crop_to_labels(examples[n]) for n in split["val"] or split["train"]]
    loaders = (
        torch.utils.data.DataLoader(train_data, batch_size=config.batch_size),
        torch.utils.data.DataLoader(VolumeDataset(val_examples), batch_size=1),
    )

    best = pl.callbacks.ModelCheckpoint(
        dirpath=out_dir / "checkpoints",
        filename="best",
        monitor="val_loss",
        mode="min",
        enable_version_counter=False,
    )
    # after every epoch, improved or not (save_last only saves with a new best)
    last = pl.callbacks.ModelCheckpoint(
        dirpath=out_dir / "checkpoints", filename="last", enable_version_counter=False
    )
    with _quiet_lightning():
        trainer = pl.Trainer(
            max_epochs=config.epochs,
            accelerator=config.accelerator,
            devices=config.devices,
            strategy=config.strategy,
            callbacks=[best, last],
            default_root_dir=out_dir,
            logger=pl.loggers.CSVLogger(out_dir, name="logs", version=_log_part(out_dir)),
            enable_progress_bar=config.progress,
            enable_model_summary=False,
            log_every_n_steps=1,
            num_sanity_val_steps=0,
        )
        trainer.fit(module, *loaders, ckpt_path=resume)

    history = read_history(out_dir / "logs")
    best_path = best.best_model_path or str(out_dir / "checkpoints" / "last.ckpt")
    state = torch.load(best_path, map_location="cpu", weights_only=False)["state_dict"]
    module.load_state_dict(state)
    best_loss = float(best.best_model_score) if best.best_model_score is not None else None
    summary = _summary(examples, split, config, mapping, best_loss, len(history), initial)
    summary["class_weights"] = weights
    model_path = save_model(out_dir / "model.pt", module.network, mapping, summary)
    plot = plot_losses(history, out_dir / "loss.png")
    return TrainResult(model_path, best_loss, len(history), split, plot, history)


def _resume_checkpoint(out_dir: Path, settings: dict) -> str | None:
    """The last checkpoint of an interrupted run with these settings (None: start anew)."""
    recorded = out_dir / "run.json"
    last = out_dir / "checkpoints" / "last.ckpt"
    if recorded.is_file():
        if json.loads(recorded.read_text()) != json.loads(json.dumps(settings)):
            raise CordmapError(
                f"{out_dir} holds a training run with other settings or cases; "
                "pass a new output folder (or delete this one) to start anew"
            )
        if last.is_file():
            return str(last)
    elif out_dir.exists() and any(out_dir.iterdir()):
        raise CordmapError(
            f"{out_dir} is not empty and holds no cordmap training run; pass a new output folder"
        )
    return None


def _unannotated(mapping: ClassMapping, annotated) -> tuple[int, ...]:
    if annotated is None:
        return ()
    unknown = sorted(set(annotated) - set(mapping.names))
    if unknown:
        raise CordmapError(
            f"`annotated` names unknown classes {unknown}; use names of "
            f"{', '.join(mapping.names[1:])}"
        )
    return tuple(i for i, name in enumerate(mapping.names) if i and name not in annotated)


def _summary(
    examples: dict[str, Example], split, config: TrainConfig, mapping, best_loss, epochs, initial
) -> dict:
    train = [examples[n] for n in split["train"]]
    counts = np.zeros(len(mapping), dtype=np.intp)
    for e in train:
        assert e.target is not None  # training examples are labelled
        counts += np.bincount(e.target.ravel(), minlength=UNKNOWN + 1)[: len(mapping)]
    return {
        "cases": {part: list(names) for part, names in split.items()},
        "model_grid_spacing_mm": sorted({tuple(round(s, 3) for s in e.spacing) for e in train}),
        "class_voxel_fraction": {
            name: float(c / counts.sum()) for name, c in zip(mapping.names, counts)
        },
        "settings": config.as_json(),
        "epochs": epochs,
        "best_val_loss": best_loss,
        "fine_tuned": initial is not None,
        "cordmap_version": __version__,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _log_part(out_dir: Path) -> str:
    """CSV log folder of this (possibly resumed) session: logs/part-1, logs/part-2, ..."""
    return f"part-{len(list((out_dir / 'logs').glob('part-*'))) + 1}"


def read_history(logs: Path) -> list[dict]:
    """Per-epoch train and validation loss from the CSV logs of every session of a run
    (a resumed session's epochs replace those an interruption left half-logged)."""
    import csv

    epochs: dict[int, dict] = {}
    parts = sorted(logs.glob("part-*/metrics.csv"), key=lambda p: int(p.parent.name[5:]))
    for metrics_csv in parts:
        seen = set()
        with open(metrics_csv, newline="") as f:
            for row in csv.DictReader(f):
                epoch = int(row["epoch"])
                if epoch not in seen:
                    epochs[epoch] = {"epoch": epoch}
                    seen.add(epoch)
                for key in ("train_loss", "val_loss"):
                    if row.get(key):
                        epochs[epoch][key] = float(row[key])
    return [epochs[e] for e in sorted(epochs)]


def plot_losses(history: list[dict], path: Path) -> Path:
    """Training and validation loss per epoch (the published Fig. 3), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for key, label in (("train_loss", "training"), ("val_loss", "validation")):
        points = [(h["epoch"] + 1, h[key]) for h in history if key in h]
        if points:
            axes.plot(*zip(*points), marker="o", markersize=3, label=label)
    axes.set_xlabel("epoch")
    axes.set_ylabel("cross-entropy loss")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_file(path) as tmp:
        figure.savefig(tmp, dpi=120, format="png")
    plt.close(figure)
    return path


class _quiet_lightning:
    """Silence Lightning's start-up chatter (GPU availability, worker hints)."""

    def __enter__(self):
        self._level = logging.getLogger("pytorch_lightning").level
        logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")

    def __exit__(self, *exc):
        self._warnings.__exit__(*exc)
        logging.getLogger("pytorch_lightning").setLevel(self._level)
