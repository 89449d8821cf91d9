"""cordmap's Python API: the steps of the command line as functions on objects in memory.

`cordmap` itself re-exports the public names (``import cordmap; cordmap.load(...)``); see
its docstring for an example. Everything here works on volumes in memory and writes nothing;
the case folder and its stages are the command line's (`cordmap import`, `plan`, ...).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from cordmap.anatomy.numbering import Numbering as Numbering
from cordmap.anatomy.numbering import number_vertebrae as number_vertebrae
from cordmap.anatomy.phantom import Phantom as Phantom
from cordmap.anatomy.phantom import make_phantom as make_phantom
from cordmap.anatomy.validate import ValidationReport as ValidationReport
from cordmap.anatomy.validate import validate as validate
from cordmap.case import Case as Case
from cordmap.errors import CordmapError as CordmapError
from cordmap.errors import missing_extra
from cordmap.ingest import read_annotations, read_image
from cordmap.mesh.surfaces import mesh_labels as mesh_labels
from cordmap.pipeline.segment import segmentation_warnings
from cordmap.planning.enlargement import DEFAULT_ENLARGEMENT
from cordmap.planning.paddles import DEFAULT_PADDLE
from cordmap.planning.planner import Planner as Planner
from cordmap.planning.results import Assessment as Assessment
from cordmap.planning.results import Placement as Placement
from cordmap.planning.results import Plan as Plan
from cordmap.protocol.schema import LabelSchema as LabelSchema
from cordmap.volume import LabelVolume as LabelVolume
from cordmap.volume import Volume as Volume


class SegmentationWarning(UserWarning):
    """Something in an automatic segmentation needs a look (cord in pieces, levels
    uncertain or not numbered)."""


def load(
    source: str | Path,
    *,
    series: str | int | None = None,
    spacing: tuple[float, float, float] | None = None,
    orientation: str = "axial",
    reverse: bool = False,
) -> Volume:
    """Read an MRI, keeping its voxel size and orientation.

    Parameters
    ----------
    source : str or Path
        A NIfTI file (.nii, .nii.gz), a folder holding a DICOM export, or a folder of 2D
        slices (PNG/TIFF).
    series : str or int, optional
        The DICOM series to read (its number or UID) when the folder holds several.
    spacing : tuple of float, optional
        Voxel size (mm) of a slice folder, as (row, column, slice); slices carry none.
    orientation : {"axial", "coronal", "sagittal"}
        The plane of a slice folder's images.
    reverse : bool
        Turn a slice folder's file order around (first file superior, anterior or right).

    Returns
    -------
    Volume
        The image in RAS+ millimetres (``volume.affine``, ``volume.spacing``).
    """
    volume, _ = read_image(
        source, series=series, spacing=spacing, orientation=orientation, reverse=reverse
    )
    return volume


def load_labels(
    source: str | Path, image: Volume, *, protocol: str | Path | None = None
) -> LabelVolume:
    """Read manual labels drawn on `image`.

    Parameters
    ----------
    source : str or Path
        A NIfTI label volume or a folder of per-slice masks (one folder per structure).
    image : Volume
        The image the labels were drawn on; they must share its grid.
    protocol : str or Path, optional
        A labelling protocol JSON; the bundled cordmap protocol by default.

    Returns
    -------
    LabelVolume
        The labels, with the protocol's names for every id.
    """
    return read_annotations(source, image, LabelSchema.load(protocol))


def segment(
    image: Volume,
    *,
    model: str | Path | None = None,
    anchor: str | None = None,
    device: str = "cpu",
) -> LabelVolume:
    """Segment cord, CSF, vertebrae and discs with a U-Net and number the vertebrae.

    Needs the ``cordmap[learn]`` extra (PyTorch). Anything that needs a look (a cord in
    pieces, levels uncertain or not numbered) is reported as a `SegmentationWarning`.

    Parameters
    ----------
    image : Volume
        A 3D MRI of the spine, any common contrast.
    model : str or Path, optional
        A model file from ``cordmap train``; the bundled default model if not given.
    anchor : str, optional
        A known level to number from, e.g. ``"L5"`` (the lowest vertebra in view) or
        ``"T12/L1 disc"`` (the lowest disc in view); add ``"@S"`` for the one nearest S mm
        (``"T12/L1 disc@-350"``).
    device : str
        The torch device, e.g. ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    LabelVolume
        The labels on the image's grid, vertebrae and discs with their levels where they
        could be numbered.
    """
    try:
        from cordmap.learn.bundled import model_path
        from cordmap.learn.infer import segment_image
        from cordmap.learn.modelfile import load_model
    except ModuleNotFoundError as exc:
        raise (missing_extra(exc) or exc) from exc
    trained = load_model(model_path(model), LabelSchema.load())
    result = segment_image(trained, image, anchor=anchor, device=device)
    for note in segmentation_warnings(result.results()):
        warnings.warn(note, SegmentationWarning, stacklevel=2)
    return result.labels


def plan(
    labels: LabelVolume,
    *,
    paddle: str = DEFAULT_PADDLE,
    top: int = 3,
    targets: str | None = None,
    sides: str = "both",
    enlargement: str = DEFAULT_ENLARGEMENT,
) -> Plan:
    """Propose the best paddle placements over the lumbosacral enlargement.

    Parameters
    ----------
    labels : LabelVolume
        Labels with the spinal cord (manual or from `segment`); cord segments, vertebrae
        and CSF make the plan richer (segment names, vertebral landmarks, dorsal CSF).
    paddle : str
        A paddle model of the catalogue (`cordmap.planning.paddles.load_catalogue`).
    top : int
        How many placements to propose, at least 1.
    targets : str, optional
        Target root segments, e.g. ``"L2,L3,L4,S1"``: rank placements by how well the
        contacts reach their entry zones too.
    sides : {"both", "left", "right"}
        The sides whose target roots count.
    enlargement : str
        The segment range to cover, ``"L1..S2"`` by default; from the labelled segments,
        else estimated from the conus tip (docs/planning.md).

    Returns
    -------
    Plan
        The placements ranked by coverage of the enlargement's volume (``plan.best``, a
        `Placement`: ``best.coverage.volume_pct``, ``best.rostral_edge``, ...), each with
        its covered segments and contact map, and the coverage curve; ``plan.to_json()``
        is what plan.json holds.
    """
    planner = Planner.prepare(labels, paddle, enlargement=enlargement, source="the labels")
    return planner.plan(top, targets=targets, sides=sides)


def assess(
    labels: LabelVolume,
    *,
    rostral: str | None = None,
    caudal: str | None = None,
    compare: str | None = None,
    paddle: str = DEFAULT_PADDLE,
    enlargement: str = DEFAULT_ENLARGEMENT,
) -> Assessment:
    """Score a placement read from X-ray landmarks (the coverage it achieves).

    Parameters
    ----------
    labels : LabelVolume
        Labels with the spinal cord and levelled vertebrae.
    rostral, caudal : str, optional
        The landmark of exactly one end of the array, e.g. ``"T12 lower third"`` or
        ``"T11/T12 disc"``.
    compare : str, optional
        The rostral landmark of another placement: the distance between the two (mm).
    paddle : str
        The paddle model.
    enlargement : str
        The segment range to cover, as in `plan`.

    Returns
    -------
    Assessment
        The placement (``assessment.placement``: coverage of the enlargement, segments,
        contact map) and, with `compare`, the other one and ``distance_mm``.
    """
    planner = Planner.prepare(labels, paddle, enlargement=enlargement, source="the labels")
    return planner.assess(rostral, caudal, compare)
