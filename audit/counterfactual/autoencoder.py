"""A ResNet-style convolutional autoencoder for Latent Shift (Cohen et al. 2021, "Gifsplanation
via Latent Shift", §4.1: a ResNet autoencoder trained with an elastic loss).

E: (N, C, H, W) images in [0, 1] → (N, bottleneck, ⌈H/2^L⌉, ⌈W/2^L⌉) latent codes, L = len(widths);
D: codes → (N, C, H, W) in [0, 1] (sigmoid output, cropped to the input size). ``bottleneck`` is
the number of latent channels: the paper found that a smaller bottleneck gives smoother, more
semantic shifts and a larger one sharper reconstructions (its Figure 2).

Sizes are bounded, so that a config file or a flag cannot make the tool allocate gigabytes:
``channels``, ``bottleneck`` and every width in 1..``MAX_WIDTH`` (1024), 1..``MAX_STAGES`` (6)
widths, and height × width within the pixel limit of every image reader (``audit.limits``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from audit.limits import MAX_IMAGE_PIXELS, too_many_pixels

MAX_WIDTH = 1024
MAX_STAGES = 6
FIELDS = ("channels", "height", "width", "bottleneck", "widths")


@dataclass(frozen=True)
class AutoencoderConfig:
    channels: int
    height: int
    width: int
    bottleneck: int = 8
    widths: tuple[int, ...] = (32, 64)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: object) -> "AutoencoderConfig":
        """The config of a JSON object; ValueError naming what is wrong (see ``problem``)."""
        if not isinstance(data, dict) or set(data) != set(FIELDS) or not isinstance(data["widths"], list):
            raise ValueError(f"'config' must be an object with exactly {', '.join(FIELDS)} (widths a list)")
        config = cls(**{**data, "widths": tuple(data["widths"])})
        if config.problem():
            raise ValueError(config.problem())
        return config

    def problem(self) -> str | None:
        """Why this architecture cannot be built (sizes out of the module docstring's bounds), or None."""
        sizes = (self.channels, self.height, self.width, self.bottleneck, *self.widths)
        if not all(type(v) is int and v >= 1 for v in sizes) or not 1 <= len(self.widths) <= MAX_STAGES:
            return f"channels, height, width, bottleneck and 1 to {MAX_STAGES} widths must be integers >= 1"
        if max(self.channels, self.bottleneck, *self.widths) > MAX_WIDTH:
            return f"channels, bottleneck and widths must be at most {MAX_WIDTH}"
        if too_many_pixels(self.height, self.width):
            return f"{self.height}x{self.width} is larger than the {MAX_IMAGE_PIXELS:,}-pixel limit of every image reader"
        return None

    @property
    def deepest_values(self) -> int:
        """Values per channel and image at the last encoder stage, ⌈H/2^L⌉ · ⌈W/2^L⌉ (each stride-2
        stage maps a side s to ⌈s/2⌉); batch normalisation cannot train on a single value."""
        scale = 2 ** len(self.widths)
        return -(-self.height // scale) * -(-self.width // scale)


class ResidualBlock(nn.Module):
    """x + conv-BN-ReLU-conv-BN(x), then ReLU (He et al. 2016, basic block, no resampling)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


def _down(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), ResidualBlock(cout))


def _up(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
        ResidualBlock(cout),
    )


class ResNetAutoencoder(nn.Module):
    """Stem, one stride-2 stage per width, a 1×1 conv to ``bottleneck`` channels; mirrored decoder."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        widths = config.widths
        self.encoder = nn.Sequential(
            nn.Conv2d(config.channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
            *(_down(cin, cout) for cin, cout in zip((widths[0],) + widths[:-1], widths)),
            nn.Conv2d(widths[-1], config.bottleneck, 1),
        )
        back = widths[::-1]
        self.decoder = nn.Sequential(
            nn.Conv2d(config.bottleneck, back[0], 1),
            nn.ReLU(),
            *(_up(cin, cout) for cin, cout in zip(back, back[1:] + back[-1:])),
            nn.Conv2d(back[-1], config.channels, 3, padding=1),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.decoder(z)[:, :, : self.config.height, : self.config.width]
        return torch.sigmoid(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def elastic_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Elastic reconstruction loss (Cohen et al. §4.1): mean (x̂ − x)² + mean |x̂ − x|."""
    diff = reconstruction - target
    return diff.pow(2).mean() + diff.abs().mean()
