"""Where the cord is in a segmentation (anatomy.cord_extent): the cauda equina taken for
cord is cut at the conus, whatever the contrast, an injured stretch higher up is not, and
cord outside the canal is dropped; measured against the phantom's exact labels."""

import numpy as np
import pytest

from cordmap.anatomy.cord_extent import tidy_cord
from cordmap.anatomy.phantom import make_phantom
from cordmap.protocol.schema import CORD_CLASSES
from cordmap.volume import LabelVolume, Volume


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(0)


def _ids(schema, *classes):
    return [label.id for label in schema.of_class(*classes)]


def _tip(labels) -> float:
    cord = np.argwhere(np.isin(np.asarray(labels.array), _ids(labels.schema, *CORD_CLASSES)))
    return float(labels.world(cord)[:, 2].min())


def _with_cauda_as_cord(labels, length_mm=80.0) -> LabelVolume:
    """The labels with a cord-wide column of the thecal sac's CSF below the conus labelled
    cord, as a network taking the cauda equina for cord does."""
    array = np.asarray(labels.array).copy()
    csf_ids = _ids(labels.schema, "csf")
    tip = _tip(labels)
    for k in range(array.shape[2]):
        s = labels.world(np.array([[0, 0, k]]))[0, 2]
        if tip - length_mm < s < tip:
            csf = np.argwhere(np.isin(array[:, :, k], csf_ids))
            near = csf[np.hypot(*(csf - csf.mean(axis=0)).T) * labels.spacing[0] < 3.5]
            array[near[:, 0], near[:, 1], k] = labels.schema.find("cord").id
    return LabelVolume(array, labels.affine, schema=labels.schema)


def test_exact_labels_are_left_as_they_are(phantom):
    found = tidy_cord(phantom.image, phantom.labels)
    assert found.labels is phantom.labels and found.notes() == []
    assert found.tip_s == pytest.approx(_tip(phantom.labels))


@pytest.mark.parametrize("contrast", ["T2-like", "T1-like"])
def test_the_cauda_taken_for_cord_is_cut_at_the_conus(phantom, contrast):
    labels = _with_cauda_as_cord(phantom.labels)
    before = np.asarray(labels.array).copy()
    image = phantom.image
    if contrast == "T1-like":  # the cord brighter than the CSF instead of darker
        image = Volume(-np.asarray(image.array, dtype=float), image.affine)
    found = tidy_cord(image, labels)
    truth = _tip(phantom.labels)
    assert abs(found.tip_s - truth) <= 5.0
    assert found.tip_s == pytest.approx(_tip(found.labels))
    assert found.cauda_mm > 70.0 and "cauda equina" in found.notes()[0]
    changed = np.asarray(found.labels.array) != before
    assert set(np.unique(np.asarray(found.labels.array)[changed])) == set(
        _ids(labels.schema, "csf")[:1]
    )
    np.testing.assert_array_equal(np.asarray(labels.array), before)  # input untouched


def test_an_injured_stretch_with_cord_below_is_not_cut(phantom):
    labels = phantom.labels
    schema = labels.schema
    array = np.asarray(labels.array)
    image = np.asarray(phantom.image.array, dtype=float).copy()
    cord = np.argwhere(np.isin(array, _ids(schema, *CORD_CLASSES)))
    s = labels.world(cord)[:, 2]
    truth = _tip(labels)
    injured = cord[(s > truth + 40) & (s < truth + 65)]  # 25 mm as faint as the CSF
    image[tuple(injured.T)] = np.median(image[np.isin(array, _ids(schema, "csf"))])
    injured_image = Volume(image, phantom.image.affine)
    assert tidy_cord(injured_image, labels).notes() == []
    with_cauda = tidy_cord(injured_image, _with_cauda_as_cord(labels))
    assert abs(with_cauda.tip_s - truth) <= 5.0  # cut below the conus, not at the injury


def test_thin_roots_as_dark_as_the_cord_do_not_pass_for_cord_below_an_injury(phantom):
    """The cauda taken for cord: 40 mm as bright as the CSF below the conus, then 40 mm of a
    thin bundle of roots as dark as the cord (roots keep some contrast). Cord-like contrast
    below a faded stretch would mean an injured cord, but roots are thinner than the cord:
    the cut stays at the conus."""
    labels = _with_cauda_as_cord(phantom.labels, 80.0)
    schema = labels.schema
    array = np.asarray(labels.array).copy()
    image = np.asarray(phantom.image.array, dtype=float).copy()
    truth = _tip(phantom.labels)
    dark = np.median(image[np.isin(np.asarray(phantom.labels.array), _ids(schema, *CORD_CLASSES))])
    cord_id, csf_id = schema.find("cord").id, _ids(schema, "csf")[0]
    for k in range(array.shape[2]):
        if not truth - 80.0 < labels.world(np.array([[0, 0, k]]))[0, 2] < truth - 40.0:
            continue
        column = np.argwhere(array[:, :, k] == cord_id)
        thin = np.hypot(*(column - column.mean(axis=0)).T) * labels.spacing[0] < 1.5
        array[column[~thin, 0], column[~thin, 1], k] = csf_id
        image[column[thin, 0], column[thin, 1], k] = dark
    found = tidy_cord(
        Volume(image, labels.affine), LabelVolume(array, labels.affine, schema=schema)
    )
    assert abs(found.tip_s - truth) <= 5.0 and found.cauda_mm > 70.0


def test_cord_outside_the_canal_is_dropped_and_cord_inside_kept(phantom):
    labels = phantom.labels
    schema = labels.schema
    array = np.asarray(labels.array).copy()
    cord_id = schema.find("cord").id
    body = np.argwhere(np.isin(array, _ids(schema, "vertebra")))
    front = body[np.argmax(labels.world(body)[:, 1])]  # the most anterior bone voxel
    array[front[0] - 2 : front[0] + 3, front[1] - 2 : front[1] + 3, front[2]] = cord_id
    found = tidy_cord(phantom.image, LabelVolume(array, labels.affine, schema=schema))
    assert found.outside_mm3 == pytest.approx(25 * labels.voxel_volume)
    assert "outside the spinal canal" in found.notes()[0]
    kept = np.asarray(found.labels.array)
    assert kept[tuple(front)] == 0
    np.testing.assert_array_equal(
        np.isin(kept, _ids(schema, *CORD_CLASSES)),
        np.isin(np.asarray(labels.array), _ids(schema, *CORD_CLASSES)),
    )


@pytest.mark.parametrize(
    "sign, radius_mm, below_mm, dropped",
    [
        (-1.0, 3.5, 30.0, False),
        (1.0, 3.5, 30.0, True),
        (-1.0, 1.2, 30.0, True),
        (-1.0, 1.2, 9.0, False),
    ],
)
def test_a_piece_below_the_cord_is_roots_when_of_other_contrast_or_thin(
    phantom, sign, radius_mm, below_mm, dropped
):
    """A piece of 'cord' in the thecal sac below the conus, three slices long: as dark and
    as wide as a cord (T2-like) it may be cord and stays; as much brighter than the CSF as
    the cord is darker, or as thin as a bundle of roots, it is no cord; but a thin dark
    piece one missed slice below the cord's end continues it (a tapering conus)."""
    labels, schema = phantom.labels, phantom.labels.schema
    array = np.asarray(labels.array).copy()
    image = np.asarray(phantom.image.array, dtype=float).copy()
    cord_mask = np.isin(array, _ids(schema, *CORD_CLASSES))
    csf_mask = np.isin(array, _ids(schema, "csf"))
    csf_level = float(np.median(image[csf_mask]))
    difference = csf_level - float(np.median(image[cord_mask]))  # > 0: the cord is darker
    truth = _tip(labels)
    piece = np.zeros(array.shape, dtype=bool)
    k = int(
        np.argmin(
            np.abs(
                labels.world(np.array([[0, 0, z] for z in range(array.shape[2])]))[:, 2]
                - (truth - below_mm)
            )
        )
    )
    for z in (k - 1, k, k + 1):
        csf = np.argwhere(csf_mask[:, :, z])
        near = csf[np.hypot(*(csf - csf.mean(axis=0)).T) * labels.spacing[0] < radius_mm]
        piece[near[:, 0], near[:, 1], z] = True
    array[piece] = schema.find("cord").id
    image[piece] = csf_level + sign * difference
    with_piece = LabelVolume(array, labels.affine, schema=schema)
    found = tidy_cord(Volume(image, phantom.image.affine), with_piece)
    kept = np.isin(np.asarray(found.labels.array), _ids(schema, *CORD_CLASSES))
    if dropped:
        assert not kept[piece].any() and found.tip_s == pytest.approx(truth)
        assert found.roots_mm3 == pytest.approx(piece.sum() * labels.voxel_volume)
        assert "roots of the cauda equina" in found.notes()[-1]
    else:
        assert kept[piece].all() and found.tip_s == pytest.approx(_tip(with_piece))
        assert found.roots_mm3 == 0.0


@pytest.mark.parametrize("short_mm", [0.0, 21.0])
def test_a_conus_the_segmentation_stopped_short_of_is_reported(phantom, short_mm):
    """The cord's last `short_mm` labelled CSF (as the bundled model does on real T2
    scans): the image's cord-like core runs on about that far below the tip, and the
    note says so; with the exact cord it ends at the tip and nothing is said. (The
    phantom draws the cauda equina as thick bundles as dark as the cord, which would
    carry the core on to the sacrum, the limit the note names: here they are given the
    CSF's intensity, as thin roots have on a real T2 scan.)"""
    from cordmap.anatomy.cord_extent import CORE_NOTE_MM, core_below_tip, core_note
    from cordmap.anatomy.numbering import conus_tip

    labels = phantom.labels
    schema = labels.schema
    image = np.asarray(phantom.image.array).copy()
    roots = np.isin(np.asarray(labels.array), _ids(schema, "dorsal_root", "ventral_root"))
    image[roots] = np.median(image[np.isin(np.asarray(labels.array), _ids(schema, "csf"))])
    array = np.asarray(labels.array).copy()
    cord = np.argwhere(np.isin(array, _ids(labels.schema, *CORD_CLASSES)))
    low = labels.world(cord)[:, 2] < _tip(labels) + short_mm - 1.0
    array[tuple(cord[low].T)] = labels.schema.find("csf").id
    short = LabelVolume(array, labels.affine, schema=labels.schema)
    tip = conus_tip(short)
    core = core_below_tip(Volume(image, phantom.image.affine), short, tip)
    assert core is not None and core == pytest.approx(short_mm, abs=4.0)
    (note,) = core_note(core, tip) or [None]
    assert (note is not None) == (short_mm >= CORE_NOTE_MM)
    if note:
        assert f"running on {core:.0f} mm below" in note
