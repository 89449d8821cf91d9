"""U-Net architecture, training classes, metrics, data preparation and augmentation."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from cordmap.errors import CordmapError
from cordmap.learn.classes import CORD_CLASSES, ClassMapping
from cordmap.learn.data import (
    NOISE_SIGMA,
    REMAP_KNOTS,
    SCALE_RANGE,
    Example,
    PatchDataset,
    crop_patch,
    normalise,
    prepare,
    random_remap,
    resample,
    rotate,
    rotation,
    split_cases,
)
from cordmap.learn.metrics import confusion_matrix, evaluate_arrays, hausdorff95, scores
from cordmap.learn.model import PUBLISHED, SMALL, UNet3D, UNetConfig, count_parameters
from cordmap.learn.train import class_weights, segmentation_loss
from cordmap.protocol.schema import LabelSchema
from cordmap.volume import LabelVolume, Volume

SCHEMA = LabelSchema.load()


# -- architecture --------------------------------------------------------------------------
def _double_conv_parameters(c_in, c_out):
    """Two 3x3x3 convs with bias + instance norm (scale, shift) each."""
    return 27 * c_in * c_out + c_out + 2 * c_out + 27 * c_out * c_out + c_out + 2 * c_out


def test_published_architecture_levels_filters_and_parameters():
    net = UNet3D(PUBLISHED)
    assert PUBLISHED.level_filters == (14, 28, 56, 112, 224)
    assert len(net.encoder) == 4 and len(net.decoder) == 4 and len(net.upsample) == 4
    assert [block[0].in_channels for block in net.encoder] == [1, 14, 28, 56]
    assert [block[0].out_channels for block in net.encoder] == [14, 28, 56, 112]
    assert net.bottleneck[0].out_channels == 224
    assert [up.out_channels for up in net.upsample] == [112, 56, 28, 14]
    assert net.head.out_channels == 7
    f = PUBLISHED.level_filters
    expected = sum(_double_conv_parameters(1 if i == 0 else f[i - 1], f[i]) for i in range(5))
    expected += sum(
        8 * f[i + 1] * f[i] + f[i] + _double_conv_parameters(2 * f[i], f[i]) for i in range(4)
    )
    expected += f[0] * 7 + 7
    assert count_parameters(net) == expected
    assert 4.2e6 < expected < 4.4e6  # "4.3 M parameters" as published


def test_output_has_one_channel_per_class_and_the_input_size():
    net = UNet3D(PUBLISHED).eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 1, 32, 16, 48))
    assert out.shape == (1, 7, 32, 16, 48)
    small = UNet3D(
        UNetConfig(
            classes=3,
            filters=4,
            depth=2,
            input_shape=None,
            input_spacing_mm=(1, 1, 1),
            patch=(8, 8, 8),
        )
    )
    assert small(torch.zeros(2, 1, 8, 12, 4)).shape == (2, 3, 8, 12, 4)


def test_configuration_rejects_sizes_not_divisible_by_the_depth():
    with pytest.raises(CordmapError, match="divisible by 16"):
        UNetConfig(input_shape=(512, 512, 40))
    with pytest.raises(CordmapError, match="divisible by 8"):
        UNetConfig(
            filters=8, depth=3, input_shape=None, input_spacing_mm=(1, 1, 1), patch=(48, 48, 44)
        )
    assert UNetConfig.from_dict(SMALL.to_dict()) == SMALL


# -- training classes ----------------------------------------------------------------------
def test_classes_follow_the_schema():
    mapping = ClassMapping(SCHEMA)
    expected = {
        "cord": ["cord", "segment", "conus"],
        "csf": ["csf"],
        "vertebra": ["vertebra"],
        "disc": ["disc"],
        "dorsal_root": ["dorsal_root"],
        "ventral_root": ["ventral_root"],
    }
    for label in SCHEMA:
        name = next(n for n, structures in expected.items() if label.structure in structures)
        assert mapping.names[mapping.class_of(label.id)] == name
    ids = [
        SCHEMA.find("segment", "L1").id,
        SCHEMA.find("conus").id,
        SCHEMA.find("csf").id,
        SCHEMA.find("vertebra", "S").id,
        SCHEMA.find("disc", "T12-L1").id,
        SCHEMA.find("dorsal_root", "S2", "left").id,
        SCHEMA.find("ventral_root", "L3", "right").id,
    ]
    labels = LabelVolume(np.array(ids + [0], np.uint16).reshape(2, 2, 2), np.eye(4), schema=SCHEMA)
    assert mapping.encode(labels).ravel().tolist() == [1, 1, 2, 3, 4, 5, 6, 0]


def test_decode_writes_level_free_labels_and_skips_the_rest():
    mapping = ClassMapping(SCHEMA)
    classes = np.arange(7, dtype=np.uint8).reshape(7, 1, 1)
    decoded = mapping.decode(classes, np.eye(4))
    assert decoded.array.ravel().tolist() == [
        0,
        SCHEMA.find("cord").id,
        SCHEMA.find("csf").id,
        SCHEMA.find("vertebra").id,
        SCHEMA.find("disc").id,
        SCHEMA.find("dorsal_root").id,
        SCHEMA.find("ventral_root").id,
    ]
    assert mapping.unwritten() == []
    # a protocol without level-free vertebrae, discs and roots cannot write those classes
    levelled = LabelSchema(
        SCHEMA.name,
        SCHEMA.version,
        [
            label
            for label in SCHEMA
            if label.level
            or label.structure not in ("vertebra", "disc", "dorsal_root", "ventral_root")
        ],
    )
    partial = ClassMapping(levelled)
    assert partial.decode(classes, np.eye(4)).array.ravel().tolist() == [
        0,
        SCHEMA.find("cord").id,
        SCHEMA.find("csf").id,
        0,
        0,
        0,
        0,
    ]
    assert partial.unwritten() == ["vertebra", "disc", "dorsal_root", "ventral_root"]


def test_label_without_a_class_is_refused():
    array = np.full((2, 2, 2), SCHEMA.find("csf").id, np.uint16)
    array[0, 0, 0] = 7  # not in the protocol
    labels = LabelVolume(array, np.eye(4), schema=SCHEMA)
    with pytest.raises(CordmapError, match=r"labels of case-7 holds label ids \[7\] that no"):
        ClassMapping(SCHEMA).encode(labels, "labels of case-7")
    array[0, 0, 0] = SCHEMA.find("segment", "L2").id
    cord_only = ClassMapping(SCHEMA, CORD_CLASSES).encode(labels)  # the rest is background
    assert cord_only.ravel().tolist() == [1, 0, 0, 0, 0, 0, 0, 0]


def test_mapping_for_another_protocol_version_is_refused():
    data = ClassMapping(SCHEMA).to_dict()
    data["schema"]["version"] = "0.9"
    with pytest.raises(CordmapError, match="trained for protocol .* version 0.9"):
        ClassMapping.from_dict(data, SCHEMA)
    assert ClassMapping.from_dict(ClassMapping(SCHEMA).to_dict(), SCHEMA).names[1] == "cord"


def test_mapping_serves_later_minor_versions_of_its_protocol():
    """A minor version only adds labels: a model trained on 1.0.0 maps a 1.x case."""
    data = ClassMapping(SCHEMA).to_dict()
    data["schema"]["version"] = SCHEMA.version.split(".")[0] + ".0.0"
    mapping = ClassMapping.from_dict(data, SCHEMA)
    assert mapping.class_of(SCHEMA.find("segment", "L2").id) == mapping.names.index("cord")


# -- metrics -------------------------------------------------------------------------------
def test_metrics_on_a_hand_made_example():
    reference = np.array([0, 0, 1, 1, 2, 2])
    prediction = np.array([0, 1, 1, 1, 2, 0])
    confusion = confusion_matrix(reference, prediction, 3)
    assert confusion.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    result = scores(confusion, ["background", "cord", "csf"])
    cord, csf = result["per_class"]["cord"], result["per_class"]["csf"]
    assert cord["iou"] == pytest.approx(2 / 3) and cord["dice"] == pytest.approx(0.8)
    assert csf["iou"] == pytest.approx(1 / 2) and csf["dice"] == pytest.approx(2 / 3)
    assert result["mean_iou"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert result["pixel_accuracy"] == pytest.approx(4 / 6)


def test_absent_class_has_no_score_and_is_left_out_of_the_mean():
    result = scores(confusion_matrix(np.array([0, 1]), np.array([0, 1]), 3), ["bg", "a", "b"])
    assert result["per_class"]["b"]["dice"] is None
    assert result["mean_iou"] == 1.0


def test_hausdorff95_in_millimetres():
    reference = np.zeros((5, 5, 9), bool)
    prediction = np.zeros_like(reference)
    reference[2, 2, 2] = prediction[2, 2, 4] = True
    assert hausdorff95(reference, prediction, (1.0, 1.0, 3.0)) == pytest.approx(6.0)
    assert hausdorff95(reference, np.zeros_like(reference), (1, 1, 1)) is None
    full = evaluate_arrays(reference.astype(int), prediction.astype(int), ["bg", "x"], (1, 1, 3))
    assert full["per_class"]["x"]["hd95_mm"] == pytest.approx(6.0)
    assert full["per_class"]["x"]["dice"] == 0.0


# -- data ----------------------------------------------------------------------------------
def test_nan_intensities_are_refused():
    array = np.ones((4, 4, 4), np.float32)
    array[1, 2, 3] = np.nan
    with pytest.raises(CordmapError, match="case-3 has NaN"):
        normalise(array, "case-3")


def test_image_and_labels_of_different_size_are_refused():
    image = Volume(np.zeros((4, 4, 4), np.float32), np.eye(4))
    labels = LabelVolume(np.zeros((4, 4, 5), np.uint16), np.eye(4), schema=SCHEMA)
    with pytest.raises(CordmapError, match="labels of case-9 do not match the image grid"):
        prepare("case-9", image, labels, ClassMapping(SCHEMA), SMALL)


def test_prepare_resamples_to_the_model_spacing():
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    array = np.random.default_rng(0).normal(size=(40, 20, 10)).astype(np.float32)
    labels = np.zeros((40, 20, 10), np.uint16)
    labels[10:30, 4:16, 2:8] = SCHEMA.find("csf").id
    example = prepare(
        "c",
        Volume(array, affine),
        LabelVolume(labels, affine, schema=SCHEMA),
        ClassMapping(SCHEMA),
        SMALL,
    )
    assert example.image.shape == example.target.shape == (20, 10, 20)
    assert example.spacing == (1.0, 1.0, 1.0)
    # the labelled block keeps its extent in mm: 10 x 6 x 12 mm
    assert np.ptp(np.argwhere(example.target == 2), axis=0).tolist() == [9, 5, 11]


def test_resample_round_trip_keeps_the_field_of_view():
    block = np.zeros((12, 12, 6))
    block[3:9, 3:9, 1:5] = 1
    up = resample(block, (24, 24, 18), order=0)
    assert up.sum() == block.sum() * 2 * 2 * 3
    assert np.array_equal(resample(up, block.shape, order=0), block)


def test_split_is_seeded_recorded_and_independent_of_order():
    names = [f"case-{i}" for i in range(10)]
    split = split_cases(names, seed=3)
    assert split == split_cases(list(reversed(names)), seed=3)
    assert sorted(sum(split.values(), [])) == sorted(names)
    assert len(split["val"]) == 2 and len(split["test"]) == 2
    assert split != split_cases(names, seed=4)
    assert split_cases(["only"], seed=0) == {"val": [], "test": [], "train": ["only"]}
    with pytest.raises(CordmapError, match="training set is empty"):
        split_cases([], seed=0)


def _ball(shape, centre_mm, radius_mm, spacing):
    grid = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    return sum((g - c) ** 2 for g, c in zip(grid, centre_mm)) <= radius_mm**2


def test_rotation_moves_content_as_the_rotation_in_millimetres():
    spacing = (1.0, 1.0, 2.0)
    shape = (41, 41, 21)
    centre = (np.array(shape) - 1) / 2 * spacing
    point = centre + np.array([8.0, 0.0, 6.0])
    ball = _ball(shape, point, 3.0, spacing).astype(np.float32)
    vertical, left_right = math.pi / 18, -math.pi / 45
    matrix = rotation(vertical, left_right)
    rotated = rotate(ball, matrix, spacing, order=1)
    centroid = (np.argwhere(rotated > 0.5) * spacing).mean(axis=0)
    expected = centre + matrix @ (point - centre)
    assert np.allclose(centroid, expected, atol=0.4)
    # about the vertical axis only: height is unchanged, the point turns in the axial plane
    turned = rotate(ball, rotation(vertical, 0.0), spacing, order=1)
    c = (np.argwhere(turned > 0.5) * spacing).mean(axis=0) - centre
    assert c[2] == pytest.approx(6.0, abs=0.3)
    assert math.atan2(c[1], c[0]) == pytest.approx(vertical, abs=0.03)


def test_augmented_patches_keep_image_and_labels_aligned():
    spacing = (1.0, 1.0, 2.0)
    shape = (40, 40, 30)
    x, y, _ = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    target = ((x - 22) ** 2 + (y - 17) ** 2 <= 9).astype(np.uint8)  # an off-centre rod
    example = Example("rod", target.astype(np.float32), target, spacing)
    rng = np.random.default_rng(1)
    for _ in range(5):
        image, labels = crop_patch(example, (16, 16, 16), rng, foreground=1.0, augment=True)
        assert labels.any()
        predicted = image > 0.5
        dice = 2 * (predicted & (labels > 0)).sum() / (predicted.sum() + (labels > 0).sum())
        assert dice > 0.9
        background = image[~_dilate(labels)]  # away from the rod: noise only
        assert background.std() == pytest.approx(NOISE_SIGMA, rel=0.15)


def _dilate(mask):
    from scipy import ndimage

    return ndimage.binary_dilation(mask > 0, iterations=2)


def _rod(shape, centre_mm, spacing=(1.0, 1.0, 2.0)) -> Example:
    """A rod of radius 4 mm along Z whose image is its label (1 inside, 0 outside)."""
    x, y, _ = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    target = ((x - centre_mm[0]) ** 2 + (y - centre_mm[1]) ** 2 <= 16).astype(np.uint8)
    return Example("rod", target.astype(np.float32), target, spacing)


def _image_dice(image, labels) -> float:
    predicted = image > 0.5
    return 2 * (predicted & (labels > 0)).sum() / (predicted.sum() + (labels > 0).sum())


def test_extra_augmentations_keep_labels_aligned():
    example = _rod((40, 40, 30), (20, 19))
    image, labels = crop_patch(
        example, (16, 16, 16), np.random.default_rng(2), 1.0, True, ("elastic",)
    )
    assert _image_dice(image, labels) > 0.9
    plain = crop_patch(example, (16, 16, 16), np.random.default_rng(3), 1.0, True)
    varied = crop_patch(
        example, (16, 16, 16), np.random.default_rng(3), 1.0, True, ("bias", "intensity")
    )
    assert np.array_equal(plain[1], varied[1]) and not np.allclose(plain[0], varied[0])
    with pytest.raises(CordmapError, match="unknown augmentations"):
        crop_patch(example, (16, 16, 16), np.random.default_rng(3), 1.0, True, ("blur",))


def test_remap_swaps_the_order_of_tissue_brightness_and_keeps_air_dark():
    """A T2-like image (air 0, cord 0.3, CSF 0.9): random curves make the CSF darker than
    the cord on some patches and brighter on others; air stays under 0.1; the same
    intensity maps to the same value (a curve, not noise)."""
    image = np.repeat(np.array([0.0, 0.3, 0.9], np.float32), 4)
    orders, airs = set(), []
    for seed in range(40):
        out = random_remap(image, np.random.default_rng(seed))
        air, cord, csf = out[0], out[4], out[8]
        assert np.array_equal(out[:4], np.full(4, air)) and np.array_equal(out[8:], np.full(4, csf))
        orders.add(bool(csf > cord))
        airs.append(air)
    assert orders == {True, False}
    assert max(airs) < 0.1
    assert REMAP_KNOTS >= 4  # the curve can rise and fall between the tissues


def test_remap_changes_real_images_only():
    """`remap` acts on a share of a real image's patches (the rod, 1 on 0, comes out at
    another level), not on all, and leaves the labels aligned."""
    example = _rod((40, 40, 30), (20, 19))
    levels = []
    for seed in range(12):
        image, labels = crop_patch(
            example, (16,) * 3, np.random.default_rng(seed), 1.0, True, ("remap",)
        )
        inside = ndimage.binary_erosion(labels > 0, iterations=1)
        outside = ~_dilate(labels)
        assert image[inside].mean() != pytest.approx(image[outside].mean(), abs=0.02)
        levels.append(image[inside].mean())
    remapped = [abs(level - 1.0) > 0.15 for level in levels]
    assert 0 < sum(remapped) < len(levels)


def test_scale_augmentation_resizes_content_with_its_labels():
    """A rod of radius 4 mm: its section grows by the drawn scale squared, labels follow."""
    example = _rod((48, 48, 30), (24, 23))
    areas = []
    for seed in range(6):
        image, labels = crop_patch(
            example, (32, 32, 16), np.random.default_rng(seed), 1.0, True, ("scale",)
        )
        assert _image_dice(image, labels) > 0.9
        areas.append((labels[:, :, 8] > 0).sum() / (math.pi * 16))
    low, high = SCALE_RANGE
    assert all(0.85 * low**2 < a < 1.15 * high**2 for a in areas)
    assert max(areas) - min(areas) > 0.2  # the scale is drawn, not fixed


def test_class_weights_favour_thin_classes_and_weight_the_loss():
    """Weights from the patches training draws: (background / class voxels) ** 0.5."""
    target = np.zeros((10, 10, 10), np.uint8)
    target[:2] = 1  # 195 voxels
    target[0, 0, :5] = 2  # 5 voxels
    example = Example("a", target.astype(np.float32), target, (1, 1, 1))
    patches = PatchDataset([example], (20, 20, 20), samples=4, seed=0, foreground=0.5)
    weights = class_weights(patches, 4, probes=3)  # each patch: the whole volume + padding
    background = 20**3 - 200
    assert weights == pytest.approx(
        [1.0, (background / 195) ** 0.5, (background / 5) ** 0.5, 1.0], abs=1e-4
    )
    logits = torch.randn(1, 4, 10, 10, 10)
    labels = torch.from_numpy(target.astype(np.int64))[None]
    w = torch.tensor(weights, dtype=torch.float32)
    assert torch.isclose(
        segmentation_loss(logits, labels, weights=w),
        torch.nn.functional.cross_entropy(logits, labels, weight=w),
    )
    # partial labels: a background voxel may be class 3; weighted mean of the marginal NLL
    log_p = torch.log_softmax(logits, 1)
    nll = torch.where(
        labels == 0, -torch.logsumexp(log_p[:, [0, 3]], 1), -log_p.gather(1, labels[:, None])[:, 0]
    )
    expected = (nll * w[labels]).sum() / w[labels].sum()
    assert torch.isclose(segmentation_loss(logits, labels, torch.tensor([1 << 3]), w), expected)


def test_patches_are_centred_on_each_class_equally_often():
    target = np.zeros((40, 40, 40), np.uint8)
    target[5:35, 5:35, 5:35] = 2  # a large class
    target[30, 30, 30] = 1  # one voxel of a rare class, inside it
    example = Example("two", np.zeros(target.shape, np.float32), target, (1.0, 1.0, 1.0))
    rng = np.random.default_rng(0)
    hits = sum((crop_patch(example, (4, 4, 4), rng, 1.0, False)[1] == 1).any() for _ in range(200))
    assert 70 <= hits <= 130  # the rare class is drawn half the time, not 1 in 27,000


def test_keep_largest_piece_clears_the_other_pieces_of_that_class_only():
    from cordmap.learn.infer import keep_largest_piece

    class_map = np.zeros((12, 12, 12), np.uint8)
    class_map[1:4, 1:4, 1:9] = 1  # the largest cord piece: 72 voxels
    class_map[8:10, 8:10, 8:10] = 1  # a stray piece: 8 voxels
    class_map[5, 5, 5] = 1  # touches nothing (not even diagonally)
    class_map[8:10, 1:3, 1:3] = 2  # another class keeps all its pieces
    class_map[1, 10, 10] = 2
    keep_largest_piece(class_map, 1)
    assert (class_map == 1).sum() == 72 and class_map[1:4, 1:4, 1:9].all()
    assert (class_map == 2).sum() == 9
    # 26-connectivity: a diagonal neighbour belongs to the piece
    diagonal = np.zeros((4, 4, 4), np.uint8)
    diagonal[0, 0, 0] = diagonal[1, 1, 1] = 1
    assert (keep_largest_piece(diagonal, 1) == 1).sum() == 2


def test_unknown_voxels_are_left_out_of_the_loss():
    from cordmap.learn.data import UNKNOWN

    logits = torch.randn(1, 3, 6, 6, 6)
    labels = torch.randint(0, 3, (1, 6, 6, 6))
    masked = labels.clone()
    masked[0, :3] = UNKNOWN
    expected = torch.nn.functional.cross_entropy(
        logits[..., 3:, :, :].permute(0, 1, 2, 3, 4), labels[:, 3:], reduction="mean"
    )
    assert torch.isclose(segmentation_loss(logits, masked), expected)
    # with partial labels too: unknown voxels weigh nothing
    bits = torch.tensor([1 << 2])
    assert torch.isclose(
        segmentation_loss(logits, masked, bits),
        segmentation_loss(logits[:, :, 3:], labels[:, 3:], bits),
    )


def test_lumbar_targets_say_only_what_the_bodies_tell():
    """Two labelled bodies: the gap between them is disc, the front is background, the
    rest unknown."""
    from cordmap.learn.classes import SPINE_CLASSES
    from cordmap.learn.data import UNKNOWN
    from cordmap.learn.recipe import lumbar_target

    mapping = ClassMapping(SCHEMA, SPINE_CLASSES)
    vertebra, disc = mapping.names.index("vertebra"), mapping.names.index("disc")
    target = np.zeros((20, 60, 80), np.uint8)
    target[5:15, 30:45, 10:35] = vertebra  # lower body
    target[5:15, 30:45, 43:68] = vertebra  # upper body, 8 mm above
    out = lumbar_target(target, mapping, (1.0, 1.0, 1.0))
    assert (out[5:15, 30:45, 35:43] == disc).all()
    assert (out[target == vertebra] == vertebra).all()
    assert (out[:, 51:, 10:68] == 0).all()  # in front of the bodies
    assert (out[:, 10:29, 10:68] == UNKNOWN).all()  # canal, posterior elements
    assert (out[:, :, :10] == UNKNOWN).all()  # below the lowest body (the sacrum)


def test_sliding_windows_never_exceed_the_image_and_skip_the_air():
    from cordmap.learn.infer import body_box, fitted_window

    assert fitted_window((96, 96, 96), (52, 60, 300), 8) == (56, 64, 96)
    image = np.zeros((40, 50, 30), np.float32)
    image[10:20, 5:45, 3:27] = 1.0  # the body; air around it
    box = body_box(image, (1.0, 1.0, 1.0))
    inside = [(b.start, b.stop) for b in box]
    assert inside[0][0] <= 10 and inside[0][1] >= 20 and inside[0] != (0, 40)
    assert inside[2] == (0, 30)  # within the margin of both ends


def test_class_maps_are_upsampled_as_the_probabilities_would_be_resampled():
    from cordmap.learn.data import resample
    from cordmap.learn.infer import upsampled_classes

    rng = np.random.default_rng(3)
    probabilities = ndimage.gaussian_filter(rng.random((4, 12, 10, 8)), (0, 1.5, 1.5, 1.5))
    probabilities = (probabilities / probabilities.sum(axis=0)).astype(np.float32)
    shape = (37, 30, 21)
    expected = np.argmax(np.stack([resample(p, shape, order=1) for p in probabilities]), axis=0)
    got = upsampled_classes(probabilities, shape)
    assert got.shape == shape and got.dtype == np.uint8
    assert (got == expected).mean() > 0.999
