"""The 3D U-Net of the published work, with its width, depth and input grid as options.

The published network: 4 down-sampling and 4 up-sampling blocks, 1 input channel (the
MRI, normalised), 14 initial filters doubling per level (14, 28, 56, 112, 224), one
output channel per training class; about 4.3 million parameters. Each level is two
3x3x3 convolutions (instance norm, ReLU); the encoder halves the grid by 2x2x2 max
pooling, the decoder doubles it by 2x2x2 transposed convolution and concatenates the
skip connection. Every input dimension must therefore be divisible by 2**depth.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from cordmap.errors import CordmapError


@dataclass(frozen=True)
class UNetConfig:
    """Architecture and input grid of a U-Net.

    `input_shape` (X, Y, Z voxels, RAS order) resizes each whole volume to a fixed grid, as
    published (48 x 512 x 512 ZYX = (512, 512, 48) here); `input_spacing_mm` instead
    resamples to a fixed voxel size, which keeps anatomy the same size in voxels across
    fields of view. Exactly one of the two is set. `patch` is the training patch and
    sliding-window size (X, Y, Z).
    """

    classes: int = 7
    filters: int = 14
    depth: int = 4
    input_shape: tuple[int, int, int] | None = (512, 512, 48)
    input_spacing_mm: tuple[float, float, float] | None = None
    patch: tuple[int, int, int] = (512, 512, 48)

    def __post_init__(self):
        if (self.input_shape is None) == (self.input_spacing_mm is None):
            raise CordmapError(
                "a U-Net configuration needs exactly one of input_shape or input_spacing_mm"
            )
        unit = 2**self.depth
        for name in ("input_shape", "patch"):
            shape = getattr(self, name)
            if shape is not None and any(int(n) % unit for n in shape):
                raise CordmapError(
                    f"U-Net {name} {tuple(shape)} must be divisible by "
                    f"{unit} (2**depth) along every axis; round it to a multiple"
                )
        if self.classes < 2 or self.filters < 1 or self.depth < 1:
            raise CordmapError("a U-Net needs at least 2 classes, 1 filter and 1 level")

    @property
    def level_filters(self) -> tuple[int, ...]:
        """Filters at each level, from the input level down to the bottleneck."""
        return tuple(self.filters * 2**level for level in range(self.depth + 1))

    def to_dict(self) -> dict:
        return {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> UNetConfig:
        fields: dict[str, Any] = {
            key: tuple(v) if isinstance(v, list) else v for key, v in data.items()
        }
        return cls(**fields)


#: The published configuration (4.3 M parameters, input resized to 48 x 512 x 512 ZYX).
PUBLISHED = UNetConfig()

#: A small configuration that trains in a few minutes on a 2-core CPU: 1 mm voxels, 3 levels.
SMALL = UNetConfig(
    filters=8, depth=3, input_shape=None, input_spacing_mm=(1.0, 1.0, 1.0), patch=(48, 48, 48)
)

CONFIGS = {"small": SMALL, "published": PUBLISHED}


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3x3 convolutions, each followed by instance norm and ReLU. The instance norm
    is a group norm with one channel per group: the same normalisation and parameters
    (weight and bias per channel, as `nn.InstanceNorm3d(affine=True)`), 2-5 times faster on
    CPU."""
    layers = []
    for channels_in in (in_channels, out_channels):
        layers += [
            nn.Conv3d(channels_in, out_channels, 3, padding=1),
            nn.GroupNorm(out_channels, out_channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class UNet3D(nn.Module):
    """3D U-Net: (N, 1, X, Y, Z) normalised image -> (N, classes, X, Y, Z) logits."""

    def __init__(self, config: UNetConfig = PUBLISHED):
        super().__init__()
        self.config = config
        filters = config.level_filters
        self.encoder = nn.ModuleList(
            double_conv(1 if level == 0 else filters[level - 1], filters[level])
            for level in range(config.depth)
        )
        self.pool = nn.MaxPool3d(2)
        self.bottleneck = double_conv(filters[-2], filters[-1])
        self.upsample = nn.ModuleList(
            nn.ConvTranspose3d(filters[level + 1], filters[level], 2, stride=2)
            for level in reversed(range(config.depth))
        )
        self.decoder = nn.ModuleList(
            double_conv(2 * filters[level], filters[level])
            for level in reversed(range(config.depth))
        )
        self.head = nn.Conv3d(filters[0], config.classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, block, skip in zip(self.upsample, self.decoder, reversed(skips)):
            x = block(torch.cat([up(x), skip], dim=1))
        return self.head(x)

    def encoder_parameters(self):
        """Parameters of the contracting path and bottleneck (frozen by `finetune`)."""
        for module in (*self.encoder, self.bottleneck):
            yield from module.parameters()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
