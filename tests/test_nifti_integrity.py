"""Compressed NIfTI files are read to their end: a flipped bit, a missing gzip trailer or a
header declaring more data than the file can hold is an error naming the file, before any
large allocation."""

import gzip

import nibabel as nib
import numpy as np
import pytest

from cordmap.errors import CordmapError
from cordmap.io.nifti import read_labels, read_nifti, write_nifti
from cordmap.protocol.schema import LabelSchema
from cordmap.volume import LabelVolume, Volume


@pytest.fixture
def image_file(tmp_path):
    rng = np.random.default_rng(0)
    volume = Volume(rng.integers(0, 4000, (40, 36, 30)).astype(np.float32), np.eye(4))
    return write_nifti(volume, tmp_path / "image.nii.gz")


def test_a_flipped_bit_is_refused(image_file, tmp_path):
    data = bytearray(image_file.read_bytes())
    assert read_nifti(image_file).shape == (40, 36, 30)
    refused = 0
    for offset in range(len(data) // 4, len(data) - 20, len(data) // 12):
        flipped = bytearray(data)
        flipped[offset] ^= 0x04
        path = tmp_path / f"flip-{offset}.nii.gz"
        path.write_bytes(flipped)
        with pytest.raises(
            CordmapError, match=f"{path.name}.*(truncated or corrupt|not a readable)"
        ):
            read_nifti(path)
        refused += 1
    assert refused >= 8


def test_labels_with_a_flipped_bit_are_refused(tmp_path):
    schema = LabelSchema.load()
    labels = LabelVolume(
        np.repeat(np.arange(4, dtype=np.uint16), 2000).reshape(20, 20, 20), np.eye(4), schema=schema
    )
    path = write_nifti(labels, tmp_path / "labels.nii.gz")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(data)
    with pytest.raises(CordmapError, match="labels.nii.gz"):
        read_labels(path, schema)


def test_a_missing_gzip_trailer_is_refused(image_file):
    image_file.write_bytes(image_file.read_bytes()[:-8])
    with pytest.raises(CordmapError, match="truncated or corrupt"):
        read_nifti(image_file)


@pytest.mark.parametrize("shape", [(1500, 1500, 1000), (32767, 32767, 32767)])
def test_a_declared_size_the_file_cannot_hold_is_refused_before_allocating(tmp_path, shape):
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.uint8)
    path = tmp_path / "tiny.nii.gz"
    path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4))
    assert path.stat().st_size < 100
    with pytest.raises(CordmapError, match="declares .* bytes of image but the file holds"):
        read_nifti(path)
