"""The classifier's input layout and preprocessing.

Images arrive from ``audit.data`` as float arrays in [0, 1], shape (N, H, W, C). The model
sees ``(x * (hi - lo) + lo - mean) / std`` in NCHW, where (lo, hi) is ``--value-range``.
Saliency is computed with respect to this normalised tensor and reduced over channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class InputSpec:
    channels: int
    height: int
    width: int
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    value_range: tuple[float, float] = (0.0, 1.0)
    #: where mean, std and value range came from (``loader._preprocessing_source``)
    source: str = "command line"

    def _per_channel(self, values: tuple[float, ...], name: str) -> np.ndarray:
        if len(values) == 1:
            return np.full(self.channels, values[0], dtype=np.float32)
        if len(values) != self.channels:
            from audit.errors import AuditError

            raise AuditError(
                f"--{name} has {len(values)} values but the model takes {self.channels} channels; "
                f"give one value or {self.channels}"
            )
        return np.asarray(values, dtype=np.float32)

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """(scale, shift), (C,) float32: the normalised input is x · scale + shift per channel,
        scale = (hi − lo)/std and shift = (lo − mean)/std."""
        lo, hi = self.value_range
        mean = self._per_channel(self.mean, "mean")
        std = self._per_channel(self.std, "std")
        return (hi - lo) / std, (lo - mean) / std

    def to_tensor(self, images: np.ndarray) -> torch.Tensor:
        """(N, H, W, C) floats in [0, 1] → normalised (N, C, H, W) float32 tensor."""
        scale, shift = self.affine()
        # Written straight into NCHW, in numpy: one thread, no temporaries (this runs beside the
        # model's own threads).
        channels_first = np.asarray(images, dtype=np.float32).transpose(0, 3, 1, 2)
        x = np.multiply(channels_first, scale[:, None, None], out=np.empty(channels_first.shape, dtype=np.float32))
        return torch.from_numpy(np.add(x, shift[:, None, None], out=x))

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """``to_tensor`` on a (N, H, W, C) float32 tensor already on its device (a GPU): the
        same affine map, computed there, so only the raw pixels cross the bus."""
        scale, shift = (torch.from_numpy(v).to(images.device)[:, None, None] for v in self.affine())
        return images.permute(0, 3, 1, 2) * scale + shift

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)
