"""Property-based tests of the readers: whatever the damage (random header fields,
truncations, bit flips, deleted DICOM tags, shuffled slice files), a reader returns the
exact data or raises one clean CordmapError; never another exception, never a file
written. Bounded for CI; `HYPOTHESIS_PROFILE=thorough` runs 400 examples each."""

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cordmap.errors import CordmapError
from cordmap.io.dicom import read_dicom, write_dicom_series
from cordmap.io.nifti import read_nifti, write_nifti
from cordmap.pipeline.imports import import_case
from cordmap.volume import Volume

ARRAY = np.random.default_rng(3).integers(0, 3000, (12, 10, 8)).astype(np.float32)
AFFINE = np.diag([0.8, 0.8, 3.0, 1.0])


@pytest.fixture(scope="module")
def nifti_bytes(tmp_path_factory):
    path = write_nifti(Volume(ARRAY, AFFINE), tmp_path_factory.mktemp("n") / "a.nii.gz")
    return path.read_bytes()


def _read_or_refuse(path: Path):
    """The volume, or None for a clean refusal; any other exception fails the test."""
    try:
        return read_nifti(path)
    except CordmapError:
        return None


@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 7)), min_size=1, max_size=4))
def test_nifti_bit_flips_give_the_exact_data_or_a_clean_error(tmp_path, nifti_bytes, flips):
    data = bytearray(nifti_bytes)
    for offset, bit in flips:
        data[offset % len(data)] ^= 1 << bit
    path = tmp_path / "flipped.nii.gz"
    path.write_bytes(bytes(data))
    volume = _read_or_refuse(path)
    if volume is not None:  # a flip the format cannot see (e.g. in gzip's header name field)
        assert np.array_equal(volume.array, ARRAY)


@given(cut=st.integers(0, 10**6))
def test_nifti_truncations_are_refused(tmp_path, nifti_bytes, cut):
    path = tmp_path / "cut.nii.gz"
    path.write_bytes(nifti_bytes[: cut % len(nifti_bytes)])
    assert _read_or_refuse(path) is None


@given(
    dims=st.lists(st.integers(-3, 32767), min_size=3, max_size=3),
    datatype=st.sampled_from([2, 4, 8, 16, 64, 128, 256, 512, 768, 1024, 0, 9999]),
    pixdim=st.lists(
        st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=3, max_size=3
    ),
    srow=st.lists(
        st.one_of(st.floats(-(2.0**43), 2.0**43, width=32), st.just(float("nan"))),
        min_size=12,
        max_size=12,
    ),
    offset=st.integers(0, 4000),
    gz=st.booleans(),
)
def test_random_nifti_headers_give_a_volume_or_a_clean_error(
    tmp_path, dims, datatype, pixdim, srow, offset, gz
):
    raw = nib.Nifti1Header().binaryblock  # a valid header to start from
    view = nib.Nifti1Header(raw, check=False)
    view["dim"][:4] = [3, *dims]
    view["datatype"] = datatype
    view["pixdim"][1:4] = pixdim
    view["srow_x"], view["srow_y"], view["srow_z"] = srow[:4], srow[4:8], srow[8:]
    view["sform_code"] = 1
    view["vox_offset"] = offset
    payload = view.binaryblock + b"\0" * 4 + bytes(range(256)) * 4
    path = tmp_path / ("random.nii.gz" if gz else "random.nii")
    path.write_bytes(gzip.compress(payload) if gz else payload)
    volume = _read_or_refuse(path)
    if volume is not None:
        assert volume.array.ndim == 3


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    folder = tmp_path_factory.mktemp("d") / "series"
    write_dicom_series(Volume(ARRAY.astype(np.uint16), AFFINE), folder, series_description="T2")
    return folder


TAGS = [
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
    "SeriesInstanceUID",
    "SliceThickness",
    "RescaleSlope",
    "RescaleIntercept",
    "PixelData",
    "BitsAllocated",
    "PixelRepresentation",
    "SamplesPerPixel",
    "SOPInstanceUID",
    "InstanceNumber",
    "PhotometricInterpretation",
]


@given(
    deletions=st.lists(st.tuples(st.integers(0, 7), st.sampled_from(TAGS)), min_size=1, max_size=3)
)
def test_deleted_dicom_tags_give_the_exact_data_or_a_clean_error(tmp_path, series, deletions):
    folder = tmp_path / "copy"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(series, folder)
    files = sorted(folder.iterdir())
    for index, tag in deletions:
        dataset = pydicom.dcmread(files[index % len(files)])
        if tag in dataset:
            delattr(dataset, tag)
        dataset.save_as(files[index % len(files)])
    try:
        volume = read_dicom(folder)
    except CordmapError:
        return
    assert np.array_equal(volume.array, ARRAY)


@given(order=st.permutations(list(range(8))))
def test_slice_files_in_any_order_read_the_same(tmp_path, series, order):
    folder = tmp_path / "shuffled"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    files = sorted(series.iterdir())
    for new, old in enumerate(order):
        shutil.copyfile(files[old], folder / f"x{new:02d}")
    assert np.array_equal(read_dicom(folder).array, ARRAY)


@given(cut=st.integers(0, 10**6))
def test_a_refused_import_writes_nothing(tmp_path, nifti_bytes, cut):
    path = tmp_path / "cut.nii.gz"
    path.write_bytes(nifti_bytes[: cut % len(nifti_bytes)])
    case = tmp_path / "case"
    shutil.rmtree(case, ignore_errors=True)
    with pytest.raises(CordmapError):
        import_case(path, case)
    assert not case.exists() and not list(tmp_path.glob(".case*"))
