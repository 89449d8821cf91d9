"""Slice stacks and per-slice annotation masks: exact arrays, documented orientation, errors."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cordmap.errors import CordmapError
from cordmap.io.slices import (
    list_slices,
    read_colour_masks,
    read_colour_table,
    read_masks,
    read_slice_stack,
    read_structure_masks,
)
from cordmap.protocol.schema import LabelSchema
from cordmap.volume import LabelVolume, Volume

SPACING = (0.5, 0.8, 3.0)  # between columns, between rows, between slices (mm)
ROWS, COLUMNS, SLICES = 6, 5, 11


@pytest.fixture(scope="module")
def schema() -> LabelSchema:
    return LabelSchema.load()


def write_stack(folder: Path, native: np.ndarray, name="img{}.png", first=1) -> list[Path]:
    """Write native[:, :, n] (rows, columns) as one file per slice, numbered from `first`."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for n in range(native.shape[2]):
        path = folder / name.format(n + first)
        Image.fromarray(native[:, :, n]).save(path)
        files.append(path)
    return files


def native_slice(labels: np.ndarray, k: int) -> np.ndarray:
    """Axial slice k of a canonical RAS+ array as a radiological image (row 0 anterior,
    column 0 patient right)."""
    return np.ascontiguousarray(labels[::-1, ::-1, k].T)


def checksum(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def image_stack(tmp_path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(7)
    native = rng.integers(0, 200, (ROWS, COLUMNS, SLICES), dtype=np.uint8)
    folder = tmp_path / "image"
    write_stack(folder, native)
    return folder, native


# -- slice stacks ----------------------------------------------------------------------
def test_natural_sort_puts_img2_before_img10(tmp_path):
    write_stack(tmp_path, np.zeros((2, 2, 12), np.uint8))
    names = [p.name for p in list_slices(tmp_path)]
    assert names == [f"img{n}.png" for n in range(1, 13)]


def test_png_8bit_stack_reproduces_the_array_in_radiological_axial_orientation(image_stack):
    folder, native = image_stack
    before = checksum(folder)
    volume = read_slice_stack(folder, spacing=SPACING)
    assert volume.array.dtype == np.uint8
    assert volume.shape == (COLUMNS, ROWS, SLICES)
    assert volume.spacing == pytest.approx(SPACING)
    # canonical voxel (i -> R, j -> A, k -> S) <- pixel (row = posterior, column = left, file)
    for k in range(SLICES):
        assert np.array_equal(native_slice(volume.array, k), native[:, :, k])
    assert checksum(folder) == before


@pytest.mark.parametrize("row, column, file", [(0, 0, 0), (2, 3, 7), (ROWS - 1, COLUMNS - 1, 10)])
def test_marker_pixel_lands_at_documented_world_position(tmp_path, row, column, file):
    native = np.zeros((ROWS, COLUMNS, SLICES), np.uint8)
    native[row, column, file] = 255
    write_stack(tmp_path, native)
    volume = read_slice_stack(tmp_path, spacing=SPACING, origin=(10.0, 20.0, 30.0))
    voxel = np.argwhere(volume.array == 255)[0]
    x, y, z = volume.world(voxel)
    # column 0 is the patient's right: x falls by the column spacing per column
    assert x == pytest.approx(10.0 - column * SPACING[0])
    # row 0 is anterior: y falls by the row spacing per row
    assert y == pytest.approx(20.0 - row * SPACING[1])
    # the first file is the most inferior slice
    assert z == pytest.approx(30.0 + file * SPACING[2])


def test_tiff_16bit_stack_is_exact_and_reverse_puts_first_file_superior(tmp_path):
    rng = np.random.default_rng(3)
    native = rng.integers(0, 65535, (ROWS, COLUMNS, 4), dtype=np.uint16)
    native[1, 2, 0] = 65535  # marker on the first file
    native[native == 65535] = 65534
    native[1, 2, 0] = 65535
    write_stack(tmp_path, native, name="slice_{:03d}.tif")
    volume = read_slice_stack(tmp_path, spacing=SPACING)
    assert volume.array.dtype == np.uint16
    for k in range(4):
        assert np.array_equal(native_slice(volume.array, k), native[:, :, k])

    reversed_volume = read_slice_stack(tmp_path, spacing=SPACING, reverse=True)
    assert np.array_equal(reversed_volume.array, volume.array[:, :, ::-1])
    marker = reversed_volume.world(np.argwhere(reversed_volume.array == 65535)[0])
    top = reversed_volume.world([0, 0, reversed_volume.shape[2] - 1])
    assert marker[2] == pytest.approx(top[2])  # the first file is now the most superior


@pytest.mark.parametrize(
    "orientation, row_dir, column_dir, file_dir",
    [
        ("coronal", (0, 0, -1), (-1, 0, 0), (0, 1, 0)),
        ("sagittal", (0, 0, -1), (0, -1, 0), (1, 0, 0)),
    ],
)
def test_coronal_and_sagittal_orientation(tmp_path, orientation, row_dir, column_dir, file_dir):
    native = np.zeros((ROWS, COLUMNS, 3), np.uint8)
    native[0, 0, 0] = 50
    native[ROWS - 1, 0, 0] = 100  # one row further
    native[0, COLUMNS - 1, 0] = 150  # one column further
    native[0, 0, 2] = 200  # two files further
    write_stack(tmp_path, native)
    volume = read_slice_stack(tmp_path, spacing=SPACING, orientation=orientation)

    def at(value):
        return volume.world(np.argwhere(volume.array == value)[0])

    base = at(50)
    assert at(100) - base == pytest.approx(np.multiply(row_dir, (ROWS - 1) * SPACING[1]))
    assert at(150) - base == pytest.approx(np.multiply(column_dir, (COLUMNS - 1) * SPACING[0]))
    assert at(200) - base == pytest.approx(np.multiply(file_dir, 2 * SPACING[2]))


def test_greyscale_rgb_is_accepted_and_true_colour_refused(tmp_path):
    grey = np.random.default_rng(1).integers(0, 255, (ROWS, COLUMNS), dtype=np.uint8)
    Image.fromarray(np.dstack([grey] * 3)).save(tmp_path / "a1.png")
    Image.fromarray(np.dstack([grey] * 3)).save(tmp_path / "a2.png")
    volume = read_slice_stack(tmp_path, spacing=SPACING)
    assert np.array_equal(native_slice(volume.array, 0), grey)

    colour = np.dstack([grey] * 3)
    colour[2, 1] = (255, 0, 0)
    Image.fromarray(colour).save(tmp_path / "a3.png")
    with pytest.raises(CordmapError, match=r"a3\.png is a colour image .*row 2, column 1"):
        read_slice_stack(tmp_path, spacing=SPACING)


def test_stack_errors_name_the_problem(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a slice")
    with pytest.raises(CordmapError, match="holds no PNG or TIFF slices"):
        read_slice_stack(empty, spacing=SPACING)

    mixed = tmp_path / "mixed"
    write_stack(mixed, np.zeros((4, 4, 3), np.uint8))
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(mixed / "img4.png")
    with pytest.raises(CordmapError, match=r"img4\.png is 5 x 4 pixels but img1\.png is 4 x 4"):
        read_slice_stack(mixed, spacing=SPACING)

    with pytest.raises(CordmapError, match="carry no voxel size; pass the spacing"):
        read_slice_stack(mixed)

    broken = tmp_path / "broken"
    write_stack(broken, np.zeros((4, 4, 2), np.uint8))
    (broken / "img3.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(CordmapError, match=r"img3\.png is not a readable PNG/TIFF image"):
        read_slice_stack(broken, spacing=SPACING)

    depths = tmp_path / "depths"
    write_stack(depths, np.zeros((4, 4, 2), np.uint8))
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(depths / "img3.tif")
    with pytest.raises(CordmapError, match=r"img3\.tif is 16-bit but img1\.png is 8-bit"):
        read_slice_stack(depths, spacing=SPACING)

    with pytest.raises(CordmapError, match="three positive mm values"):
        read_slice_stack(depths, spacing=(0.5, 0, 3))

    pages = tmp_path / "pages"
    pages.mkdir()
    frames = [Image.fromarray(np.zeros((4, 4), np.uint8)) for _ in range(3)]
    frames[0].save(pages / "volume.tif", save_all=True, append_images=frames[1:])
    with pytest.raises(
        CordmapError, match=r"volume\.tif holds 3 frames; export one file per slice"
    ):
        read_slice_stack(pages, spacing=SPACING)

    floats = tmp_path / "floats"
    floats.mkdir()
    Image.fromarray(np.zeros((4, 4), np.float32)).save(floats / "f1.tif")
    with pytest.raises(
        CordmapError, match=r"f1\.tif is a 'F' image; export the slices as 8- or 16-bit"
    ):
        read_slice_stack(floats, spacing=SPACING)


# -- annotation masks --------------------------------------------------------------------
def known_labels(shape, schema) -> np.ndarray:
    """A small canonical label volume: CSF ring, cord segments L1/L2, a root, a vertebra."""
    labels = np.zeros(shape, np.uint16)
    labels[1:4, 1:5, :] = schema.find("csf").id
    labels[2, 2:4, 0:5] = schema.find("segment", "L1").id
    labels[2, 2:4, 5:9] = schema.find("segment", "L2").id
    labels[0, 4, 2:7] = schema.find("dorsal_root", "L2", "left").id
    labels[4, 0:2, 8:10] = schema.find("vertebra", "L1").id
    return labels


def test_masks_by_structure_folder_reproduce_the_label_volume(image_stack, schema, tmp_path):
    folder, _ = image_stack
    image = read_slice_stack(folder, spacing=SPACING)
    expected = known_labels(image.shape, schema)
    masks = tmp_path / "masks"
    folder_names = {
        schema.find("csf").id: "csf",  # by name, any case
        schema.find("segment", "L1").id: "121",  # by id
        schema.find("segment", "L2").id: "Cord_Segment_L2",  # underscores
        schema.find("dorsal_root", "L2", "left").id: "dorsal root L2 left",
        schema.find("vertebra", "L1").id: "41",
    }
    for label_id, name in folder_names.items():
        for k in range(image.shape[2]):
            mask = native_slice(expected == label_id, k)
            if mask.any():  # slices without the structure have no file
                (masks / name).mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask.astype(np.uint8) * 255).save(masks / name / f"img{k + 1}.png")
    before = checksum(masks)
    labels = read_masks(masks, image, schema)
    assert isinstance(labels, LabelVolume)
    assert labels.same_grid(image)
    assert np.array_equal(labels.array, expected)
    assert checksum(masks) == before


def test_masks_by_colour_with_protocol_colours_and_with_a_colour_table(
    image_stack, schema, tmp_path
):
    folder, _ = image_stack
    image = read_slice_stack(folder, spacing=SPACING)
    expected = known_labels(image.shape, schema)
    expected[expected == schema.find("vertebra", "L1").id] = 0  # vertebra colours are shared

    by_protocol = tmp_path / "protocol"
    by_protocol.mkdir()
    for k in range(image.shape[2]):
        rgb = np.zeros((ROWS, COLUMNS, 3), np.uint8)
        for label_id in np.unique(expected[:, :, k]):
            if label_id:
                rgb[native_slice(expected == label_id, k)] = schema[label_id].colour
        Image.fromarray(rgb).save(by_protocol / f"mask_{k + 1:02d}.png")  # matched by number
    labels = read_colour_masks(by_protocol, image, schema)
    assert np.array_equal(labels.array, expected)

    # own colours through a table: hex and "r g b" lines, ids and names
    expected = known_labels(image.shape, schema)
    own = {
        schema.find("csf").id: (0, 0, 255),
        schema.find("segment", "L1").id: (255, 0, 0),
        schema.find("segment", "L2").id: (0, 255, 0),
        schema.find("dorsal_root", "L2", "left").id: (255, 255, 0),
        schema.find("vertebra", "L1").id: (200, 200, 200),
    }
    table = tmp_path / "colours.txt"
    table.write_text(
        "# my colours\n#0000ff CSF\n255 0 0 121\n#00ff00 cord segment L2\n"
        "255,255,0, dorsal root L2 left\n\n200 200 200 vertebra L1\n"
    )
    by_table = tmp_path / "table"
    by_table.mkdir()
    for k in range(image.shape[2]):
        rgba = np.zeros((ROWS, COLUMNS, 4), np.uint8)
        for label_id, colour in own.items():
            rgba[native_slice(expected == label_id, k)] = (*colour, 255)
        if rgba.any():
            Image.fromarray(rgba).save(by_table / f"img{k + 1}.png")
    labels = read_masks(by_table, image, schema, colour_table=table)
    assert np.array_equal(labels.array, expected)


def test_masks_of_a_nifti_image_are_its_axial_slices_numbered_from_one(schema, tmp_path):
    image = Volume(np.zeros((COLUMNS, ROWS, SLICES), np.float32), np.diag([0.7, 0.7, 2.5, 1]))
    expected = known_labels(image.shape, schema)
    masks = tmp_path / "masks" / "cord segment L1"
    masks.mkdir(parents=True)
    l1 = schema.find("segment", "L1").id
    for k in range(SLICES):
        Image.fromarray(native_slice(expected == l1, k).astype(np.uint8)).save(
            masks / f"{k + 1}.tif"
        )
    labels = read_structure_masks(masks.parent, image, schema)
    assert np.array_equal(labels.array, np.where(expected == l1, l1, 0))
    assert np.array_equal(labels.affine, image.affine)

    Image.fromarray(np.zeros((ROWS, COLUMNS), np.uint8)).save(masks / "0.tif")
    with pytest.raises(CordmapError, match=r"0\.tif needs a slice number 1\.\.11"):
        read_structure_masks(masks.parent, image, schema)


def test_mask_errors_are_clear(image_stack, schema, tmp_path):
    folder, _ = image_stack
    image = read_slice_stack(folder, spacing=SPACING)
    one = np.zeros((ROWS, COLUMNS), np.uint8)
    one[2, 2] = 1

    wrong_size = tmp_path / "size" / "CSF"
    wrong_size.mkdir(parents=True)
    Image.fromarray(np.ones((ROWS + 1, COLUMNS), np.uint8)).save(wrong_size / "img3.png")
    with pytest.raises(
        CordmapError,
        match=r"mask .*img3\.png is 5 x 7 pixels but the image "
        r"slices are 5 x 6",
    ):
        read_masks(wrong_size.parent, image, schema)

    overlap = tmp_path / "overlap"
    for name in ("CSF", "cord segment L1"):
        (overlap / name).mkdir(parents=True)
        Image.fromarray(one).save(overlap / name / "img4.png")
    with pytest.raises(
        CordmapError,
        match=r"'CSF' and 'cord segment L1' overlap on 1 pixels of "
        r"slice img4\.png",
    ):
        read_masks(overlap, image, schema)

    unknown_folder = tmp_path / "unknown" / "spleen"
    unknown_folder.mkdir(parents=True)
    with pytest.raises(CordmapError, match="'spleen' is no label of the protocol"):
        read_masks(unknown_folder.parent, image, schema)

    colours = tmp_path / "colours"
    colours.mkdir()
    rgb = np.zeros((ROWS, COLUMNS, 3), np.uint8)
    rgb[1, 1] = (12, 34, 56)
    Image.fromarray(rgb).save(colours / "img5.png")
    with pytest.raises(CordmapError, match=r"colour #0c2238 \(1 pixels\) in .*img5\.png is not in"):
        read_masks(colours, image, schema)

    # a user protocol giving two labels one colour: the default colour table is ambiguous
    t8, t10 = schema.find("vertebra", "T8"), schema.find("vertebra", "T10")
    shared = LabelSchema(
        schema.name,
        schema.version,
        [replace(label, colour=t10.colour) if label.id == t8.id else label for label in schema],
    )
    rgb[1, 1] = t10.colour
    Image.fromarray(rgb).save(colours / "img5.png")
    with pytest.raises(
        CordmapError, match=r"used by several labels .*vertebra T8.*pass a colour table"
    ):
        read_masks(colours, image, shared)

    stray = tmp_path / "stray" / "CSF"
    stray.mkdir(parents=True)
    Image.fromarray(one).save(stray / "scan.png")
    with pytest.raises(CordmapError, match=r"scan\.png matches no image slice"):
        read_masks(stray.parent, image, schema)


def test_colour_table_errors(schema, tmp_path):
    table = tmp_path / "table.txt"
    table.write_text("#ff0000 cord segment L1\n#ff0000 cord segment L2\n")
    with pytest.raises(CordmapError, match=r"line 2: colour #ff0000 is given to two labels"):
        read_colour_table(table, schema)
    table.write_text("#ff0000\n")
    with pytest.raises(CordmapError, match=r"line 1 '#ff0000' is not '#rrggbb LABEL'"):
        read_colour_table(table, schema)
    table.write_text("1 2 3 999\n")
    with pytest.raises(CordmapError, match=r"line 1: '999' is no label"):
        read_colour_table(table, schema)
