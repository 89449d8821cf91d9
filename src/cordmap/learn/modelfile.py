"""The model file: weights plus everything needed to use them correctly.

A `.pt` file (a plain dict, loadable with `torch.load(weights_only=True)`) holding the
architecture and input grid, the training classes with the protocol name and version
they map, the input normalisation, and a summary of the training data. Loading it for
a case annotated with another protocol is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from cordmap import __version__
from cordmap.atomic import atomic_file
from cordmap.errors import CordmapError
from cordmap.learn.classes import ClassMapping
from cordmap.learn.data import NORMALISATION
from cordmap.learn.model import UNet3D, UNetConfig
from cordmap.protocol.schema import LabelSchema

FORMAT = "cordmap-unet"
FORMAT_VERSION = 1


@dataclass
class TrainedModel:
    network: UNet3D
    mapping: ClassMapping
    training: dict  # summary of the data and run that made the weights
    path: Path | None = None

    @property
    def config(self) -> UNetConfig:
        return self.network.config


def save_model(path: str | Path, network: UNet3D, mapping: ClassMapping, training: dict) -> Path:
    """Write a model file atomically."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "cordmap_version": __version__,
        "config": network.config.to_dict(),
        "mapping": mapping.to_dict(),
        "normalisation": dict(NORMALISATION),
        "training": training,
        "state_dict": {k: v.detach().cpu() for k, v in network.state_dict().items()},
    }
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_model(path: str | Path, schema: LabelSchema) -> TrainedModel:
    """Read a model file for cases annotated with `schema` (another protocol is refused)."""
    path = Path(path)
    if not path.is_file():
        raise CordmapError(f"model file {path} does not exist; train one with `cordmap train`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or truncated files
        raise CordmapError(
            f"{path} is not a readable cordmap model file ({exc}); "
            "pass the model.pt written by `cordmap train`"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CordmapError(
            f"{path} is not a cordmap model file; pass the model.pt written by `cordmap train`"
        )
    if payload["normalisation"] != NORMALISATION:
        raise CordmapError(
            f"{path} expects input normalisation {payload['normalisation']}, "
            f"which this cordmap version does not apply; use cordmap "
            f"{payload['cordmap_version']}"
        )
    mapping = ClassMapping.from_dict(payload["mapping"], schema, source=f"model {path}")
    network = UNet3D(UNetConfig.from_dict(payload["config"]))
    network.load_state_dict(payload["state_dict"])
    network.eval()
    return TrainedModel(network, mapping, payload["training"], path)
