"""DICOM series: listing, reading (slice order, spacing, LPS -> RAS, refusals) and writing."""

import hashlib
import random
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from cordmap.errors import CordmapError
from cordmap.io.dicom import (
    list_series,
    read_dicom,
    read_dicom_with_info,
    write_dicom_series,
)
from cordmap.io.nifti import read_nifti
from cordmap.volume import Volume

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def _volume(dtype=np.uint16, low=0, high=4000, shape=(24, 30, 9), rotation_deg=0.0):
    """A random volume of 0.8 x 0.8 x 3 mm voxels, offset from the origin, maybe rotated."""
    rng = np.random.default_rng(7)
    array = rng.integers(low, high, shape).astype(dtype)
    affine = np.diag([0.8, 0.8, 3.0, 1.0])
    affine[:3, 3] = [-12.3, 40.15, -101.7]
    t = np.radians(rotation_deg)
    rotation = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    affine[:3, :3] = rotation @ affine[:3, :3]
    return Volume(array, affine)


def _hand_slice(
    path,
    pixels,
    *,
    position,
    orientation=AXIAL,
    spacing=(1.0, 1.0),
    series_uid="1.2.3.4",
    number=1,
    description="hand made",
    **extra,
):
    """Write one minimal DICOM image the way a scanner would (independent of cordmap)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = uid = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, uid
    ds.Modality = "MR"
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, number, description
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = list(orientation)
    ds.PixelSpacing = list(spacing)
    ds.SliceThickness = 2.0
    pixels = np.asarray(pixels, dtype=np.uint16)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.astype("<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _hand_series(
    folder, n=5, step=2.0, shape=(6, 8), start=(-10.0, -20.0, 30.0), drift=(0.0, 0.0), **kwargs
):
    """n axial slices `step` mm apart, each slice s filled with the value 10 * (s + 1)."""
    for s in range(n):
        position = (start[0] + drift[0] * s, start[1] + drift[1] * s, start[2] + step * s)
        _hand_slice(folder / f"slice{s}", np.full(shape, 10 * (s + 1)), position=position, **kwargs)


def _digest(folder):
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize(
    "dtype, low, high, rotation",
    [
        (np.uint16, 0, 4000, 0.0),
        (np.int16, -1200, 900, 0.0),  # negative values: stored with an intercept
        (np.uint16, 0, 4000, 20.0),  # an oblique (rotated) grid
    ],
)
def test_axial_round_trip_reproduces_voxels_and_affine(tmp_path, dtype, low, high, rotation):
    volume = _volume(dtype, low, high, rotation_deg=rotation)
    out = write_dicom_series(volume, tmp_path / "dicom" / "axial", series_description="T2 ax")
    assert len(list(out.glob("*.dcm"))) == volume.shape[2]
    back, info = read_dicom_with_info(tmp_path / "dicom")
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-4)
    assert back.array.dtype == (np.uint16 if low >= 0 else np.float32)
    assert info.orientation == ("axial" if rotation == 0 else "oblique")
    assert (info.rows, info.cols) == (volume.shape[1], volume.shape[0])
    assert info.pixel_spacing == pytest.approx((0.8, 0.8))
    assert info.slice_spacing == pytest.approx(3.0)


@pytest.mark.parametrize(
    "slice_axis, plane, orientation",
    [
        (0, "sagittal", SAGITTAL),
        (1, "coronal", (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)),
    ],
)
def test_sagittal_and_coronal_series_round_trip(tmp_path, slice_axis, plane, orientation):
    volume = _volume()
    write_dicom_series(volume, tmp_path / "sag", series_description="T2", slice_axis=slice_axis)
    (info,) = list_series(tmp_path / "sag")
    assert info.orientation == plane
    assert info.n_files == volume.shape[slice_axis]
    assert info.slice_spacing == pytest.approx(0.8)
    header = pydicom.dcmread(info.files[0], stop_before_pixels=True)
    np.testing.assert_allclose([float(v) for v in header.ImageOrientationPatient], orientation)
    back = read_dicom(tmp_path / "sag")
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-4)


def _assert_nibabel_agrees(volume, files):
    """An independent DICOM reader (nibabel's) finds each file's pixels where `volume` has them."""
    from nibabel.affines import apply_affine
    from nibabel.nicom.dicomwrappers import wrapper_from_file

    for path in files:
        wrapper = wrapper_from_file(path)
        pixels = wrapper.get_data()  # rescaled by nibabel itself
        index = np.indices(pixels.shape).reshape(2, -1).T
        lps = apply_affine(wrapper.affine, np.c_[index, np.zeros(len(index))])
        ijk = volume.voxel(lps * [-1, -1, 1])
        np.testing.assert_allclose(ijk, np.rint(ijk), atol=1e-4)
        ijk = np.rint(ijk).astype(int)
        np.testing.assert_array_equal(volume.array[tuple(ijk.T)], pixels.reshape(-1))


@pytest.mark.filterwarnings("ignore:The DICOM readers are highly experimental")
@pytest.mark.parametrize("slice_axis", [2, 1, 0])
def test_nibabel_places_written_pixels_at_the_volume_world_positions(tmp_path, slice_axis):
    volume = _volume(rotation_deg=20.0)
    folder = write_dicom_series(
        volume, tmp_path / "s", series_description="x", slice_axis=slice_axis
    )
    files = sorted(folder.glob("*.dcm"))
    assert len(files) == volume.shape[slice_axis]
    _assert_nibabel_agrees(volume, files[::4])


@pytest.mark.filterwarnings("ignore:The DICOM readers are highly experimental")
def test_real_scanner_export_with_dicomdir(tmp_path):
    """pydicom's anonymized multi-patient export (CT, MR, CR, DICOMDIR, no file suffixes)."""
    export = Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests"
    before = _digest(export)
    images = {}  # files with pixel data, by series (DICOMDIRs, readme, pixel-less files left out)
    for path in export.rglob("*"):
        dataset = pydicom.dcmread(path, force=True) if path.is_file() else {}
        if "PixelData" in dataset:
            images.setdefault(dataset.SeriesInstanceUID, set()).add(path)
    infos = list_series(export)
    assert {i.uid: set(i.files) for i in infos} == images
    by_description = {i.description: i for i in infos}
    ct = by_description["SmartScore - Gated 0.5 sec"]
    volume, info = read_dicom_with_info(export, series=ct.uid)
    assert info is not ct and info == ct
    assert volume.shape == (16, 16, 5) and volume.spacing == pytest.approx(
        (0.488281, 0.488281, 2.5)
    )
    assert volume.array.dtype == np.float32  # CT: RescaleIntercept -1024
    _assert_nibabel_agrees(volume, ct.files)
    with pytest.raises(CordmapError, match="Routine Brain.* is missing 161 slices"):
        read_dicom(export, series=by_description["Routine Brain"].uid)
    pilot = next(i for i in infos if i.description == "T/S/C RF FAST PILOT")
    assert pilot.orientation == "mixed"
    with pytest.raises(CordmapError, match="mixes image orientations"):
        read_dicom(export, series=pilot.uid)
    with pytest.raises(CordmapError, match="no ImagePositionPatient"):
        read_dicom(export, series="Cervical LAT")
    assert _digest(export) == before


def test_float_volume_is_quantized_within_the_documented_bound(tmp_path):
    rng = np.random.default_rng(3)
    array = rng.normal(100.0, 30.0, (10, 12, 4)).astype(np.float32)
    volume = Volume(array, np.diag([1.0, 1.0, 2.0, 1.0]))
    write_dicom_series(volume, tmp_path / "f", series_description="float")
    back = read_dicom(tmp_path / "f")
    bound = (float(array.max()) - float(array.min())) / 131070  # half a quantization step
    float32_rounding = np.abs(array).max() * 2.0**-24
    error = np.abs(back.array.astype(np.float64) - array)
    assert error.max() <= bound + float32_rounding
    assert error.max() > 0  # it really is quantized, not stored as float


def test_shuffled_file_names_still_sort_by_position(tmp_path):
    volume = _volume()
    folder = write_dicom_series(volume, tmp_path / "ax", series_description="T2")
    files = sorted(folder.glob("*.dcm"))
    names = [f"img{n:03d}" for n in range(len(files))]  # no .dcm suffix
    random.Random(1).shuffle(names)
    for file, name in zip(files, names):
        file.rename(folder / name)
    by_name = [
        int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber)
        for p in sorted(folder.iterdir())
    ]
    assert by_name != sorted(by_name)  # file name order is not slice order
    back = read_dicom(folder)
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-4)


def test_lps_positions_become_ras_world_coordinates(tmp_path):
    # slices at LPS z = 30, 32, 34: first pixel of each at LPS (-100, -120, z), rows 0.5 mm
    # apart, columns 0.8 mm apart; one bright pixel at row 3, column 5 of slice 2
    for s in range(3):
        pixels = np.zeros((10, 12))
        if s == 2:
            pixels[3, 5] = 1000
        _hand_slice(
            tmp_path / f"s{s}.dcm", pixels, position=(-100, -120, 30 + 2 * s), spacing=(0.5, 0.8)
        )
    volume = read_dicom(tmp_path)
    bright = np.argwhere(volume.array == 1000)
    assert len(bright) == 1
    # LPS = (-100 + 5 * 0.8, -120 + 3 * 0.5, 30 + 2 * 2) = (-96, -118.5, 34) -> RAS flips x, y
    np.testing.assert_allclose(volume.world(bright[0]), [96.0, 118.5, 34.0], atol=1e-6)
    assert volume.spacing == pytest.approx((0.8, 0.5, 2.0))
    assert volume.shape == (12, 10, 3)


def test_single_slice_takes_its_slice_thickness(tmp_path):
    _hand_slice(tmp_path / "only.dcm", np.arange(48).reshape(6, 8), position=(0, 0, 5))
    volume = read_dicom(tmp_path)
    assert volume.shape == (8, 6, 1)
    assert volume.spacing == pytest.approx((1.0, 1.0, 2.0))  # SliceThickness 2 mm


def test_rescale_slope_and_intercept_are_applied(tmp_path):
    _hand_series(tmp_path, n=3, RescaleSlope="2.5", RescaleIntercept="-100")
    volume = read_dicom(tmp_path)
    assert volume.array.dtype == np.float32
    # slice s holds 10 * (s + 1) on disk: values 2.5 * 10 * (s + 1) - 100 along S
    for k in range(3):
        np.testing.assert_array_equal(volume.array[:, :, k], 2.5 * 10 * (k + 1) - 100)


def test_written_files_are_reproducible_from_a_seed_and_share_a_study(tmp_path):
    volume = _volume()
    study = generate_uid()
    a = write_dicom_series(
        volume,
        tmp_path / "a" / "axial",
        series_description="ax",
        uid_seed="phantom",
        study_uid=study,
    )
    b = write_dicom_series(
        volume,
        tmp_path / "b" / "axial",
        series_description="ax",
        uid_seed="phantom",
        study_uid=study,
    )
    assert _digest(a) == _digest(b)
    sag = write_dicom_series(
        volume,
        tmp_path / "a" / "sagittal",
        series_description="sag",
        series_number=2,
        slice_axis=0,
        study_uid=study,
    )
    headers = [pydicom.dcmread(next(d.glob("*.dcm")), stop_before_pixels=True) for d in (a, sag)]
    assert headers[0].StudyInstanceUID == headers[1].StudyInstanceUID == study
    assert headers[0].FrameOfReferenceUID == headers[1].FrameOfReferenceUID
    assert headers[0].SeriesInstanceUID != headers[1].SeriesInstanceUID


def test_real_image_round_trips_through_axial_and_sagittal_series(data_dir, tmp_path):
    image = read_nifti(data_dir / "sct-t2" / "t2.nii.gz")
    for axis, name in ((2, "axial"), (0, "sagittal")):
        write_dicom_series(image, tmp_path / name, series_description=f"t2 {name}", slice_axis=axis)
        back = read_dicom(tmp_path / name)
        np.testing.assert_array_equal(back.array, image.array)
        np.testing.assert_allclose(back.affine, image.affine, atol=1e-4)


# ------------------------------------------------------------------ series choice


def test_two_series_need_a_choice_by_number_description_or_uid(tmp_path):
    volume = _volume()
    write_dicom_series(volume, tmp_path / "ax", series_description="T2 axial", series_number=3)
    write_dicom_series(
        volume, tmp_path / "sag", series_description="T2 sagittal", series_number=4, slice_axis=0
    )
    with pytest.raises(CordmapError) as error:
        read_dicom(tmp_path)
    message = str(error.value)
    assert "T2 axial" in message and "T2 sagittal" in message
    assert "pass `series` NUMBER" in message
    infos = list_series(tmp_path)
    assert [(i.number, i.orientation) for i in infos] == [(3, "axial"), (4, "sagittal")]
    assert read_dicom(tmp_path, series="4").array.shape == volume.shape
    _, by_description = read_dicom_with_info(tmp_path, series="SAGITTAL")
    assert by_description.number == 4
    _, by_uid = read_dicom_with_info(tmp_path, series=infos[0].uid)
    assert by_uid.description == "T2 axial"
    with pytest.raises(CordmapError, match="matches 2 series"):
        read_dicom(tmp_path, series="t2")
    with pytest.raises(CordmapError, match="no series .* matches 'flair'"):
        read_dicom(tmp_path, series="flair")


def test_non_dicom_files_and_dicomdir_are_skipped(tmp_path):
    _hand_series(tmp_path / "export" / "S1", n=3)
    (tmp_path / "export" / "readme.txt").write_text("exported by PACS\n")
    (tmp_path / "export" / "notes").write_bytes(b"\x08\x00 not really dicom" * 10)
    directory = Dataset()
    directory.file_meta = FileMetaDataset()
    directory.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    directory.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    directory.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    directory.FileSetID = "EXPORT"
    directory.save_as(tmp_path / "export" / "DICOMDIR", enforce_file_format=True)
    (info,) = list_series(tmp_path / "export")
    assert info.n_files == 3 and info.description == "hand made"


def test_folder_without_dicom_files_is_refused(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here\n")
    (tmp_path / "scan.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(CordmapError, match="no DICOM files in .*a .nii/.nii.gz file"):
        list_series(tmp_path)
    with pytest.raises(CordmapError, match="no DICOM files"):
        read_dicom(tmp_path)


# ------------------------------------------------------------------ refusals


def test_missing_slice_is_refused_naming_the_gap(tmp_path):
    volume = _volume()
    folder = write_dicom_series(volume, tmp_path / "ax", series_description="T2 axial")
    (folder / "IM0005.dcm").unlink()
    missing_z = volume.world([0, 0, 4])[2]  # axial: position along the normal is S
    with pytest.raises(CordmapError) as error:
        read_dicom(folder)
    message = str(error.value)
    assert "missing 1 slice" in message and f"{missing_z:.2f} mm" in message
    assert "IM0004.dcm and IM0006.dcm" in message and "T2 axial" in message


def test_unequal_spacing_is_refused(tmp_path):
    for s, z in enumerate([0.0, 3.0, 6.0, 10.5]):
        _hand_slice(tmp_path / f"s{s}", np.zeros((4, 4)), position=(0, 0, z))
    with pytest.raises(CordmapError, match="unequal slice spacing .*3, 4.5 mm"):
        read_dicom(tmp_path)


def test_gantry_tilt_is_refused(tmp_path):
    _hand_series(tmp_path, n=5, step=2.0, drift=(0.0, 0.35))  # ~10 degrees
    with pytest.raises(CordmapError, match="gantry tilt of about 9.9 degrees"):
        read_dicom(tmp_path)


def test_duplicate_positions_are_refused(tmp_path):
    _hand_series(tmp_path / "a", n=3)
    _hand_series(tmp_path / "b", n=3)  # same series UID, same positions: a second echo
    with pytest.raises(CordmapError, match="same position .*more than one volume"):
        read_dicom(tmp_path)


def test_mixed_image_sizes_are_refused(tmp_path):
    _hand_series(tmp_path, n=4)
    _hand_slice(tmp_path / "bigger", np.zeros((12, 16)), position=(-10, -20, 38))
    with pytest.raises(CordmapError, match="mixes image sizes \\(12x16 and 6x8\\)"):
        read_dicom(tmp_path)


def test_mixed_pixel_spacings_are_refused(tmp_path):
    _hand_series(tmp_path, n=4)
    _hand_slice(tmp_path / "finer", np.zeros((6, 8)), position=(-10, -20, 38), spacing=(0.5, 0.5))
    with pytest.raises(CordmapError, match="mixes pixel spacings"):
        read_dicom(tmp_path)


def test_mixed_orientations_are_refused(tmp_path):
    _hand_series(tmp_path, n=3)
    _hand_slice(tmp_path / "sag", np.zeros((6, 8)), position=(0, 0, 0), orientation=SAGITTAL)
    assert list_series(tmp_path)[0].orientation == "mixed"
    with pytest.raises(CordmapError, match="mixes image orientations \\(axial and sagittal"):
        read_dicom(tmp_path)


def test_multi_frame_files_are_refused(tmp_path):
    _hand_slice(tmp_path / "enhanced.dcm", np.zeros((4, 4)), position=(0, 0, 0), NumberOfFrames=1)
    header = pydicom.dcmread(tmp_path / "enhanced.dcm")
    header.NumberOfFrames = 2
    header.PixelData = bytes(4 * 4 * 2 * 2)
    header.save_as(tmp_path / "enhanced.dcm")
    with pytest.raises(CordmapError, match="multi-frame .*enhanced.dcm holds 2 frames"):
        read_dicom(tmp_path)


def test_reading_never_modifies_the_input_files(tmp_path):
    write_dicom_series(_volume(), tmp_path / "ax", series_description="T2")
    _hand_series(tmp_path / "other", n=3, series_uid="9.8.7", number=9)
    before = _digest(tmp_path)
    list_series(tmp_path)
    read_dicom(tmp_path, series="1")
    read_dicom(tmp_path, series="9")
    assert _digest(tmp_path) == before


# ------------------------------------------------------------------ writing safety


def test_failed_write_leaves_no_folder_behind(tmp_path, monkeypatch):
    calls = []
    original = Dataset.save_as

    def failing_save_as(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Dataset, "save_as", failing_save_as)
    with pytest.raises(OSError, match="disk full"):
        write_dicom_series(_volume(), tmp_path / "dicom" / "axial", series_description="T2")
    assert len(calls) == 3
    assert list((tmp_path / "dicom").iterdir()) == []


def test_writing_refuses_to_replace_a_folder_holding_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me\n")
    with pytest.raises(CordmapError, match="already holds other files .*notes.txt"):
        write_dicom_series(_volume(), tmp_path, series_description="T2")
    assert (tmp_path / "notes.txt").read_text() == "keep me\n"


def test_rewriting_a_series_replaces_it(tmp_path):
    folder = write_dicom_series(_volume(shape=(8, 8, 6)), tmp_path / "ax", series_description="a")
    write_dicom_series(_volume(shape=(8, 8, 4)), folder, series_description="b")
    (info,) = list_series(folder)
    assert (info.n_files, info.description) == (4, "b")


def test_non_finite_values_are_refused(tmp_path):
    array = np.ones((4, 4, 3), dtype=np.float32)
    array[1, 1, 1] = np.nan
    with pytest.raises(CordmapError, match="NaN"):
        write_dicom_series(Volume(array, np.eye(4)), tmp_path / "x", series_description="nan")
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------ command line


def test_series_command_lists_the_series_of_a_folder(tmp_path):
    from typer.testing import CliRunner

    from cordmap.cli import app

    write_dicom_series(_volume(), tmp_path / "ax", series_description="T2 axial", series_number=3)
    write_dicom_series(
        _volume(), tmp_path / "sag", series_description="T2 sagittal", series_number=4, slice_axis=0
    )
    result = CliRunner().invoke(app, ["series", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "T2 axial" in result.output and "T2 sagittal" in result.output
    assert "9 x 30" in result.output  # sagittal images: rows (S) x columns (A)
    for info in list_series(tmp_path):
        assert info.uid in result.output
    failed = CliRunner().invoke(app, ["series", str(tmp_path / "ax" / "IM0001.dcm")])
    assert failed.exit_code == 1 and "is a file, not a folder" in failed.output


@pytest.mark.parametrize("end", ["first", "last"])
@pytest.mark.parametrize("keep", [0, 100, 400, 0.5])
def test_a_damaged_file_at_either_end_of_a_series_is_refused(tmp_path, end, keep):
    """Emptied or truncated at the first or last slice: an error naming the file, never a
    series one slice short; `cordmap series` lists the file as unreadable."""
    from typer.testing import CliRunner

    from cordmap.cli import app
    from cordmap.io.dicom import scan_series

    write_dicom_series(_volume(), tmp_path / "ax", series_description="T2")
    files = sorted(
        (tmp_path / "ax").iterdir(), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2])
    )
    victim = files[0 if end == "first" else -1]
    data = victim.read_bytes()
    victim.write_bytes(data[: int(keep * len(data)) if isinstance(keep, float) else keep])
    with pytest.raises(
        CordmapError, match=f"(cannot be read|cannot decode the pixels of) .*{victim.name}"
    ):
        read_dicom(tmp_path / "ax")
    infos, unreadable = scan_series(tmp_path / "ax")
    if keep != 0.5:  # a file cut in its pixels keeps a readable header
        assert unreadable == [victim]
    result = CliRunner().invoke(app, ["series", str(tmp_path / "ax")])
    assert result.exit_code == 0
    assert keep == 0.5 or "unreadable" in result.output
