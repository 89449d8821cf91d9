"""The Neuroglancer viewer state a surgeon wants first.

Four panels: the MRI in the three slice panels, and a 3D panel seen from behind the
patient (superior up) showing the cord segments, conus, roots, vertebrae and discs in
the schema's colours, centred on the lumbosacral enlargement (cord segments L1..S2).
The labels appear as two layers of the same data: "cord and roots", opaque, and
"vertebrae", translucent in 3D so that the laminae do not hide the cord. CSF is listed
but hidden, so it does not hide the cord either.

Data sources are given relative to the site root (e.g. "data/image"); the site's entry
page turns them into the absolute URLs Neuroglancer needs (`cordmap.viewer.site`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from cordmap.viewer.precomputed import (
    IMAGE_DIR,
    LABELS_DIR,
    output_dimensions,
    present_ids,
    source_transform,
    world_to_output,
)
from cordmap.volume import LabelVolume, Volume

if TYPE_CHECKING:
    from cordmap.planning.contacts import Contact
    from cordmap.planning.results import Placement

#: Label layers: name, structure classes shown at first, opacity of their 3D meshes.
#: Classes in no layer (CSF) are listed but hidden.
LABEL_LAYERS = (
    ("cord and roots", ("cord", "segment", "conus", "dorsal_root", "ventral_root"), 1.0),
    ("vertebrae", ("vertebra", "disc"), 0.3),
)
#: Cord segments of the lumbosacral enlargement, where the paddle goes.
ENLARGEMENT_SEGMENTS = ("L1", "L2", "L3", "L4", "L5", "S1", "S2")
#: The first view spans the enlargement times this, to show the levels around it.
ENLARGEMENT_MARGIN = 1.8
LABELS_MARGIN = 1.15
#: Camera seen from behind the patient: screen right = patient's right (+x), screen
#: down = inferior (-z), into the screen = anterior (+y). Quaternion [x, y, z, w].
POSTERIOR_VIEW = [-np.sqrt(0.5), 0.0, 0.0, np.sqrt(0.5)]
#: Slice panels the radiological way, none lying on its side. Neuroglancer derives its
#: three panels from one rotation R (panel "xy": R, "xz": R * Rx(90), "yz": R * Ry(90)).
#: R = [[-1, 0, 0], [0, 0, -1], [0, -1, 0]] (half a turn about (0, 1, -1)) makes the
#: top-left panel coronal and the bottom-right one sagittal, both with superior up, and
#: the top-right one axial with anterior up and the patient's right on the left.
#: R is its own inverse, so the quaternion convention does not matter.
RADIOLOGICAL_PANELS = [0.0, np.sqrt(0.5), -np.sqrt(0.5), 0.0]
IMAGE_LAYER = "MRI"
#: Colours of the candidate paddles, rank 1 first (viewer and report).
PADDLE_COLOURS = ("#00c8ff", "#ffb000", "#c050ff", "#30d050", "#ff4060")


def viewer_state(
    image: Volume,
    labels: LabelVolume | None,
    data_path: str = "data",
    paddles: Sequence[tuple[Placement, np.ndarray, np.ndarray]] = (),
) -> dict:
    """Neuroglancer state (JSON-ready) for a dataset written by `write_precomputed`;
    `paddles`: candidates of a plan with their strips and contacts
    (`plan.geometry.candidate_strips`), each shown as a layer of its own that can be toggled."""
    present = present_ids(labels) if labels is not None else []
    centre, extent_mm = focus(image, labels, present)
    layers = [_image_layer(image, data_path)]
    if labels is not None:
        for name, classes, alpha in LABEL_LAYERS:
            shown = [i for i in present if labels.schema[i].structure in classes]
            if shown:
                layers.append(_labels_layer(labels, data_path, name, shown, present, alpha))
    selected = layers[min(1, len(layers) - 1)]["name"]
    # paddles listed first: after the image layer, Neuroglancer 2.41 at times drops the image
    # layer while it restores several annotation layers
    layers = [
        paddle_layer(image, candidate, strip, contacts) for candidate, strip, contacts in paddles
    ] + layers
    return {
        "dimensions": output_dimensions(image),
        "position": [round(float(v), 3) for v in world_to_output(image, centre)],
        # zoom: slice panels in output units per screen pixel, the 3D panel's height in units
        "crossSectionScale": float(extent_mm / min(image.spacing) / 400),
        "projectionScale": float(extent_mm / min(image.spacing)),
        "projectionOrientation": [round(q, 9) for q in POSTERIOR_VIEW],
        "crossSectionOrientation": [round(q, 9) for q in RADIOLOGICAL_PANELS],
        "layers": layers,
        "layout": "4panel",
        "selectedLayer": {"layer": selected, "visible": True},
        "showSlices": False,
    }


def focus(
    image: Volume, labels: LabelVolume | None, present: list[int]
) -> tuple[np.ndarray, float]:
    """Centre (world RAS+ mm) and height (mm) of the first view.

    The lumbosacral enlargement, framed with the levels around it; without it, all the
    labels; without labels, the image's field of view.
    """
    if labels is None or not present:
        return (
            image.world((np.asarray(image.shape) - 1) / 2),
            float(max(np.asarray(image.shape) * image.spacing)),
        )
    schema = labels.schema
    enlargement = [
        i
        for i in present
        if schema[i].structure == "segment" and schema[i].level in ENLARGEMENT_SEGMENTS
    ]
    if enlargement:
        mask, margin = np.isin(labels.array, enlargement), ENLARGEMENT_MARGIN
    else:
        mask, margin = labels.array != 0, LABELS_MARGIN
    ijk = np.argwhere(mask)
    corners = labels.world(np.stack([ijk.min(axis=0), ijk.max(axis=0)]))
    extent = float(np.max(np.abs(corners[1] - corners[0]))) + min(labels.spacing)
    return labels.world(ijk.mean(axis=0)), extent * margin


def _image_layer(image: Volume, data_path: str) -> dict:
    low, high = np.percentile(image.array, [0.5, 99.5])
    if high <= low:
        high = low + 1
    return {
        "type": "image",
        "name": IMAGE_LAYER,
        "source": {"url": f"{data_path}/{IMAGE_DIR}", "transform": source_transform(image)},
        "shaderControls": {"normalized": {"range": [float(low), float(high)]}},
    }


def _labels_layer(
    labels: LabelVolume,
    data_path: str,
    name: str,
    shown: list[int],
    present: list[int],
    alpha: float,
) -> dict:
    schema = labels.schema
    return {
        "type": "segmentation",
        "name": name,
        "source": {"url": f"{data_path}/{LABELS_DIR}", "transform": source_transform(labels)},
        "segments": [str(i) for i in shown],
        "segmentColors": {str(i): schema[i].hex for i in present},
        "selectedAlpha": 0.35,
        "objectAlpha": alpha,
        "tab": "segments",
    }


def contact_description(contact: Contact) -> str:
    """A contact's line of the contact map, e.g. "contact 3: L2 right, dCSF 4.1 mm"."""
    where = f"{contact.segment or 'no segment'} {contact.side}"
    dcsf = (
        f"dCSF {contact.dcsf_mm:.1f} mm"
        if contact.dcsf_mm is not None
        else f"dCSF unavailable: {contact.dcsf_note}"
    )
    return f"contact {contact.number}: {where}, {dcsf}"


def paddle_name(candidate: Placement) -> str:
    """Layer name of a candidate paddle, e.g. "paddle #1: 72.0 % (T11/T12 disc)"."""
    return (
        f"paddle #{candidate.rank}: {candidate.coverage.volume_pct:.1f} % "
        f"({candidate.rostral_edge})"
    )


def paddle_layer(
    image: Volume, candidate: Placement, strip: np.ndarray, contacts: np.ndarray
) -> dict:
    """A local annotation layer drawing one candidate paddle: the outline of its `strip`
    ((n, 2, 3) RAS+ mm edges, `Centreline.dorsal_strip`) and a point at each contact
    (`contacts`: (m, 3), `plan.geometry.candidate_strips`), described by its line of the
    candidate's contact map (segment and side, dCSF). The best
    candidate is shown at first, the others listed and hidden."""
    outline = np.concatenate([strip[:, 0], strip[::-1, 1], strip[:1, 0]])
    rank = candidate.rank
    assert rank is not None, "a plan's candidates are ranked"

    def output(point):
        return [round(float(v), 3) for v in world_to_output(image, point)]

    annotations = [
        {"type": "line", "id": f"paddle{rank}-{n}", "pointA": output(a), "pointB": output(b)}
        for n, (a, b) in enumerate(zip(outline[:-1], outline[1:]))
    ]
    for point, contact in zip(contacts, candidate.contacts):
        annotations.append(
            {
                "type": "point",
                "id": f"paddle{rank}-contact{contact.number}",
                "point": output(point),
                "description": contact_description(contact),
            }
        )
    return {
        "type": "annotation",
        "name": paddle_name(candidate),
        "source": {
            "url": "local://annotations",
            "transform": {"outputDimensions": output_dimensions(image)},
        },
        "annotations": annotations,
        "annotationColor": PADDLE_COLOURS[(rank - 1) % len(PADDLE_COLOURS)],
        "visible": rank == 1,
    }
