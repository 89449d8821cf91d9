"""Agreement between two labellings: kappa against scikit-learn, surface distances by hand."""

import json
import warnings

import numpy as np
import pytest
from scipy.spatial import cKDTree
from sklearn.metrics import cohen_kappa_score
from typer.testing import CliRunner

from cordmap.cli import app
from cordmap.errors import CordmapError
from cordmap.io.nifti import read_nifti, write_nifti
from cordmap.protocol.schema import LabelSchema
from cordmap.study.agreement import agree_files, compare_labels
from cordmap.surface import surface_distances
from cordmap.volume import LabelVolume

SCHEMA = LabelSchema.load()
SPACING = (0.8, 0.8, 2.5)
AFFINE = np.diag([*SPACING, 1.0])


def synthetic_labelling() -> np.ndarray:
    """A lumbosacral-like labelling: cord segments T12..S2 along k inside CSF, with vertebrae."""
    shape = (40, 40, 60)
    i, j, k = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    r = np.hypot((i - 20) * SPACING[0], (j - 18) * SPACING[1])
    labels = np.zeros(shape, np.uint16)
    labels[(r < 7.0) & (k >= 4) & (k < 56)] = SCHEMA.find("csf").id
    cord = (r < 4.0) & (k >= 6) & (k < 54)
    for n, level in enumerate(("T12", "L1", "L2", "L3", "L4", "L5", "S1", "S2")):
        labels[cord & (k >= 6 + 6 * n) & (k < 12 + 6 * n)] = SCHEMA.find("segment", level).id
    body = np.hypot((i - 20) * SPACING[0], (j - 32) * SPACING[1]) < 5.0
    for n, level in enumerate(("T11", "T12", "L1", "L2", "L3")):
        labels[body & (k >= 2 + 12 * n) & (k < 12 + 12 * n)] = SCHEMA.find("vertebra", level).id
    return labels


def perturbed(labels: np.ndarray, seed: int, fraction: float = 0.3) -> np.ndarray:
    """A second rater: a random share of boundary voxels take a face-neighbour's label."""
    rng = np.random.default_rng(seed)
    out = labels.copy()
    for axis in range(3):
        for step in (-1, 1):
            neighbour = np.roll(labels, step, axis=axis)
            boundary = np.argwhere(neighbour != labels)
            chosen = boundary[rng.random(len(boundary)) < fraction / 6]
            out[tuple(chosen.T)] = neighbour[tuple(chosen.T)]
    return out


def volume(array: np.ndarray, spacing=SPACING) -> LabelVolume:
    return LabelVolume(array, np.diag([*spacing, 1.0]), schema=SCHEMA)


def test_kappa_matches_scikit_learn_on_two_perturbed_raters():
    truth = synthetic_labelling()
    a, b = perturbed(truth, seed=1), perturbed(truth, seed=2)
    result = compare_labels(volume(a), volume(b))
    assert result.kappa == pytest.approx(cohen_kappa_score(a.ravel(), b.ravel()), abs=1e-9)
    assert 0.6 < result.kappa < 1.0
    assert {label.id for label in result.labels} == set(np.unique(truth)) - {0}
    for label in result.labels:
        in_a, in_b = a == label.id, b == label.id
        assert label.kappa == pytest.approx(cohen_kappa_score(in_a.ravel(), in_b.ravel()), abs=1e-9)
        both = np.sum(in_a & in_b)
        assert label.dice == pytest.approx(2 * both / (in_a.sum() + in_b.sum()))
        assert label.iou == pytest.approx(both / np.sum(in_a | in_b))
        assert label.name == SCHEMA[label.id].name
    classes = {s.structure for s in result.structures}
    assert classes == {"segment", "csf", "vertebra"}
    for structure in result.structures:
        ids = [label.id for label in SCHEMA.of_class(structure.structure)]
        in_a, in_b = np.isin(a, ids), np.isin(b, ids)
        assert structure.kappa == pytest.approx(
            cohen_kappa_score(in_a.ravel(), in_b.ravel()), abs=1e-9
        )
        assert structure.dice == pytest.approx(2 * np.sum(in_a & in_b) / (in_a.sum() + in_b.sum()))


def test_identical_labellings_agree_perfectly():
    truth = synthetic_labelling()
    result = compare_labels(volume(truth), volume(truth.copy()))
    assert result.kappa == 1.0
    assert all(label.dice == 1.0 and label.hd95_mm == 0.0 for label in result.labels)
    assert result.worst_slices == []


def test_surface_distances_of_two_points_follow_the_spacing():
    a = np.zeros((12, 12, 20), bool)
    b = np.zeros_like(a)
    a[5, 5, 5] = True
    b[5, 5, 9] = True
    a_to_b, b_to_a = surface_distances(a, b, (1.0, 1.0, 2.5))
    assert a_to_b.tolist() == [10.0] and b_to_a.tolist() == [10.0]


def test_surface_distances_of_parallel_plates():
    """Two one-voxel plates 3 slices apart at 2 mm slices: every point is 6 mm from the other."""
    a = np.zeros((10, 10, 12), np.uint16)
    b = np.zeros_like(a)
    a[2:8, 2:8, 4] = 1
    b[2:8, 2:8, 7] = 1
    result = compare_labels(volume(a, (0.5, 0.5, 2.0)), volume(b, (0.5, 0.5, 2.0)))
    (cord,) = result.labels
    assert cord.mean_surface_mm == pytest.approx(6.0)
    assert cord.hd95_mm == pytest.approx(6.0)
    assert cord.dice == 0.0


def test_hd95_is_the_larger_directed_percentile():
    """A: one voxel; B: voxels 3 and 7 voxels away. A->B = [3], B->A = [3, 7]."""
    a = np.zeros((5, 5, 20), np.uint16)
    b = np.zeros_like(a)
    a[2, 2, 10] = 1
    b[2, 2, 13] = b[2, 2, 3] = 1
    (cord,) = compare_labels(volume(a, (1, 1, 1)), volume(b, (1, 1, 1))).labels
    assert cord.mean_surface_mm == pytest.approx((3 + 3 + 7) / 3)
    assert cord.hd95_mm == pytest.approx(3 + 0.95 * (7 - 3))  # numpy's linear percentile


def test_surface_distances_match_brute_force_on_shifted_cubes():
    spacing = (0.7, 1.1, 3.0)
    a = np.zeros((30, 30, 16), bool)
    a[5:20, 6:18, 3:10] = True
    b = np.roll(np.roll(a, 3, axis=0), 2, axis=2)
    a_to_b, b_to_a = surface_distances(a, b, spacing)

    def surface_points(mask):
        padded = np.pad(mask, 1)
        inner = padded[1:-1, 1:-1, 1:-1]
        for axis in range(3):
            inner = (
                inner
                & np.roll(padded, 1, axis)[1:-1, 1:-1, 1:-1]
                & np.roll(padded, -1, axis)[1:-1, 1:-1, 1:-1]
            )
        return np.argwhere(mask & ~inner) * spacing

    pa, pb = surface_points(a), surface_points(b)
    np.testing.assert_allclose(np.sort(a_to_b), np.sort(cKDTree(pb).query(pa)[0]), atol=1e-9)
    np.testing.assert_allclose(np.sort(b_to_a), np.sort(cKDTree(pa).query(pb)[0]), atol=1e-9)


def test_worst_slices_point_at_the_shifted_boundary():
    truth = synthetic_labelling()
    other = truth.copy()
    l1, l2 = SCHEMA.find("segment", "L1").id, SCHEMA.find("segment", "L2").id
    other[(truth == l2) & (np.arange(60) == 18)[None, None, :]] = l1  # L1 reaches one slice into L2
    result = compare_labels(volume(truth), volume(other), worst=3)
    (slice_,) = result.worst_slices
    assert slice_.k == 18
    assert slice_.s_mm == pytest.approx(18 * SPACING[2])
    assert (slice_.confused_a, slice_.confused_b) == (SCHEMA[l2].name, SCHEMA[l1].name)
    assert slice_.differing_voxels == np.sum(truth[:, :, 18] == l2)
    (segments,) = [s for s in result.structures if s.structure == "segment"]
    assert segments.dice == 1.0 and segments.kappa == 1.0  # the cord as a whole agrees


def test_peer_segmentation_of_real_subject(data_dir):
    """The Spinal Cord Toolbox's automatic cord mask agrees with the expert's at Dice 0.981."""
    folder = data_dir / "sct-t2"
    result = agree_files(folder / "t2_seg-manual.nii.gz", folder / "t2_seg-deepseg_sc-3d.nii.gz")
    (cord,) = result.labels
    assert cord.dice == pytest.approx(0.981, abs=5e-4)
    assert cord.mean_surface_mm < 1.0
    # HD95 as MONAI's reference implementation computes it on the same masks
    monai_metrics = pytest.importorskip("monai.metrics")
    torch = pytest.importorskip("torch")
    grid = read_nifti(folder / "t2_seg-manual.nii.gz")

    def one_hot(path):
        mask = np.asarray(read_nifti(path).array) > 0.5
        return torch.from_numpy(np.stack([~mask, mask])[None].astype(np.float32))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        reference = monai_metrics.compute_hausdorff_distance(
            one_hot(folder / "t2_seg-deepseg_sc-3d.nii.gz"),
            one_hot(folder / "t2_seg-manual.nii.gz"),
            percentile=95,
            spacing=list(grid.spacing),
        )
    assert cord.hd95_mm == pytest.approx(float(reference), abs=1e-6)


def test_files_on_different_grids_are_refused(tmp_path):
    truth = synthetic_labelling()
    write_nifti(volume(truth), tmp_path / "a.nii.gz")
    write_nifti(volume(truth[:, :, :50]), tmp_path / "b.nii.gz")
    with pytest.raises(CordmapError, match="b.nii.gz.*not on the grid"):
        agree_files(tmp_path / "a.nii.gz", tmp_path / "b.nii.gz")


def test_agree_command_prints_and_writes_json(tmp_path):
    truth = synthetic_labelling()
    write_nifti(volume(truth), tmp_path / "a.nii.gz")
    write_nifti(volume(perturbed(truth, seed=3)), tmp_path / "b.nii.gz")
    out = tmp_path / "agreement.json"
    result = CliRunner().invoke(
        app,
        ["agree", str(tmp_path / "a.nii.gz"), str(tmp_path / "b.nii.gz"), "--json", str(out)],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "kappa" in result.output and "cord segment L1" in result.output
    assert "vertebra" in result.output.split("per structure")[1]
    saved = json.loads(out.read_text())
    assert saved["kappa"] == pytest.approx(
        agree_files(tmp_path / "a.nii.gz", tmp_path / "b.nii.gz").kappa
    )
