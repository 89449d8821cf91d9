"""Inference: an image on its own grid -> training-class map on that same grid.

The image is normalised and resampled to the model's grid, segmented by sliding windows
of the training patch size (MONAI), and the class probabilities are resampled back to
the image's own grid before the arg-max, so the output shares the image's shape and
affine exactly. `segment_case` writes the result into a case folder (desc-unet).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from cordmap.learn.data import prepare, resample
from cordmap.learn.modelfile import TrainedModel, load_model
from cordmap.volume import LabelVolume, Volume

OVERLAP = 0.25


def predict(model: TrainedModel, image: Volume, name: str = "image", *,
            overlap: float = OVERLAP, device: str = "cpu") -> np.ndarray:
    """Training-class index of every voxel of `image` (uint8, the image's shape)."""
    example = prepare(name, image, None, model.mapping, model.config)
    network = model.network.to(device).eval()
    with torch.no_grad():
        x = torch.from_numpy(example.image[None, None]).to(device)
        logits = sliding_window_inference(x, model.config.patch, 2, network, overlap=overlap,
                                          mode="gaussian")
        probabilities = torch.softmax(logits, dim=1)[0].cpu().numpy()
    on_image = np.stack([resample(p, image.shape, order=1) for p in probabilities])
    return np.argmax(on_image, axis=0).astype(np.uint8)


def predict_labels(model: TrainedModel, image: Volume, name: str = "image", **options) -> LabelVolume:
    """The prediction as a label volume of the model's protocol, on the image's grid."""
    return model.mapping.decode(predict(model, image, name, **options), image.affine)


def segment_case(case_dir: str | Path, model_path: str | Path, *, overlap: float = OVERLAP,
                 device: str = "cpu") -> Path:
    """Segment a case's image with a model file; write and record `..._desc-unet_dseg`."""
    from cordmap.case import Case
    from cordmap.io.nifti import write_nifti

    case = Case.open(case_dir)
    model = load_model(model_path, case.schema)
    labels = predict_labels(model, case.image(), case.subject, overlap=overlap, device=device)
    out = write_nifti(labels, case.labels_path("unet"))
    case.record("segment", inputs=[case.image_path, model_path], outputs=[out], parameters={
        "model": str(Path(model_path).resolve()), "overlap": overlap,
        "classes": model.mapping.names, "classes_not_written": model.mapping.unwritten(),
    })
    return out
