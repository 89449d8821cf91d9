"""The recipe of the bundled default model: which data, which split, which settings.

`cordmap train --recipe default --data ../shared/data --out RUN` re-creates the shipped
weights from local files with a fixed seed. The training data teaches
contrast-independence (see `learn.synth`):

- synthetic images of random contrast and resolution made from label maps of the whole
  anatomy: phantoms (cord, CSF, vertebrae, discs, roots, soft tissues; every class
  labelled) and the PAM50 template's cord, CSF and spine (its spine mask does not tell
  vertebra from disc, so those two classes stay unlabelled there);
- real lumbar MRI, T1 and T2 (`lumbar-mri/`: vertebral bodies or discs labelled; what that
  tells for sure, `lumbar_target`: the discs between labelled bodies, the bodies between
  labelled discs, background in front of the spine and far behind it; every other voxel
  is unknown, not background, so the loss leaves it out);
- the real T2 PAM50 image with its cord mask (`pam50-small/`: only the cord labelled).

The split (`SPLIT_SEED`) is fixed by name and documented in the model card: per lumbar
dataset a quarter of the scans is held out for testing and never trains or selects the
model; `sct-t2` (a real subject) and the HELDOUT_PHANTOMS phantoms of seeds HELDOUT_PHANTOM
up are test cases too. The
model of the best validation loss is kept; validation uses two lumbar scans and a
phantom image of its own seed.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from cordmap.errors import CordmapError
from cordmap.learn.classes import ClassMapping
from cordmap.learn.data import UNKNOWN, Example, prepare, resample
from cordmap.learn.model import UNetConfig
from cordmap.learn.synth import generation_map
from cordmap.learn.train import TrainConfig, TrainResult, _resume_checkpoint, fit
from cordmap.protocol.schema import LabelSchema

SPLIT_SEED = 0
#: Lumbar datasets (manifest name prefixes), their contrast and held-out share.
LUMBAR_GROUPS = {"vb3": "T1", "vb2": "T2", "vb1": "T1/T2/TIRM", "ivd": "T2"}
HELDOUT_SHARE = 0.25
VALIDATION = {"vb3": 1, "vb2": 1}  # scans per group that select the model (not test)
PHANTOMS = 24  # synthetic phantoms: seeds 0..23
VALIDATION_PHANTOM = 900
HELDOUT_PHANTOM = 1000
HELDOUT_PHANTOMS = 4  # seeds 1000..1003: one phantom's Dice swings widely between runs
#: Share of the training patches drawn from each kind of example.
DRAW_SHARE = {"synthetic": 0.5, "lumbar": 0.4, "cord": 0.1}

DEFAULT = TrainConfig(
    model="small",
    classes="spine",
    epochs=40,
    patches_per_epoch=320,
    batch_size=2,
    seed=0,
    extra_augmentation=("intensity", "bias", "scale", "tilt"),
    foreground=0.8,
)
RECIPES = {"default": DEFAULT}


def lumbar_split(folder: str | Path) -> dict[str, list[str]]:
    """The documented split of `lumbar-mri/`: train, val (model selection) and test
    (held out), per dataset a fixed share by a seeded permutation of the sorted names."""
    manifest = _manifest(Path(folder))
    split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for group in LUMBAR_GROUPS:
        names = sorted(n for n in manifest if n.split("-")[0] == group)
        order = [names[i] for i in np.random.default_rng(SPLIT_SEED).permutation(len(names))]
        n_test = max(1, round(HELDOUT_SHARE * len(names)))
        n_val = VALIDATION.get(group, 0)
        split["test"] += order[:n_test]
        split["val"] += order[n_test : n_test + n_val]
        split["train"] += order[n_test + n_val :]
    return {part: sorted(names) for part, names in split.items()}


def contrast(name: str) -> str:
    """Contrast of a lumbar-mri scan from its dataset ("vb3-01" -> "T1")."""
    return LUMBAR_GROUPS[name.split("-")[0]]


def recipe_data(
    data: str | Path, schema: LabelSchema, mapping: ClassMapping, net_config: UNetConfig
) -> tuple[dict[str, Example], dict[str, list[str]]]:
    """The recipe's examples on the model grid and its train / val / test split."""
    data = Path(data)
    for needed in (
        "lumbar-mri/manifest.json",
        "pam50/PAM50_cord.nii.gz",
        "pam50-small/PAM50_small_t2.nii.gz",
    ):
        if not (data / needed).is_file():
            raise CordmapError(
                f"{data / needed} is missing: pass `data` the folder holding "
                "lumbar-mri/, pam50/ and pam50-small/ (see the README)"
            )
    everything = [mapping.names.index(n) for n in mapping.names[1:]]
    lumbar = lumbar_split(data / "lumbar-mri")
    examples: dict[str, Example] = {}
    for name in lumbar["train"] + lumbar["val"]:
        image, labels = read_lumbar(data / "lumbar-mri", name, schema)
        example = prepare(name, image, labels, mapping, net_config)
        assert example.target is not None  # prepared with labels
        examples[name] = replace(
            example,
            target=lumbar_target(example.target, mapping, example.spacing),
            weight=DRAW_SHARE["lumbar"] / len(lumbar["train"]),
        )
    image, labels = read_cord_image(
        data / "pam50-small/PAM50_small_t2.nii.gz",
        data / "pam50-small/PAM50_small_cord.nii.gz",
        schema,
    )
    cord = mapping.names.index("cord")
    examples["pam50-small"] = replace(
        prepare("pam50-small", image, labels, mapping, net_config),
        unlabelled=tuple(c for c in everything if c != cord),
        weight=DRAW_SHARE["cord"],
    )
    synthetic = [phantom_label_map(seed, mapping) for seed in range(PHANTOMS)]
    synthetic.append(pam50_label_map(data / "pam50", mapping))
    for example in synthetic:
        examples[example.name] = replace(example, weight=DRAW_SHARE["synthetic"] / len(synthetic))
    examples["phantom-900"] = phantom_image(VALIDATION_PHANTOM, mapping, net_config)
    split = {
        "train": sorted(lumbar["train"]) + ["pam50-small"] + [e.name for e in synthetic],
        "val": sorted(lumbar["val"]) + ["phantom-900"],
        "test": sorted(lumbar["test"])
        + ["sct-t2"]
        + [f"phantom-{HELDOUT_PHANTOM + i}" for i in range(HELDOUT_PHANTOMS)],
    }
    return examples, split


def train_recipe(
    name: str,
    data: str | Path,
    out_dir: str | Path,
    schema: LabelSchema,
    *,
    epochs: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train the recipe `name` on the local `data` folder into `out_dir` (resumable)."""
    if name not in RECIPES:
        raise CordmapError(f"unknown recipe '{name}'; use one of {', '.join(RECIPES)}")
    config = replace(RECIPES[name], progress=progress)
    if epochs is not None:
        config = replace(config, epochs=epochs)
    mapping = config.mapping(schema)
    net_config = config.network_config(len(mapping))
    settings = {
        "recipe": name,
        "train": config.resumable_settings(),
        "network": net_config.to_dict(),
        "split": {"lumbar-mri": lumbar_split(Path(data) / "lumbar-mri")},
        "fine_tuned": False,
    }
    resume = _resume_checkpoint(Path(out_dir), settings)
    examples, split = recipe_data(data, schema, mapping, net_config)
    return fit(examples, split, out_dir, mapping, net_config, config, settings, resume=resume)


# -- sources ---------------------------------------------------------------------------------
#: Lumbar targets: the largest gap (mm) between two labelled neighbours filled with the
#: other class (a disc between two bodies, a body between two discs); background certain
#: this far anterior to the labelled column and this far posterior to it (beyond the
#: spinous processes).
GAP_MM = {"vertebra": 20.0, "disc": 45.0}
ANTERIOR_MM = 5.0
POSTERIOR_MM = 90.0


def lumbar_target(target: np.ndarray, mapping: ClassMapping, spacing) -> np.ndarray:
    """What a scan labelled with vertebral bodies only (or discs only) tells for sure,
    on the model grid: the labelled class; the other class between two labelled neighbours
    (a disc between two bodies, a body between two discs) along each column; background
    anterior to the column (abdomen) and far behind it (back muscles); UNKNOWN elsewhere
    (posterior elements, canal, unlabelled levels)."""
    vertebra, disc = mapping.names.index("vertebra"), mapping.names.index("disc")
    labelled = vertebra if (target == vertebra).sum() >= (target == disc).sum() else disc
    other = disc if labelled == vertebra else vertebra
    mask = target == labelled
    out = np.full(target.shape, UNKNOWN, np.uint8)
    pieces, count = ndimage.label(mask)
    sizes = np.bincount(pieces.ravel())[1:]
    centres = ndimage.center_of_mass(mask, pieces, range(1, count + 1))
    order = [
        i + 1
        for i in sorted(range(count), key=lambda i: centres[i][2])
        if sizes[i] >= 0.2 * sizes.max()
    ]
    gap = int(round(GAP_MM[mapping.names[labelled]] / spacing[2]))
    for lower, upper in zip(order, order[1:]):
        top = np.where(pieces == lower, np.arange(target.shape[2]), -1).max(axis=2)
        bottom = np.where(pieces == upper, np.arange(target.shape[2]), target.shape[2]).min(axis=2)
        columns = (
            (top >= 0) & (bottom < target.shape[2]) & (bottom - top > 1) & (bottom - top <= gap)
        )
        for i, j in zip(*np.nonzero(columns)):
            out[i, j, top[i, j] + 1 : bottom[i, j]] = other
    z = np.nonzero(mask.any(axis=(0, 1)))[0]
    if len(z):
        front = np.where(mask, np.arange(target.shape[1])[None, :, None], -1).max(axis=(0, 1))
        back = np.where(mask, np.arange(target.shape[1])[None, :, None], target.shape[1]).min(
            axis=(0, 1)
        )
        known = np.arange(target.shape[2])
        front = np.interp(known, z, front[z])
        back = np.interp(known, z, back[z])
        y = np.arange(target.shape[1])[None, :]
        for k in range(int(z.min()), target.shape[2]):  # not below the lowest (the sacrum)
            plane = out[:, :, k]
            plane[
                :,
                (y[0] > front[k] + ANTERIOR_MM / spacing[1])
                | (y[0] < back[k] - POSTERIOR_MM / spacing[1]),
            ] = 0
    out[mask] = labelled
    return out


def read_lumbar(folder: Path, name: str, schema: LabelSchema):
    from cordmap.io.nifti import read_labels, read_nifti

    return (
        read_nifti(folder / f"{name}_img.nii.gz"),
        read_labels(folder / f"{name}_labels.nii.gz", schema),
    )


def read_cord_image(image_path: Path, cord_path: Path, schema: LabelSchema):
    """A real image and its binary cord mask (1 = cord, as the Spinal Cord Toolbox writes)."""
    from cordmap.io.nifti import read_nifti
    from cordmap.volume import LabelVolume

    image, mask = read_nifti(image_path), read_nifti(cord_path)
    labels = LabelVolume(
        (np.asarray(mask.array) > 0.5).astype(np.uint16), mask.affine, schema=schema
    )
    return image, labels


def phantom_label_map(seed: int, mapping: ClassMapping, spacing_mm: float = 1.0) -> Example:
    """Phantom `seed` as a synthetic example: its labels and soft tissues on a 1 mm grid."""
    from cordmap.anatomy.phantom_geometry import PhantomGeometry, draw_parameters
    from cordmap.anatomy.phantom_sampling import axial_grid, rasterise

    geometry = PhantomGeometry(draw_parameters(seed, spacing_mm))
    labels, tissues = rasterise(geometry, axial_grid(geometry, spacing_mm, spacing_mm))
    target = mapping.lookup_table()[labels]
    return Example(
        f"synthetic-phantom-{seed:03d}",
        None,
        target,
        (spacing_mm,) * 3,
        generation=generation_map(labels, tissues),
    )


def pam50_label_map(folder: Path, mapping: ClassMapping, spacing_mm: float = 1.0) -> Example:
    """The PAM50 template's cord, CSF and spine as a synthetic example on a 1 mm grid.

    The spine mask covers vertebrae and discs alike, so both stay unlabelled here."""
    from cordmap.io.nifti import read_nifti

    masks = {part: read_nifti(folder / f"PAM50_{part}.nii.gz") for part in ("spine", "csf", "cord")}
    spacing = masks["cord"].spacing
    shape = tuple(max(1, round(n * s / spacing_mm)) for n, s in zip(masks["cord"].shape, spacing))
    tissue = np.zeros(shape, np.int16)
    for value, part in enumerate(("spine", "csf", "cord"), start=1):  # later wins
        mask = (np.asarray(masks[part].array) > 0.5).astype(np.uint8)
        tissue[resample(mask, shape, order=0) > 0] = value
    target = np.zeros(shape, np.uint8)
    target[tissue == 2] = mapping.names.index("csf")
    target[tissue == 3] = mapping.names.index("cord")
    unlabelled = tuple(mapping.names.index(n) for n in ("vertebra", "disc"))
    return Example(
        "synthetic-pam50", None, target, (spacing_mm,) * 3, unlabelled=unlabelled, generation=tissue
    )


def phantom_image(seed: int, mapping: ClassMapping, net_config: UNetConfig) -> Example:
    """A phantom's T2-like image of varied contrast with its exact labels (validation)."""
    from cordmap.learn.data import phantom_cases

    ((name, image, labels),) = phantom_cases(1, seed)
    return prepare(name, image, labels, mapping, net_config)


def _manifest(folder: Path) -> dict:
    path = folder / "manifest.json"
    if not path.is_file():
        raise CordmapError(f"{path} is missing: pass the lumbar-mri folder of ../shared/data")
    return json.loads(path.read_text())
