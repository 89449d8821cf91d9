"""Inference: an image on its own grid -> training-class map on that same grid.

The image is normalised and resampled to the model's grid, segmented by sliding windows
of the training patch size (MONAI), and the class probabilities are resampled back to
the image's own grid before the arg-max, so the output shares the image's shape and
affine exactly. Optionally only the largest connected piece (26-connectivity) of some
classes is kept, the rest becoming background (`keep_largest=("cord",)`: the cord is one
piece in most scans, but not necessarily in an injured one, so this is not the default).
`segment_case` writes the result into a case folder (desc-unet).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from scipy import ndimage

from cordmap.errors import CordmapError
from cordmap.learn.data import prepare, resample
from cordmap.learn.modelfile import TrainedModel, load_model
from cordmap.volume import LabelVolume, Volume

OVERLAP = 0.25


def predict(model: TrainedModel, image: Volume, name: str = "image", *,
            overlap: float = OVERLAP, device: str = "cpu",
            keep_largest: tuple[str, ...] = ()) -> np.ndarray:
    """Training-class index of every voxel of `image` (uint8, the image's shape)."""
    indices = _class_indices(model, keep_largest)
    example = prepare(name, image, None, model.mapping, model.config)
    network = model.network.to(device).eval()
    with torch.no_grad():
        x = torch.from_numpy(example.image[None, None]).to(device)
        logits = sliding_window_inference(x, model.config.patch, 2, network, overlap=overlap,
                                          mode="gaussian")
        probabilities = torch.softmax(logits, dim=1)[0].cpu().numpy()
    on_image = np.stack([resample(p, image.shape, order=1) for p in probabilities])
    class_map = np.argmax(on_image, axis=0).astype(np.uint8)
    for index in indices:
        keep_largest_piece(class_map, index)
    return class_map


def keep_largest_piece(class_map: np.ndarray, index: int) -> np.ndarray:
    """Set the voxels of class `index` outside its largest 26-connected piece to
    background, in place; return the map."""
    pieces, count = ndimage.label(class_map == index, structure=np.ones((3, 3, 3)))
    if count > 1:
        sizes = np.bincount(pieces.ravel())
        sizes[0] = 0
        class_map[(pieces > 0) & (pieces != np.argmax(sizes))] = 0
    return class_map


def _class_indices(model: TrainedModel, names) -> list[int]:
    unknown = [n for n in names if n not in model.mapping.names[1:]]
    if unknown:
        raise CordmapError(f"--keep-largest names classes {unknown} the model does not have; "
                           f"use names of {', '.join(model.mapping.names[1:])}")
    return [model.mapping.names.index(n) for n in names]


def predict_labels(model: TrainedModel, image: Volume, name: str = "image", **options) -> LabelVolume:
    """The prediction as a label volume of the model's protocol, on the image's grid."""
    return model.mapping.decode(predict(model, image, name, **options), image.affine)


def segment_case(case_dir: str | Path, model_path: str | Path, *, overlap: float = OVERLAP,
                 device: str = "cpu", keep_largest: tuple[str, ...] = ()) -> Path:
    """Segment a case's image with a model file; write and record `..._desc-unet_dseg`."""
    from cordmap.case import Case
    from cordmap.io.nifti import write_nifti

    case = Case.open(case_dir)
    model = load_model(model_path, case.schema)
    labels = predict_labels(model, case.image(), case.subject, overlap=overlap, device=device,
                            keep_largest=tuple(keep_largest))
    out = write_nifti(labels, case.labels_path("unet"))
    case.record("segment", inputs=[case.image_path, model_path], outputs=[out], parameters={
        "model": str(Path(model_path).resolve()), "overlap": overlap,
        "keep_largest": list(keep_largest),
        "classes": model.mapping.names, "classes_not_written": model.mapping.unwritten(),
    })
    return out
