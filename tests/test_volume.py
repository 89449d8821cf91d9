import nibabel as nib
import numpy as np
import pytest

from cordmap.errors import CordmapError
from cordmap.io.nifti import read_labels, read_nifti, write_nifti
from cordmap.protocol.schema import LabelSchema
from cordmap.volume import LabelVolume, Volume


def _centre_of_mass(mask):
    return np.array(np.nonzero(mask)).mean(axis=1)


@pytest.mark.parametrize(
    "folder, image, cord",
    [
        ("sct-t2", "t2.nii.gz", "t2_seg-manual.nii.gz"),
        ("pam50-small", "PAM50_small_t2.nii.gz", "PAM50_small_cord.nii.gz"),
        ("pam50", "PAM50_cord.nii.gz", "PAM50_cord.nii.gz"),
    ],
)
def test_real_data_loads_in_ras_with_cord_along_s(data_dir, folder, image, cord):
    img = read_nifti(data_dir / folder / image)
    mask = read_nifti(data_dir / folder / cord).array > 0
    assert img.shape == mask.shape
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    # the cord's longest extent runs along k (superior), whatever the file's axes
    ijk = np.array(np.nonzero(mask))
    extents = ijk.max(axis=1) - ijk.min(axis=1)
    mm = extents * np.array(img.spacing)
    assert np.argmax(mm) == 2
    # world coordinates are preserved by the reorientation
    raw = nib.load(data_dir / folder / cord)
    raw_mask = np.asanyarray(raw.dataobj) > 0
    world_raw = nib.affines.apply_affine(raw.affine, _centre_of_mass(raw_mask))
    world_new = img.world(_centre_of_mass(mask))
    np.testing.assert_allclose(world_raw, world_new, atol=1e-3)


def test_nifti_round_trip_keeps_voxels_and_affine(tmp_path):
    rng = np.random.default_rng(0)
    affine = np.diag([0.8, 0.8, 3.0, 1.0])
    affine[:3, 3] = (-10, 20, -300)
    vol = Volume(rng.integers(0, 4000, (20, 18, 7)).astype(np.uint16), affine)
    out = write_nifti(vol, tmp_path / "x.nii.gz")
    back = read_nifti(out)
    assert back.same_grid(vol)
    np.testing.assert_array_equal(back.array, vol.array)
    assert not list(tmp_path.glob(".*part*"))


def test_lps_file_is_reoriented(tmp_path):
    data = np.zeros((4, 5, 6), np.int16)
    data[0, 0, 0] = 7
    lps = np.diag([-1.0, -1.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(data, lps), tmp_path / "lps.nii")
    vol = read_nifti(tmp_path / "lps.nii")
    assert nib.aff2axcodes(vol.affine) == ("R", "A", "S")
    idx = np.argwhere(vol.array == 7)[0]
    np.testing.assert_allclose(vol.world(idx), [0, 0, 0])


def test_truncated_nifti_gives_clear_error(tmp_path):
    vol = Volume(np.ones((30, 30, 30), np.float32), np.eye(4))
    good = write_nifti(vol, tmp_path / "good.nii.gz")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CordmapError, match="truncated or corrupt"):
        read_nifti(bad)


def test_label_volume_rejects_fractional_ids_and_reports_unknown():
    schema = LabelSchema.load()
    with pytest.raises(CordmapError, match="whole-number"):
        LabelVolume(np.full((2, 2, 2), 1.5), np.eye(4), schema=schema)
    lab = LabelVolume(np.array([[[0, 1], [9999, 2]]] * 2, np.uint16), np.eye(4), schema=schema)
    assert lab.unknown_ids() == [9999]
    with pytest.raises(CordmapError, match=r"\[9999\]"):
        lab.require_known_ids()


def test_read_labels_from_real_data(data_dir):
    lab = read_labels(data_dir / "sct-t2" / "t2_seg-manual.nii.gz", LabelSchema.load())
    assert lab.ids() == [1]
    assert lab.counts()[1] > 1000
