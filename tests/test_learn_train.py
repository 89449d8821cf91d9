"""Training, resuming, inference on the image grid, case segmentation, fine-tuning, CLI.

Runs are tiny (a 4-filter U-Net on 16-voxel patches of small synthetic volumes) so the
file stays fast on a 2-core machine: they check mechanics, not accuracy.
"""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn
from typer.testing import CliRunner

from cordmap.case import Case
from cordmap.cli import app
from cordmap.errors import CordmapError
from cordmap.io.nifti import write_nifti
from cordmap.learn.classes import ClassMapping
from cordmap.learn.data import gather_cases
from cordmap.learn.finetune import finetune
from cordmap.learn.infer import predict, segment_image
from cordmap.learn.model import UNetConfig
from cordmap.learn.modelfile import TrainedModel, load_model
from cordmap.learn.train import TrainConfig, train
from cordmap.pipeline.segment import segment_case
from cordmap.protocol.schema import DEFAULT_PROTOCOL, LabelSchema
from cordmap.volume import LabelVolume, Volume

SCHEMA = LabelSchema.load()
TINY = dict(
    filters=4,
    patch=(16, 16, 16),
    patches_per_epoch=4,
    batch_size=2,
    progress=False,
    accelerator="cpu",
    devices="1",
)


def synthetic_case(seed, shape=(24, 24, 20), spacing=(1.0, 1.0, 2.0)):
    """A bright CSF tube around a dark cord along Z, with noise."""
    rng = np.random.default_rng(seed)
    x, y, _ = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    cx, cy = 12 + rng.uniform(-2, 2), 12 + rng.uniform(-2, 2)
    r = np.hypot(x - cx, y - cy)
    labels = np.where(r < 3, SCHEMA.find("cord").id, np.where(r < 6, SCHEMA.find("csf").id, 0))
    image = np.select([r < 3, r < 6], [400.0, 1000.0], 150.0) + rng.normal(0, 40, shape)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-12, 30, -200]
    return (
        f"synthetic-{seed}",
        Volume(image.astype(np.float32), affine),
        LabelVolume(labels.astype(np.uint16), affine, schema=SCHEMA),
    )


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks run fastest on one thread, above all on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "full"
    cases = [synthetic_case(s) for s in range(4)]
    result = train(cases, out, SCHEMA, TrainConfig(epochs=4, classes="cord", **TINY))
    return cases, out, result


def test_tiny_training_lowers_the_loss_and_writes_the_run(trained):
    _, out, result = trained
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == 4 and losses[-1] < losses[0]
    val = [h["val_loss"] for h in result.history]
    assert result.best_val_loss == pytest.approx(min(val))
    for name in (
        "model.pt",
        "loss.png",
        "split.json",
        "checkpoints/last.ckpt",
        "checkpoints/best.ckpt",
        "logs/part-1/metrics.csv",
    ):
        assert (out / name).is_file(), name
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "split.json").read_text()) == result.split
    model = load_model(result.model_path, SCHEMA)
    assert model.mapping.names == ["background", "cord"]
    assert model.training["cases"]["train"] == result.split["train"]
    assert model.config.filters == 4


def test_resuming_an_interrupted_run_continues_where_it_stopped(trained, tmp_path):
    cases, _, full = trained
    config = TrainConfig(epochs=2, classes="cord", **TINY)
    train(cases, tmp_path / "run", SCHEMA, config)  # "interrupted" after epoch 2
    config.epochs = 4
    resumed = train(cases, tmp_path / "run", SCHEMA, config)
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2, 3]
    for a, b in zip(resumed.history, full.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    other = TrainConfig(epochs=4, classes="cord", seed=5, **TINY)
    with pytest.raises(CordmapError, match="holds a training run with other settings"):
        train(cases, tmp_path / "run", SCHEMA, other)


class _Threshold(nn.Module):
    """A stand-in network: class 1 where the normalised intensity exceeds 0.5."""

    def __init__(self):
        super().__init__()
        self.config = UNetConfig(
            classes=2,
            filters=1,
            depth=2,
            input_shape=None,
            input_spacing_mm=(1.0, 1.0, 1.0),
            patch=(16, 16, 16),
        )

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), 20 * (x - 0.5)], dim=1)


def test_inference_output_lines_up_with_an_anisotropic_oblique_image():
    shape, spacing = (30, 26, 14), (0.7, 0.7, 3.0)
    theta = 0.3  # an oblique acquisition: rotation about S in the affine
    affine = np.eye(4)
    affine[:3, :3] = np.array(
        [[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]]
    ) @ np.diag(spacing)
    affine[:3, 3] = [10, -40, 120]
    grid = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    ball = sum((g - c) ** 2 for g, c in zip(grid, (12.0, 8.0, 20.0))) <= 36
    image = Volume(np.where(ball, 1000.0, 100.0).astype(np.float32), affine)
    model = TrainedModel(_Threshold(), ClassMapping(SCHEMA, ClassMapping(SCHEMA).classes[:2]), {})
    classes = predict(model, image)
    assert classes.shape == shape
    dice = 2 * (ball & (classes == 1)).sum() / (ball.sum() + (classes == 1).sum())
    assert dice > 0.9
    labels = segment_image(model, image).labels
    assert np.array_equal(labels.affine, affine)
    assert labels.ids() == [SCHEMA.find("cord").id]


def _case(tmp_path, name, case, protocol=None):
    from cordmap.pipeline.imports import import_case

    _, image, labels = case
    write_nifti(image, tmp_path / f"{name}_image.nii.gz")
    write_nifti(labels, tmp_path / f"{name}_labels.nii.gz")
    import_case(
        tmp_path / f"{name}_image.nii.gz",
        tmp_path / name,
        labels_source=tmp_path / f"{name}_labels.nii.gz",
        protocol=protocol,
    )
    return tmp_path / name


def test_segment_case_writes_unet_labels_on_the_image_grid(trained, tmp_path):
    model_path = trained[2].model_path
    case_dir = _case(tmp_path, "case", synthetic_case(11, shape=(20, 22, 9)))
    out = segment_case(case_dir, model_path).path
    case = Case.open(case_dir)
    assert out == case.labels_path("unet")
    written, source = nib.load(out), nib.load(case.image_path)
    assert written.shape == source.shape
    assert np.allclose(written.affine, source.affine)
    stage = case.manifest["stages"]["segment"]
    assert stage["outputs"][0]["path"] == out.name
    assert stage["results"]["classes"] == ["background", "cord"]
    assert segment_case(case_dir, model_path).up_to_date
    assert set(case.labels("unet").ids()) <= {SCHEMA.find("cord").id}


def test_model_for_another_protocol_version_is_refused(trained, tmp_path):
    protocol = json.loads(DEFAULT_PROTOCOL.read_text())
    protocol["version"] = "9.9.9"
    (tmp_path / "protocol.json").write_text(json.dumps(protocol))
    case_dir = _case(tmp_path, "case", synthetic_case(12), protocol=tmp_path / "protocol.json")
    with pytest.raises(CordmapError, match="trained for protocol 'cordmap-lumbosacral' version"):
        segment_case(case_dir, trained[2].model_path)
    assert not list(case_dir.glob("*desc-unet*"))


def test_finetuning_with_a_frozen_encoder_reports_before_and_after(trained, tmp_path):
    model_path = trained[2].model_path
    config = TrainConfig(epochs=1, freeze_encoder=True, annotated=("cord",), **TINY)
    result = finetune(
        model_path,
        [synthetic_case(20, spacing=(0.8, 0.8, 2.5))],
        tmp_path / "ft",
        SCHEMA,
        heldout=[synthetic_case(21, spacing=(0.8, 0.8, 2.5))],
        config=config,
    )
    before, after = (
        load_model(model_path, SCHEMA).network,
        load_model(result.training.model_path, SCHEMA).network,
    )
    for old, new in zip(before.encoder_parameters(), after.encoder_parameters()):
        assert torch.equal(old, new)
    assert not torch.equal(before.head.weight, after.head.weight)
    report = json.loads(result.report_path.read_text())
    assert report["held_out"] == ["synthetic-21"] and report["freeze_encoder"]
    for part in ("before", "after"):
        assert report[part]["classes"] == ["background", "cord"]
        assert 0 <= report[part]["pooled"]["pixel_accuracy"] <= 1


def test_empty_training_set_is_refused():
    with pytest.raises(CordmapError, match="training set is empty"):
        gather_cases([], phantoms=0)


def test_cli_evaluate_and_segment(trained, tmp_path):
    model_path = trained[2].model_path
    case_dir = _case(tmp_path, "case", synthetic_case(13))
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(case_dir),
            "--model",
            str(model_path),
            "--out",
            str(tmp_path / "report.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert [c["case"] for c in report["cases"]] == ["case"]
    assert "pooled" in result.output
    assert runner.invoke(app, ["segment", str(case_dir), "--model", str(model_path)]).exit_code == 0
    stored = runner.invoke(app, ["evaluate", str(case_dir)])
    assert stored.exit_code == 0, stored.output
    missing = runner.invoke(app, ["segment", str(case_dir), "--model", str(tmp_path / "no.pt")])
    assert missing.exit_code == 1 and "does not exist" in missing.output
    largest = runner.invoke(
        app, ["segment", str(case_dir), "--model", str(model_path), "--keep-largest", "cord"]
    )
    assert largest.exit_code == 0, largest.output
    cord = Case.open(case_dir).labels("unet").array == SCHEMA.find("cord").id
    assert ndimage.label(cord, structure=np.ones((3, 3, 3)))[1] <= 1
    assert Case.open(case_dir).manifest["stages"]["segment"]["parameters"]["keep_largest"] == [
        "cord"
    ]
    unknown = runner.invoke(
        app, ["segment", str(case_dir), "--model", str(model_path), "--keep-largest", "spleen"]
    )
    assert unknown.exit_code == 1 and "does not have" in unknown.output


def test_cli_train_on_case_folders_and_refuse_an_empty_set(tmp_path):
    cases = [str(_case(tmp_path, f"case{s}", synthetic_case(30 + s))) for s in range(2)]
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "train",
            *cases,
            "--out",
            str(tmp_path / "run"),
            "--epochs",
            "1",
            "--patches",
            "2",
            "--patch",
            "16,16,16",
            "--no-progress",
            "--classes",
            "cord",
            "--accelerator",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "model.pt").is_file() and "best validation loss" in result.output
    empty = runner.invoke(app, ["train", "--out", str(tmp_path / "empty")])
    assert empty.exit_code == 1 and "training set is empty" in empty.output
    assert not (tmp_path / "empty").exists()
    bad = runner.invoke(app, ["train", *cases, "--out", str(tmp_path / "bad"), "--patch", "16,16"])
    assert bad.exit_code == 1 and "--patch '16,16' must be three" in bad.output


def test_bad_training_input_leaves_no_run_folder(tmp_path):
    name, image, labels = synthetic_case(40)
    array = image.array.copy()
    array[3, 4, 5] = np.nan
    cases = [(name, Volume(array, image.affine), labels), synthetic_case(41)]
    with pytest.raises(CordmapError, match="synthetic-40 has NaN or infinite intensities"):
        train(cases, tmp_path / "run", SCHEMA, TrainConfig(epochs=1, val_fraction=0.5, **TINY))
    assert not (tmp_path / "run").exists()
    with pytest.raises(CordmapError, match=r"unknown augmentations \['blur'\]"):
        train(
            [synthetic_case(41)],
            tmp_path / "run",
            SCHEMA,
            TrainConfig(epochs=1, extra_augmentation=("blur",), **TINY),
        )
    assert not (tmp_path / "run").exists()


def test_cli_finetune_reports_held_out_cases(trained, tmp_path):
    cases = [str(_case(tmp_path, f"case{s}", synthetic_case(50 + s))) for s in range(2)]
    result = CliRunner().invoke(
        app,
        [
            "finetune",
            str(trained[2].model_path),
            cases[0],
            "--heldout",
            cases[1],
            "--out",
            str(tmp_path / "ft"),
            "--epochs",
            "1",
            "--patches",
            "2",
            "--freeze-encoder",
            "--annotated",
            "cord",
            "--no-progress",
            "--accelerator",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "held-out cases before fine-tuning" in result.output
    report = json.loads((tmp_path / "ft" / "finetune.json").read_text())
    assert report["trained_on"] == ["case0"] and report["held_out"] == ["case1"]
    bad = CliRunner().invoke(
        app,
        [
            "finetune",
            str(trained[2].model_path),
            cases[0],
            "--out",
            str(tmp_path / "ft2"),
            "--annotated",
            "nerve",
        ],
    )
    assert bad.exit_code == 1 and "--annotated names unknown classes ['nerve']" in bad.output
    assert not (tmp_path / "ft2").exists()


def test_the_last_checkpoint_is_saved_every_epoch_even_without_a_new_best(tmp_path):
    """With lr 0 the validation loss never improves after the first epoch; resuming must
    still start after the last epoch run, not after the best one."""
    cases = [synthetic_case(s) for s in range(3)]
    train(cases, tmp_path / "run", SCHEMA, TrainConfig(epochs=3, classes="cord", lr=0.0, **TINY))
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", weights_only=False)
    assert last["epoch"] == 2 and best["epoch"] == 0  # 0-based: the third epoch, the first
