"""The Neuroglancer viewer state a surgeon wants first.

Four panels: the MRI in the three slice panels, and a 3D panel seen from behind the
patient (superior up) showing the cord segments, conus, roots, vertebrae and discs in
the schema's colours, centred on the lumbosacral enlargement (cord segments L1..S2).
CSF is listed but hidden, so it does not hide the cord.

Data sources are given relative to the site root (e.g. "data/image"); `absolute_sources`
turns them into the absolute URLs Neuroglancer needs once the server address is known.
"""

from __future__ import annotations

import copy

import numpy as np

from cordmap.viewer.precomputed import (IMAGE_DIR, LABELS_DIR, output_dimensions,
                                        source_transform, world_to_output)
from cordmap.volume import LabelVolume, Volume

#: Structure classes shown in 3D at first; the others (CSF) are listed but hidden.
SHOWN_CLASSES = ("cord", "segment", "conus", "dorsal_root", "ventral_root", "vertebra", "disc")
#: Cord segments of the lumbosacral enlargement, where the paddle goes.
ENLARGEMENT_SEGMENTS = ("L1", "L2", "L3", "L4", "L5", "S1", "S2")
#: Camera seen from behind the patient: screen right = patient's right (+x), screen
#: down = inferior (-z), into the screen = anterior (+y). Quaternion [x, y, z, w].
POSTERIOR_VIEW = [-np.sqrt(0.5), 0.0, 0.0, np.sqrt(0.5)]
#: Slice panels turned half a turn about x: anterior up in the axial panel, superior up in
#: the coronal and sagittal panels (Neuroglancer's default puts them down).
SUPERIOR_UP = [1.0, 0.0, 0.0, 0.0]
IMAGE_LAYER, LABELS_LAYER = "MRI", "anatomy"


def viewer_state(image: Volume, labels: LabelVolume | None, data_path: str = "data") -> dict:
    """Neuroglancer state (JSON-ready) for a dataset written by `write_precomputed`."""
    centre = focus_point(image, labels)
    extent_mm = _extent_mm(image, labels)
    layers = [_image_layer(image, data_path)]
    if labels is not None:
        layers.append(_labels_layer(labels, data_path))
    return {
        "dimensions": output_dimensions(image),
        "position": [round(float(v), 3) for v in world_to_output(image, centre)],
        # zoom: the slice panels show the whole field of view (units per pixel); the 3D
        # panel's height spans the shown labels (units)
        "crossSectionScale": _zoom(max(np.asarray(image.shape) * image.spacing), image),
        "projectionScale": float(1.3 * extent_mm / min(image.spacing)),
        "projectionOrientation": [round(q, 6) for q in POSTERIOR_VIEW],
        "crossSectionOrientation": SUPERIOR_UP,
        "layers": layers,
        "layout": "4panel",
        "selectedLayer": {"layer": layers[-1]["name"], "visible": True},
        "showSlices": False,
    }


def absolute_sources(state: dict, base_url: str) -> dict:
    """A copy of `state` whose relative data sources point under `base_url`."""
    state = copy.deepcopy(state)
    for layer in state["layers"]:
        url = layer["source"]["url"]
        layer["source"]["url"] = f"precomputed://{base_url.rstrip('/')}/{url}"
    return state


def focus_point(image: Volume, labels: LabelVolume | None) -> np.ndarray:
    """World RAS+ mm to centre on: the enlargement, else all labels, else the image."""
    if labels is not None:
        schema = labels.schema
        ids = [schema.find("segment", level).id for level in ENLARGEMENT_SEGMENTS
               if _has_segment(schema, level)]
        for wanted in (ids, labels.ids()):
            mask = np.isin(labels.array, wanted)
            if wanted and mask.any():
                return labels.world(np.argwhere(mask).mean(axis=0))
    return image.world((np.asarray(image.shape) - 1) / 2)


def shown_ids(labels: LabelVolume) -> list[int]:
    """Present label ids of the classes shown at first (`SHOWN_CLASSES`)."""
    return [i for i in labels.ids() if labels.schema[i].structure in SHOWN_CLASSES]


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


def _labels_layer(labels: LabelVolume, data_path: str) -> dict:
    schema = labels.schema
    return {
        "type": "segmentation",
        "name": LABELS_LAYER,
        "source": {"url": f"{data_path}/{LABELS_DIR}", "transform": source_transform(labels)},
        "segments": [str(i) for i in shown_ids(labels)],
        "segmentColors": {str(i): schema[i].hex for i in labels.ids()},
        "selectedAlpha": 0.35,
        "objectAlpha": 1.0,
        "tab": "segments",
    }


def _extent_mm(image: Volume, labels: LabelVolume | None) -> float:
    """Largest extent (mm) of the shown labels, else of the image."""
    if labels is not None:
        mask = np.isin(labels.array, shown_ids(labels))
        if mask.any():
            ijk = np.argwhere(mask)
            corners = labels.world(np.stack([ijk.min(axis=0), ijk.max(axis=0)]))
            return float(np.max(np.abs(corners[1] - corners[0]))) + min(labels.spacing)
    return float(max(np.asarray(image.shape) * image.spacing))


def _zoom(field_mm: float, image: Volume) -> float:
    """Slice zoom (output units per screen pixel) that fits `field_mm` in ~400 pixels."""
    return float(field_mm / min(image.spacing) / 400)


def _has_segment(schema, level: str) -> bool:
    return any(label.structure == "segment" and label.level == level for label in schema)
