"""2D slice stacks (PNG / TIFF) and per-slice annotation masks, read with Pillow.

Orientation convention (radiological display, as viewers export slices):

- axial (default): pixel row 0 is the patient's anterior edge (rows run anterior ->
  posterior), column 0 is the patient's right (shown on the left of the screen; columns
  run right -> left), and the first file is the most inferior slice (files run
  inferior -> superior).
- coronal: row 0 superior (rows run superior -> inferior), column 0 patient right,
  first file the most posterior slice.
- sagittal: row 0 superior, column 0 anterior (the patient faces the screen's left),
  first file the patient's leftmost slice.

`reverse=True` turns the file order around (first file superior / anterior / right).
Files are sorted naturally (`img2` before `img10`). `spacing=(x, y, slice)` gives, in mm,
the distance between pixel centres along a row (between columns), along a column (between
rows) and between slice centres. The centre of pixel (row 0, column 0) of the first file
(in natural order) lies at world `origin` (RAS+ mm, default 0, 0, 0). Images must be 8- or
16-bit greyscale (RGB with equal channels is accepted); the volume keeps their values.

Annotation masks are images of the same slices, in the same convention, in a folder:

- one sub-folder per structure, named by label id or name (`121`, `cord segment L1`,
  case and `_`/space insensitive): non-zero pixels are that label;
- or colour-coded images, one per slice: each colour is a label, through a colour table
  (`#rrggbb` or `r g b`, then a label id or name, one a line) or, by default, the
  protocol's own colours. Black or fully transparent pixels are background.

A mask file belongs to the image slice with the same file name (without extension), or
else with the same slice number (the last number in the name: `mask_007.png` is the
slice of `img7.tif`). For an image that did not come from a slice stack (NIfTI, DICOM),
masks are its axial slices numbered 1..N from the inferior end. A slice without a mask
file is empty.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cordmap.errors import CordmapError
from cordmap.protocol.schema import Label, LabelSchema
from cordmap.volume import LabelVolume, Volume, to_canonical

SLICE_SUFFIXES = (".png", ".tif", ".tiff")
ORIENTATIONS = ("axial", "coronal", "sagittal")

# World direction (RAS+) of increasing row, increasing column and the file order.
_AXES = {
    "axial": ((0, -1, 0), (-1, 0, 0), (0, 0, 1)),
    "coronal": ((0, 0, -1), (-1, 0, 0), (0, 1, 0)),
    "sagittal": ((0, 0, -1), (0, -1, 0), (1, 0, 0)),
}
_GREY_MODES = {
    "L": np.uint8,
    "I;16": np.uint16,
    "I;16B": np.uint16,
    "I;16L": np.uint16,
    "I;16N": np.uint16,
    "1": np.uint8,
}
_COLOUR_MODES = ("RGB", "RGBA", "P", "PA", "LA")


@dataclass(frozen=True)
class SliceStack:
    """An ordered list of 2D slice files with the geometry that places them in space."""

    files: tuple[Path, ...]
    spacing: tuple[float, float, float]
    orientation: str = "axial"
    reverse: bool = False
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def open(
        cls,
        source: str | Path | Iterable[str | Path],
        spacing: Sequence[float] | None = None,
        orientation: str = "axial",
        reverse: bool = False,
        origin: Sequence[float] = (0.0, 0.0, 0.0),
    ) -> SliceStack:
        """List and check the slices of a folder (or a list of files); read no pixels yet."""
        if orientation not in ORIENTATIONS:
            raise CordmapError(
                f"orientation '{orientation}' is not one of {', '.join(ORIENTATIONS)}"
            )
        files = list_slices(source)
        if spacing is None:
            raise CordmapError(
                f"{_describe(source)} holds 2D slices, which carry no voxel size; pass the "
                "spacing in mm as X,Y,SLICE, e.g. `spacing` 0.8,0.8,3"
            )
        spacing = tuple(float(s) for s in spacing)
        if len(spacing) != 3 or not all(np.isfinite(spacing)) or min(spacing) <= 0:
            raise CordmapError(f"spacing {spacing} must be three positive mm values: X,Y,SLICE")
        x, y, z = (float(o) for o in origin)
        stack = cls(tuple(files), spacing, orientation, reverse, (x, y, z))
        first = _image_size(files[0])
        for file in files[1:]:
            size = _image_size(file)
            if size != first:
                raise CordmapError(
                    f"{file} is {_size(size)} pixels but {files[0].name} is {_size(first)}; "
                    "all slices of a stack must have the same size: re-export them together"
                )
        return stack

    @property
    def size(self) -> tuple[int, int]:
        """(rows, columns) of every slice."""
        return _image_size(self.files[0])

    def affine(self) -> np.ndarray:
        """Voxel (row, column, file position) -> RAS+ mm."""
        directions = np.array(_AXES[self.orientation], dtype=float).T  # columns = axes
        if self.reverse:
            directions[:, 2] *= -1
        affine = np.eye(4)
        affine[:3, :3] = directions * np.asarray(self.spacing)[[1, 0, 2]]
        affine[:3, 3] = self.origin
        return affine

    def read(self) -> SliceStackVolume:
        """Read the pixels into a canonical RAS+ volume."""
        slices: list[np.ndarray] = []
        for file in self.files:
            pixels = _read_greyscale(file)
            if slices and pixels.dtype != slices[0].dtype:
                raise CordmapError(
                    f"{file} is {8 * pixels.itemsize}-bit but {self.files[0].name} is "
                    f"{8 * slices[0].itemsize}-bit; export all slices with one bit depth"
                )
            slices.append(pixels)
        array, affine = to_canonical(np.stack(slices, axis=-1), self.affine())
        return SliceStackVolume(array, affine, stack=self)

    def slice_index(self, mask_file: Path) -> int:
        """Position (in `files`) of the image slice a mask file belongs to."""
        order = self.files
        stems = {f.stem.lower(): i for i, f in enumerate(order)}
        if mask_file.stem.lower() in stems:
            return stems[mask_file.stem.lower()]
        numbers = [_slice_number(f) for f in order]
        number = _slice_number(mask_file)
        if number is not None and numbers.count(number) == 1:
            return numbers.index(number)
        raise CordmapError(
            f"mask {mask_file} matches no image slice; name it like its image slice "
            f"(e.g. {order[0].name}) or with the same slice number"
        )


@dataclass(frozen=True, eq=False)
class SliceStackVolume(Volume):
    """A volume read from a slice stack; it keeps the stack so masks find their slices."""

    stack: SliceStack


def list_slices(source: str | Path | Iterable[str | Path]) -> list[Path]:
    """PNG/TIFF slice files of a folder (or the given files), in natural order."""
    if isinstance(source, (str, Path)):
        folder = Path(source)
        if not folder.is_dir():
            raise CordmapError(f"{folder} is not a folder of PNG/TIFF slices")
        files = [
            p
            for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SLICE_SUFFIXES
        ]
        if not files:
            raise CordmapError(
                f"{folder} holds no PNG or TIFF slices (.png, .tif, .tiff); export the "
                "slices there or pass the folder that holds them"
            )
    else:
        files = [Path(p) for p in source]
        if not files:
            raise CordmapError(
                "no slice files were given; pass a folder or a list of PNG/TIFF files"
            )
        for file in files:
            if not file.is_file():
                raise CordmapError(f"slice {file} does not exist")
    return sorted(files, key=natural_key)


def natural_key(path: Path) -> tuple:
    """Sort key that orders numbers by value: img2 before img10."""
    return tuple(
        int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)
    )


def read_slice_stack(
    source: str | Path | Iterable[str | Path],
    spacing: Sequence[float] | None = None,
    orientation: str = "axial",
    reverse: bool = False,
    origin: Sequence[float] = (0.0, 0.0, 0.0),
) -> SliceStackVolume:
    """Read a folder (or list) of 2D PNG/TIFF slices as a canonical RAS+ volume.

    See the module docstring for the orientation convention and the meaning of
    `spacing` (mm: between columns, between rows, between slices).
    """
    return SliceStack.open(source, spacing, orientation, reverse, origin).read()


# -- annotation masks ------------------------------------------------------------------
def read_masks(
    source: str | Path,
    image: Volume,
    schema: LabelSchema,
    *,
    colour_table: str | Path | None = None,
) -> LabelVolume:
    """Per-slice masks in `source` as a label volume on `image`'s grid.

    A folder of sub-folders is read as one folder per structure
    (`read_structure_masks`); a folder of images as colour-coded masks
    (`read_colour_masks`).
    """
    source = Path(source)
    if not source.is_dir():
        raise CordmapError(f"masks {source} is not a folder of per-slice masks")
    if _structure_folders(source):
        if colour_table is not None:
            raise CordmapError(
                f"{source} holds one folder per structure, which needs no colour table; "
                "drop the colour table or pass a folder of colour-coded slices"
            )
        return read_structure_masks(source, image, schema)
    return read_colour_masks(source, image, schema, colour_table=colour_table)


def read_structure_masks(source: str | Path, image: Volume, schema: LabelSchema) -> LabelVolume:
    """One sub-folder per structure (named by label id or name); non-zero pixels = that label."""
    source = Path(source)
    grid = _MaskGrid.of(image)
    labels = np.zeros(grid.native_shape, dtype=np.uint16)
    owner: dict[int, str] = {}
    for folder in _structure_folders(source):
        label = find_label(folder.name, schema, where=f"mask folder {folder}")
        if label.id in owner:
            raise CordmapError(
                f"mask folders {owner[label.id]} and {folder.name} of {source} are both "
                f"'{label.name}'; merge them into one folder"
            )
        owner[label.id] = folder.name
        for file, index in grid.mask_files(folder):
            mask = _mask_pixels(file, grid) != 0
            taken = mask & (labels[:, :, index] != 0) & (labels[:, :, index] != label.id)
            if taken.any():
                other = schema[int(labels[:, :, index][taken][0])]
                raise CordmapError(
                    f"'{label.name}' and '{other.name}' overlap on {int(taken.sum())} pixels "
                    f"of slice {file.name} (slice {index + 1}); a pixel can hold one structure: "
                    "correct one of the two masks"
                )
            labels[:, :, index][mask] = label.id
    return grid.label_volume(labels, schema)


def read_colour_masks(
    source: str | Path,
    image: Volume,
    schema: LabelSchema,
    *,
    colour_table: str | Path | None = None,
) -> LabelVolume:
    """Colour-coded mask images, one per slice; colours map to labels via `colour_table`
    (a file) or, by default, the protocol's own label colours."""
    source = Path(source)
    grid = _MaskGrid.of(image)
    if colour_table is None:
        table, ambiguous = schema_colours(schema)
        table_name = f"protocol '{schema.name}'"
    else:
        table, ambiguous = read_colour_table(colour_table, schema), {}
        table_name = f"colour table {colour_table}"
    labels = np.zeros(grid.native_shape, dtype=np.uint16)
    for file, index in grid.mask_files(source):
        packed = _colour_pixels(file, grid)
        for colour in np.unique(packed[packed > 0]):
            colour = int(colour)
            if colour in ambiguous:
                raise CordmapError(
                    f"colour {_hex(colour)} in {file} is used by several labels of the "
                    f"{table_name} ({', '.join(ambiguous[colour])}); pass a colour table "
                    "that gives each label its own colour"
                )
            if colour not in table:
                count = int((packed == colour).sum())
                raise CordmapError(
                    f"colour {_hex(colour)} ({count} pixels) in {file} is not in the "
                    f"{table_name}; add it to the colour table, or export the masks without "
                    "smoothing/antialiasing"
                )
            labels[:, :, index][packed == colour] = table[colour]
    return grid.label_volume(labels, schema)


def schema_colours(schema: LabelSchema) -> tuple[dict[int, int], dict[int, list[str]]]:
    """The protocol's colours as {packed rgb: label id}, plus colours shared by labels."""
    users: dict[int, list[Label]] = {}
    for label in schema:
        users.setdefault(_pack(label.colour), []).append(label)
    table = {colour: found[0].id for colour, found in users.items() if len(found) == 1}
    ambiguous = {
        colour: [label.name for label in found] for colour, found in users.items() if len(found) > 1
    }
    return table, ambiguous


def read_colour_table(path: str | Path, schema: LabelSchema) -> dict[int, int]:
    """Read a colour table: lines `#rrggbb LABEL` or `r g b LABEL` (LABEL = id or name).

    Blank lines and lines starting with `#` that are not a colour are comments.
    Returns {packed rgb: label id}.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CordmapError(f"colour table {path} does not exist") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise CordmapError(f"colour table {path} is not a readable text file ({exc})") from None
    table: dict[int, int] = {}
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        hex_match = re.match(r"^#([0-9a-fA-F]{6})[\s,;:=]+(.+)$", text)
        rgb_match = re.match(r"^(\d{1,3})[\s,]+(\d{1,3})[\s,]+(\d{1,3})[\s,;:=]+(.+)$", text)
        if hex_match:
            rgb = tuple(int(hex_match.group(1)[i : i + 2], 16) for i in (0, 2, 4))
            name = hex_match.group(2)
        elif rgb_match and all(int(v) <= 255 for v in rgb_match.groups()[:3]):
            rgb = tuple(int(v) for v in rgb_match.groups()[:3])
            name = rgb_match.group(4)
        elif not text or (text.startswith("#") and not re.match(r"^#[0-9a-fA-F]{6}\b", text)):
            continue
        else:
            raise CordmapError(
                f"{path} line {number} '{text}' is not '#rrggbb LABEL' or 'r g b LABEL' "
                "(LABEL = label id or name)"
            )
        label = find_label(name.strip().strip("\"'"), schema, where=f"{path} line {number}")
        colour = _pack(rgb)
        if colour == 0:
            raise CordmapError(f"{path} line {number}: black (0 0 0) is the background colour")
        if table.get(colour, label.id) != label.id:
            raise CordmapError(
                f"{path} line {number}: colour {_hex(colour)} is given to two labels "
                f"({schema[table[colour]].name} and {label.name}); give each its own colour"
            )
        table[colour] = label.id
    if not table:
        raise CordmapError(f"colour table {path} maps no colour to a label")
    return table


def find_label(text: str, schema: LabelSchema, *, where: str) -> Label:
    """The label named by id ("121") or name ("cord segment L1", any case, _ for space)."""
    key = " ".join(text.replace("_", " ").split()).lower()
    if key.isdigit():
        if int(key) in schema:
            return schema[int(key)]
    else:
        for label in schema:
            if " ".join(label.name.split()).lower() == key:
                return label
    raise CordmapError(
        f"{where}: '{text}' is no label of the protocol '{schema.name}'; use a label id or "
        "name, e.g. '121' or 'cord segment L1' (see `cordmap protocol`)"
    )


@dataclass(frozen=True)
class _MaskGrid:
    """Where the mask slices of an image go: a slice stack's files, or its axial slices."""

    image: Volume
    stack: SliceStack | None
    native_shape: tuple[int, int, int]

    @classmethod
    def of(cls, image: Volume) -> _MaskGrid:
        stack = getattr(image, "stack", None)
        if stack is not None:
            rows, columns = stack.size
            return cls(image, stack, (rows, columns, len(stack.files)))
        i, j, k = image.shape  # axial slices: rows = anterior->posterior (j), columns = i
        return cls(image, None, (j, i, k))

    @property
    def size(self) -> tuple[int, int]:
        return self.native_shape[:2]

    def mask_files(self, folder: Path) -> list[tuple[Path, int]]:
        files = [
            p
            for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SLICE_SUFFIXES
        ]
        found: dict[int, Path] = {}
        for file in sorted(files, key=natural_key):
            index = self._index(file)
            if index in found:
                raise CordmapError(
                    f"masks {found[index].name} and {file.name} in {folder} both belong to "
                    f"slice {index + 1}; keep one"
                )
            found[index] = file
        return [(file, index) for index, file in sorted(found.items())]

    def _index(self, file: Path) -> int:
        if self.stack is not None:
            return self.stack.slice_index(file)
        number = _slice_number(file)
        count = self.native_shape[2]
        if number is None or not 1 <= number <= count:
            raise CordmapError(
                f"mask {file} needs a slice number 1..{count} in its name (slice 1 is the "
                "most inferior axial slice of the image); rename it"
            )
        return number - 1

    def label_volume(self, native: np.ndarray, schema: LabelSchema) -> LabelVolume:
        if self.stack is not None:
            array, _ = to_canonical(native, self.stack.affine())
        else:  # axial radiological slices of a canonical array: (rows=-A, columns=-R, S)
            array = np.ascontiguousarray(native.transpose(1, 0, 2)[::-1, ::-1, :])
        return LabelVolume(array, self.image.affine, schema=schema)


def _structure_folders(source: Path) -> list[Path]:
    return sorted(
        (p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")), key=natural_key
    )


def _mask_pixels(file: Path, grid: _MaskGrid) -> np.ndarray:
    """A mask image as a 2D array whose non-zero pixels are the structure."""
    with _open(file) as image:
        _check_mask_size(file, image, grid)
        if image.mode in _COLOUR_MODES:
            pixels = np.asarray(image.convert("RGBA"))
            return np.where(pixels[..., 3] > 0, pixels[..., :3].max(axis=-1), 0)
        return np.asarray(image)


def _colour_pixels(file: Path, grid: _MaskGrid) -> np.ndarray:
    """A colour-coded mask as packed 0xRRGGBB integers; background (black / clear) = 0."""
    with _open(file) as image:
        _check_mask_size(file, image, grid)
        if image.mode not in (*_COLOUR_MODES, "L", "1"):
            raise CordmapError(
                f"{file} is a {image.mode} image; colour-coded masks must be 8-bit RGB, "
                "RGBA or palette images"
            )
        pixels = np.asarray(image.convert("RGBA")).astype(np.int64)
    packed = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
    return np.where(pixels[..., 3] > 0, packed, 0)


def _check_mask_size(file: Path, image: Image.Image, grid: _MaskGrid) -> None:
    size = (image.height, image.width)
    if size != grid.size:
        raise CordmapError(
            f"mask {file} is {_size(size)} pixels but the image slices are {_size(grid.size)}; "
            "export the masks at the image's size"
        )


def _read_greyscale(file: Path) -> np.ndarray:
    """One slice as a 2D uint8 / uint16 array, exactly as stored."""
    with _open(file) as image:
        mode = image.mode
        if mode in _GREY_MODES:
            return np.asarray(image).astype(_GREY_MODES[mode])
        if mode == "I":  # 32-bit integer: accepted when it holds 16-bit values
            pixels = np.asarray(image)
            if pixels.min() >= 0 and pixels.max() <= 65535:
                return pixels.astype(np.uint16)
        if mode in _COLOUR_MODES:
            rgb = np.asarray(image.convert("RGB"))
            if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(
                rgb[..., 0], rgb[..., 2]
            ):
                return np.ascontiguousarray(rgb[..., 0])
            row, column = np.argwhere((rgb != rgb[..., :1]).any(axis=-1))[0]
            raise CordmapError(
                f"{file} is a colour image (pixel row {row}, column {column} is RGB "
                f"{tuple(int(v) for v in rgb[row, column])}); export the slices as 8- or "
                "16-bit greyscale"
            )
    raise CordmapError(
        f"{file} is a '{mode}' image; export the slices as 8- or 16-bit greyscale PNG or TIFF"
    )


def _open(file: Path) -> Image.Image:
    try:
        image = Image.open(file)
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise CordmapError(
            f"{file} is not a readable PNG/TIFF image ({exc}); re-export it"
        ) from None
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        image.close()
        raise CordmapError(f"{file} holds {frames} frames; export one file per slice")
    return image


def _image_size(file: Path) -> tuple[int, int]:
    """(rows, columns) of an image, from its header."""
    try:
        with Image.open(file) as image:
            return image.height, image.width
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise CordmapError(
            f"{file} is not a readable PNG/TIFF image ({exc}); re-export it"
        ) from None


def _slice_number(file: Path) -> int | None:
    numbers = re.findall(r"\d+", file.stem)
    return int(numbers[-1]) if numbers else None


def _pack(rgb) -> int:
    r, g, b = (int(v) for v in rgb)
    return (r << 16) | (g << 8) | b


def _hex(colour: int) -> str:
    return f"#{colour:06x}"


def _size(size: tuple[int, int]) -> str:
    return f"{size[1]} x {size[0]}"


def _describe(source) -> str:
    return str(source) if isinstance(source, (str, Path)) else "the given files"
