"""NIfTI (.nii / .nii.gz) reading and writing through nibabel, in canonical RAS+."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from cordmap.atomic import atomic_file
from cordmap.errors import CordmapError
from cordmap.protocol.schema import LabelSchema
from cordmap.volume import LabelVolume, Volume

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: str | Path) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def read_nifti(path: str | Path) -> Volume:
    """Load a 3D NIfTI image as a canonical RAS+ `Volume` (float32 unless integer on disk)."""
    image = _load(Path(path))
    data = _data(image, path)
    return _named(path, Volume.from_any_orientation, data, image.affine)


def read_labels(path: str | Path, schema: LabelSchema) -> LabelVolume:
    """Load a NIfTI label volume (integer ids of `schema`) in canonical RAS+."""
    image = _load(Path(path))
    data = _data(image, path)
    return _named(path, LabelVolume.from_any_orientation, data, image.affine, schema=schema)


def _named(path, make, *args, **kwargs):
    """`make(*args, **kwargs)`, its errors naming the file."""
    try:
        return make(*args, **kwargs)
    except CordmapError as exc:
        raise CordmapError(f"{path}: {exc}") from None


def write_nifti(volume: Volume, path: str | Path) -> Path:
    """Write a volume (image or labels) atomically; labels are stored as uint16."""
    path = Path(path)
    if not is_nifti(path):
        raise CordmapError(f"{path}: a NIfTI file name must end in .nii or .nii.gz")
    array = volume.array
    if isinstance(volume, LabelVolume):
        array = array.astype(np.uint16)
    image = nib.Nifti1Image(array, volume.affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(volume.affine, code=1)
    image.set_sform(volume.affine, code=1)
    with atomic_file(path) as tmp:
        nib.save(image, tmp)
    return path


#: Deflate cannot compress more than about 1032:1, so a file declaring more data than this
#: many times its compressed size is truncated or lies about its size.
MAX_DEFLATE_RATIO = 1032


def _load(path: Path) -> nib.Nifti1Image:
    """The image with its data in memory: a compressed file is read to its end, its CRC
    and length checked, and its declared size checked against the file and the free
    memory before anything is allocated."""
    if not path.exists():
        raise CordmapError(f"{path} does not exist")
    if not is_nifti(path):
        raise CordmapError(f"{path} is not a NIfTI file (expected .nii or .nii.gz)")
    if not path.is_file():
        raise CordmapError(f"{path} is not a regular file; pass a NIfTI file")
    try:
        image = nib.load(path)
    except Exception as exc:  # nibabel raises many types for corrupt headers
        raise CordmapError(f"{path} is not a readable NIfTI file ({exc}); re-export it") from None
    if not isinstance(image, nib.Nifti1Image):  # a NIfTI-2 image is one too
        raise CordmapError(
            f"{path} is not a NIfTI-1/2 image (nibabel reads it as {type(image).__name__}); "
            "re-export it"
        )
    header = image.header
    declared = (
        int(header.get_data_offset())
        + int(np.prod(header.get_data_shape(), dtype=np.float64)) * header.get_data_dtype().itemsize
    )
    on_disk = path.stat().st_size
    compressed = str(path).lower().endswith(".gz")
    if declared > (MAX_DEFLATE_RATIO if compressed else 1) * on_disk:
        raise CordmapError(
            f"{path} is truncated or corrupt: its header declares {declared:,} bytes of image "
            f"but the file holds {on_disk:,} bytes; copy it again from the scanner or PACS export"
        )
    _require_memory(declared, path)
    if not compressed:
        return image
    try:
        raw = gzip.decompress(path.read_bytes())
    except (EOFError, OSError, zlib.error) as exc:
        raise CordmapError(
            f"{path} is truncated or corrupt ({exc or type(exc).__name__}); copy it again "
            "from the scanner or PACS export"
        ) from None
    if len(raw) < declared:
        raise CordmapError(
            f"{path} is truncated: {len(raw):,} bytes of {declared:,} declared; "
            "copy it again from the scanner or PACS export"
        )
    return nib.Nifti1Image.from_bytes(raw)


def _require_memory(size: int, path: Path) -> None:
    """Refuse an image larger than the memory this machine has free."""
    try:
        meminfo = Path("/proc/meminfo").read_text()
    except OSError:
        return
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            available = int(line.split()[1]) * 1024
            if size > available:
                raise CordmapError(
                    f"{path} needs {size / 2**30:.1f} GiB of memory to read, "
                    f"more than the {available / 2**30:.1f} GiB free; use a "
                    "machine with more memory or a smaller image"
                )
            return


def _data(image, path) -> np.ndarray:
    if image.get_data_dtype().kind not in "biuf":
        raise CordmapError(
            f"{path} stores {image.get_data_dtype()} voxels (colour or complex); "
            "cordmap reads scalar (greyscale) images: convert it first"
        )
    try:
        if np.issubdtype(image.get_data_dtype(), np.integer) and _is_unscaled(image):
            data = np.asanyarray(image.dataobj)
        else:
            data = image.get_fdata(dtype=np.float32)
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile, ValueError) as exc:
        raise CordmapError(
            f"{path} is truncated or corrupt ({exc or type(exc).__name__}); copy it again "
            "from the scanner or PACS export"
        ) from None
    data = np.squeeze(data) if data.ndim > 3 else data
    if data.ndim != 3:
        raise CordmapError(f"{path} holds a {data.ndim}D image of shape {data.shape}; expected 3D")
    return data


def _is_unscaled(image) -> bool:
    slope, inter = image.header.get_slope_inter()
    return slope in (None, 1.0) and inter in (None, 0.0)
