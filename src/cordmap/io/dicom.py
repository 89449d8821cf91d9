"""DICOM series: list the series of an export, read one as a Volume, write a Volume as one.

Reading scans a folder recursively (any file names; files that are not DICOM images, such
as DICOMDIR or a readme, are skipped), groups the images by SeriesInstanceUID, orders the
chosen series' slices along their normal and takes the slice spacing from their
positions. Series that do not form one regular stack (gantry tilt, missing or duplicate
slices, mixed orientations or sizes, enhanced multi-frame files) are refused with a
message naming the series and the fix. Files are only read, never modified.

Writing stores one MR Image Storage file per slice, 16-bit unsigned pixels with a
RescaleSlope/RescaleIntercept: integer-valued volumes whose range spans at most 65536
values round-trip exactly; other volumes are quantized to 65536 levels between their
minimum and maximum, an error of at most (max - min) / 131070 per voxel (plus float32
rounding on reading).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRLittleEndian, MRImageStorage, generate_uid
from pydicom.valuerep import format_number_as_ds

from cordmap import __version__
from cordmap.atomic import atomic_dir
from cordmap.errors import CordmapError
from cordmap.io.dicom_geometry import (
    SAME_TOLERANCE,
    display_order,
    plane_name,
    slice_planes,
    stack_slices,
)
from cordmap.volume import Volume

NO_DICOM_HINT = (
    "pass the folder of a DICOM export, a .nii/.nii.gz file or a folder of PNG/TIFF slices"
)
CHOOSE_HINT = "pass `series` NUMBER (or a series UID, or part of its description)"
UINT16_LEVELS = 65535
MM_DECIMALS = 6  # positions and spacings are written to the nanometre


@dataclass(frozen=True)
class SeriesInfo:
    """One DICOM series of a folder, as read from its files' headers."""

    uid: str
    number: int | None
    description: str
    modality: str
    orientation: str  # axial, sagittal, coronal, oblique, mixed or unknown
    n_files: int
    rows: int
    cols: int
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns) mm
    slice_spacing: float | None  # mm between neighbouring slice positions
    files: tuple[Path, ...] = field(default=(), repr=False, compare=False)

    @property
    def label(self) -> str:
        """How messages name the series: number, description and UID."""
        number = "?" if self.number is None else self.number
        description = f" '{self.description}'" if self.description else ""
        return f"series {number}{description} (UID {self.uid})"

    def summary(self) -> str:
        number = "?" if self.number is None else self.number
        description = self.description or "no description"
        return f"{number} '{description}' ({self.orientation}, {self.n_files} images)"


# --------------------------------------------------------------------------- listing


def list_series(folder: str | Path) -> list[SeriesInfo]:
    """The image series in `folder` (searched recursively), by series number then UID."""
    return scan_series(folder)[0]


def scan_series(folder: str | Path) -> tuple[list[SeriesInfo], list[Path]]:
    """The image series in `folder` and its unreadable files (empty, truncated or damaged
    files that are, or may be, DICOM images)."""
    groups, damaged = _scan(Path(folder))
    return _infos(groups), [path for path, _ in damaged]


def _infos(groups: dict[str, list[tuple[Path, Dataset]]]) -> list[SeriesInfo]:
    infos = [_series_info(uid, members) for uid, members in groups.items()]
    return sorted(infos, key=lambda s: (s.number is None, s.number or 0, s.uid))


def _scan(
    folder: Path,
) -> tuple[dict[str, list[tuple[Path, Dataset]]], list[tuple[Path, str | None]]]:
    """Image headers by series UID, and the damaged files with the series UID they name
    (None when unreadable)."""
    if not folder.exists():
        raise CordmapError(f"{folder} does not exist; {NO_DICOM_HINT}")
    if not folder.is_dir():
        raise CordmapError(f"{folder} is a file, not a folder; {NO_DICOM_HINT}")
    groups: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    damaged: list[tuple[Path, str | None]] = []
    for path in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue  # hidden files and unfinished (atomic) outputs
        if not path.is_file():
            continue
        try:
            header = _read_header(path)
        except _Damaged as exc:
            damaged.append((path, exc.series_uid))
            continue
        if header is not None:
            groups[str(header.SeriesInstanceUID)].append((path, header))
    if not groups:
        raise CordmapError(f"no DICOM files in {folder}; {NO_DICOM_HINT}")
    return groups, damaged


class _Damaged(Exception):
    """A file that is, or may be, a DICOM image but cannot be read whole."""

    def __init__(self, series_uid: str | None = None):
        super().__init__(series_uid)
        self.series_uid = series_uid


def _read_header(path: Path) -> Dataset | None:
    """The header of a DICOM image file, or None for anything else (DICOMDIR, text, ...);
    raises _Damaged for an empty or truncated file, or a damaged DICOM image."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError as exc:
        raise CordmapError(f"cannot read {path} ({exc.strerror}); check its permissions") from None
    has_preamble = head[128:132] == b"DICM"
    if not head or (len(head) < 132 and not head.strip(b"\0")):
        raise _Damaged()  # empty, or cut inside the preamble
    # a file without preamble may still be DICOM if it starts with a group 0002/0008 tag
    if not has_preamble and head[:2] not in (b"\x02\x00", b"\x08\x00"):
        return None
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, force=not has_preamble)
    except InvalidDicomError:
        return None
    except Exception:  # pydicom raises many types for damaged files
        if not has_preamble:
            return None
        raise _Damaged() from None
    if "SeriesInstanceUID" not in header or "Rows" not in header:
        sop_class = getattr(getattr(header, "file_meta", None), "MediaStorageSOPClassUID", None)
        if has_preamble and (
            sop_class is None or "Image Storage" in getattr(sop_class, "name", "")
        ):
            raise _Damaged(str(header.get("SeriesInstanceUID", "")) or None)
        return None  # not an image: DICOMDIR, structured report, presentation state
    return header


def _series_info(uid: str, members: list[tuple[Path, Dataset]]) -> SeriesInfo:
    first = members[0][1]
    orientations = [h.get("ImageOrientationPatient") for _, h in members]
    same = all(
        o is not None and np.allclose(o, orientations[0], atol=SAME_TOLERANCE) for o in orientations
    )
    if any(o is None for o in orientations):
        orientation = "unknown"
    else:
        orientation = plane_name(orientations[0]) if same else "mixed"
    spacing = first.get("PixelSpacing")
    return SeriesInfo(
        uid=uid,
        number=_int_or_none(first.get("SeriesNumber")),
        description=str(first.get("SeriesDescription", "") or "").strip(),
        modality=str(first.get("Modality", "") or ""),
        orientation=orientation,
        n_files=len(members),
        rows=_int_or_none(first.get("Rows")) or 0,
        cols=_int_or_none(first.get("Columns")) or 0,
        pixel_spacing=(float(spacing[0]), float(spacing[1])) if spacing else None,
        slice_spacing=_typical_step(members, orientations[0]) if same else None,
        files=tuple(path for path, _ in members),
    )


def _typical_step(members, orientation) -> float | None:
    positions = [h.get("ImagePositionPatient") for _, h in members]
    if orientation is None or any(p is None for p in positions):
        return None
    normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))
    along = np.unique(np.round(np.asarray(positions, float) @ normal, 3))
    return float(np.median(np.diff(along))) if along.size > 1 else None


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- reading


def read_dicom(folder: str | Path, series: str | int | None = None) -> Volume:
    """Read one series of a DICOM folder as a canonical RAS+ Volume.

    `series` chooses by SeriesInstanceUID, series number or (case-insensitive) part of
    the description; it may be omitted when the folder holds a single series.
    """
    return read_dicom_with_info(folder, series)[0]


def read_dicom_with_info(
    folder: str | Path, series: str | int | None = None
) -> tuple[Volume, SeriesInfo]:
    """Like `read_dicom`, also returning the SeriesInfo of the series read."""
    folder = Path(folder)
    groups, damaged = _scan(folder)
    info = select_series(_infos(groups), series, folder)
    ours = [path.relative_to(folder).as_posix() for path, uid in damaged if uid in (None, info.uid)]
    if ours:
        raise CordmapError(
            f"{len(ours)} file(s) of {folder} that are, or may be, images of {info.label} "
            f"cannot be read (empty, truncated or damaged): {', '.join(ours[:5])}"
            f"{' ...' if len(ours) > 5 else ''}; copy the export again or remove those files"
        )
    headers = [header for _, header in groups[info.uid]]
    _require_single_volume(info, headers)
    names = [path.relative_to(folder).as_posix() for path in info.files]
    stack = stack_slices(
        [h.ImagePositionPatient for h in headers],
        headers[0].ImageOrientationPatient,
        headers[0].PixelSpacing,
        names,
        info.label,
        single_slice_spacing=_float(
            headers[0].get("SpacingBetweenSlices") or headers[0].get("SliceThickness")
        ),
    )
    array = _read_pixels(info, headers, stack.order)
    return Volume.from_any_orientation(array, stack.affine), info


def identity_removed(info: SeriesInfo) -> bool:
    """Whether the series says it was de-identified (PatientIdentityRemoved = YES)."""
    header = pydicom.dcmread(info.files[0], stop_before_pixels=True)
    return str(header.get("PatientIdentityRemoved", "")).upper() == "YES"


def select_series(infos: list[SeriesInfo], series: str | int | None, folder: Path) -> SeriesInfo:
    """The series chosen by UID, number or description part; a clear error otherwise."""
    listing = "; ".join(info.summary() for info in infos)
    if series is None:
        if len(infos) == 1:
            return infos[0]
        raise CordmapError(f"{folder} holds {len(infos)} series: {listing}; {CHOOSE_HINT}")
    wanted = str(series).strip()
    matches = [info for info in infos if info.uid == wanted]
    if not matches and wanted.lstrip("-").isdigit():
        matches = [info for info in infos if info.number == int(wanted)]
    if not matches:
        matches = [info for info in infos if wanted.lower() in info.description.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise CordmapError(
            f"no series in {folder} matches '{wanted}'; it holds: {listing}; {CHOOSE_HINT}"
        )
    uids = "; ".join(f"{info.summary()} UID {info.uid}" for info in matches)
    raise CordmapError(
        f"'{wanted}' matches {len(matches)} series in {folder}: {uids}; pass `series` UID "
        "to choose one"
    )


_REQUIRED = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
#: What every image file must hold to be decoded at all.
_PIXEL_TAGS = ("Rows", "Columns", "BitsAllocated", "PixelRepresentation")


def _require_single_volume(info: SeriesInfo, headers: list[Dataset]) -> None:
    """Refuse series that are not one stack of same-sized, same-oriented 2D images."""
    for path, header in zip(info.files, headers):
        frames = _int_or_none(header.get("NumberOfFrames")) or 1
        if frames > 1:
            raise CordmapError(
                f"{info.label} is stored as multi-frame files ({path.name} holds {frames} "
                "frames), which cordmap does not read; export it as classic single-frame "
                "images, or convert it with dcm2niix and pass the .nii.gz"
            )
        damaged = [tag for tag in _PIXEL_TAGS if header.get(tag) is None]
        if damaged:
            raise CordmapError(
                f"{info.label}: {path.name} has no {', '.join(damaged)}: the file is damaged; "
                "copy the export again or remove that file"
            )
        missing = [tag for tag in _REQUIRED if header.get(tag) is None]
        if missing:
            raise CordmapError(
                f"{info.label}: {path.name} has no {', '.join(missing)}, so it cannot be "
                "placed in 3D (a radiograph, screenshot or secondary capture?); choose another series "
                "with `series`"
            )
        if int(header.get("SamplesPerPixel", 1)) != 1:
            raise CordmapError(
                f"{info.label} holds colour images ({path.name}); cordmap reads greyscale "
                "MRI: choose another series with `series`"
            )
    if not all(
        np.allclose(
            h.ImageOrientationPatient, headers[0].ImageOrientationPatient, atol=SAME_TOLERANCE
        )
        for h in headers
    ):
        planes = _distinct(headers, _plane)
        if " and " not in planes:
            planes = f"{planes} planes at different angles"
        raise CordmapError(
            f"{info.label} mixes image orientations ({planes}; a localizer or projections?); choose another "
            "series with `series`"
        )
    for what, get in (("image sizes", _size), ("pixel spacings", _pixel_spacing)):
        if len({get(h) for h in headers}) > 1:
            raise CordmapError(
                f"{info.label} mixes {what} ({_distinct(headers, get)}): it holds more than "
                "one acquisition; re-export it, or convert it with dcm2niix and pass the .nii.gz"
            )


def _plane(header) -> str:
    return plane_name(header.ImageOrientationPatient)


def _size(header) -> str:
    return f"{int(header.Rows)}x{int(header.Columns)}"


def _pixel_spacing(header) -> str:
    return " x ".join(f"{float(v):.4g}" for v in header.PixelSpacing) + " mm"


def _distinct(headers, get) -> str:
    return " and ".join(sorted({get(h) for h in headers}))


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _read_pixels(info: SeriesInfo, headers: list[Dataset], order) -> np.ndarray:
    """Pixel data of the ordered slices as array[c, r, s], rescaled when the header says so."""
    slopes = [_float(h.get("RescaleSlope")) for h in headers]
    intercepts = [_float(h.get("RescaleIntercept")) for h in headers]
    slopes = [1.0 if s is None else s for s in slopes]
    intercepts = [0.0 if i is None else i for i in intercepts]
    identity = all(s == 1.0 for s in slopes) and all(i == 0.0 for i in intercepts)
    slices = []
    for index in order:
        path = info.files[index]
        try:
            pixels = pydicom.dcmread(path).pixel_array
        except Exception as exc:  # missing decoder, truncated pixel data
            raise CordmapError(
                f"{info.label}: cannot decode the pixels of {path.name} ({exc}); decompress "
                "the export (e.g. gdcmconv --raw) or convert it with dcm2niix and pass the .nii.gz"
            ) from None
        if pixels.shape != (info.rows, info.cols):
            raise CordmapError(
                f"{info.label}: {path.name} holds pixels of shape {pixels.shape}, not "
                f"{info.rows}x{info.cols}; re-export the series"
            )
        if not identity:
            pixels = (pixels * slopes[index] + intercepts[index]).astype(np.float32)
        slices.append(pixels.T)
    return np.stack(slices, axis=-1)


# --------------------------------------------------------------------------- writing


def write_dicom_series(
    volume: Volume,
    folder: str | Path,
    *,
    series_description: str,
    series_number: int = 1,
    patient_id: str = "PHANTOM",
    study_uid: str | None = None,
    slice_axis: int = 2,
    uid_seed: str | None = None,
) -> Path:
    """Write `volume` as a DICOM MR series, one file per slice, into `folder` (replaced whole).

    `slice_axis` 2 writes axial slices (array[:, :, k]), 1 coronal, 0 sagittal. Pass the
    same `study_uid` to put several series in one study (they also share a frame of
    reference). With `uid_seed` all UIDs are derived from it, so the output is
    reproducible; otherwise they are random. The files carry no dates or patient data
    other than `patient_id`.
    """
    folder = Path(folder)
    _require_replaceable(folder)
    array, affine = display_order(volume.array, volume.affine, slice_axis)
    planes = slice_planes(affine, array.shape[2])
    stored, slope, intercept = quantize_uint16(array)
    study_uid = study_uid or _uid(uid_seed, "study", patient_id)
    series_uid = _uid(uid_seed, study_uid, "series", series_number, series_description, slice_axis)
    shared = _series_dataset(
        patient_id=patient_id,
        study_uid=study_uid,
        series_uid=series_uid,
        frame_uid=generate_uid(entropy_srcs=[study_uid, "frame of reference"]),
        series_number=series_number,
        series_description=series_description,
        planes=planes,
        rows_cols=(array.shape[1], array.shape[0]),
        slope=slope,
        intercept=intercept,
        window=(intercept + slope * int(stored.min()), intercept + slope * int(stored.max())),
    )
    n_slices = array.shape[2]
    with atomic_dir(folder) as tmp:
        for s in range(n_slices):
            ds = _slice_dataset(
                shared,
                s,
                planes,
                stored[:, :, s].T,
                generate_uid(entropy_srcs=[series_uid, str(s)]),
            )
            ds.save_as(tmp / f"IM{s + 1:04d}.dcm", enforce_file_format=True)
    return folder


def quantize_uint16(array: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Unsigned 16-bit values and (slope, intercept) such that value = stored*slope + intercept.

    Exact for integer-valued data spanning at most 65536 values (slope 1); otherwise
    quantized to 65536 levels from min to max, an error of at most (max - min) / 131070.
    """
    if array.size == 0:
        raise CordmapError("the volume is empty; nothing to write")
    values = np.asarray(array)
    if values.dtype == bool:
        values = values.astype(np.uint8)
    if not np.all(np.isfinite(values)):
        raise CordmapError(
            "the volume holds NaN or infinite values, which DICOM cannot store; "
            "replace them (e.g. by 0) before writing"
        )
    low, high = float(values.min()), float(values.max())
    whole = np.issubdtype(values.dtype, np.integer) or np.array_equal(values, np.rint(values))
    if whole and high - low <= UINT16_LEVELS:
        offset = 0.0 if low >= 0 and high <= UINT16_LEVELS else low
        stored = (values.astype(np.float64) - offset).astype(np.uint16)
        return stored, 1.0, offset
    slope = _ds_float((high - low) / UINT16_LEVELS if high > low else 1.0)
    intercept = _ds_float(low)
    stored = np.clip(np.rint((values.astype(np.float64) - intercept) / slope), 0, UINT16_LEVELS)
    return stored.astype(np.uint16), slope, intercept


def _ds_float(value: float) -> float:
    """`value` as it will read back from a DICOM decimal string (16 characters)."""
    return float(format_number_as_ds(float(value)))


def _ds(values, decimals: int | None = None):
    """Decimal-string form of a number or sequence (rounded to `decimals` when given)."""
    if decimals is not None:
        values = np.round(values, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
    if np.ndim(values) == 0:
        return format_number_as_ds(float(values))
    return [format_number_as_ds(float(v)) for v in values]


def _uid(seed: str | None, *parts) -> str:
    if seed is None:
        return generate_uid()
    return generate_uid(entropy_srcs=[str(seed), *(str(p) for p in parts)])


def _require_replaceable(folder: Path) -> None:
    if not folder.exists():
        return
    if not folder.is_dir():
        raise CordmapError(f"{folder} is a file; pass a folder path for the DICOM series")
    foreign = [p.name for p in folder.iterdir() if not (p.is_file() and p.suffix.lower() == ".dcm")]
    if foreign:
        raise CordmapError(
            f"{folder} already holds other files or folders ({foreign[0]}); a series folder is "
            "replaced whole, so pass a new folder (e.g. dicom/axial)"
        )


def _series_dataset(
    *,
    patient_id,
    study_uid,
    series_uid,
    frame_uid,
    series_number,
    series_description,
    planes,
    rows_cols,
    slope,
    intercept,
    window,
) -> Dataset:
    """The attributes every slice of the written series shares."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SOPClassUID = MRImageStorage
    ds.StudyDate = ds.StudyTime = ds.AccessionNumber = ds.StudyID = ""
    ds.ReferringPhysicianName = ""
    ds.Modality = "MR"
    ds.Manufacturer = "cordmap"
    ds.SoftwareVersions = __version__
    ds.SeriesDescription = series_description
    ds.PatientName = ds.PatientID = patient_id
    ds.PatientBirthDate = ds.PatientSex = ""
    ds.ScanningSequence = "RM"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ds.MRAcquisitionType = ds.EchoTime = ds.EchoTrainLength = ""
    ds.SliceThickness = _ds(planes.spacing, MM_DECIMALS)
    ds.SpacingBetweenSlices = _ds(planes.spacing, MM_DECIMALS)
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = int(series_number)
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    ds.ImageOrientationPatient = _ds(planes.orientation)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = (int(n) for n in rows_cols)
    ds.PixelSpacing = _ds(planes.pixel_spacing, MM_DECIMALS)
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = _ds(intercept)
    ds.RescaleSlope = _ds(slope)
    ds.RescaleType = "US"
    ds.WindowCenter = _ds((window[0] + window[1]) / 2)
    ds.WindowWidth = _ds(max(window[1] - window[0], 1.0))
    return ds


def _slice_dataset(shared: Dataset, s: int, planes, pixels: np.ndarray, sop_uid: UID) -> Dataset:
    ds = Dataset()
    ds.update(shared)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = s + 1
    ds.ImagePositionPatient = _ds(planes.positions[s], MM_DECIMALS)
    ds.SliceLocation = _ds(planes.along[s], MM_DECIMALS)
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    return ds
