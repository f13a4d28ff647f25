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

    def to_tensor(self, images: np.ndarray) -> torch.Tensor:
        """(N, H, W, C) floats in [0, 1] → normalised (N, C, H, W) float32 tensor."""
        lo, hi = self.value_range
        mean = self._per_channel(self.mean, "mean")
        std = self._per_channel(self.std, "std")
        # Written straight into NCHW as x · (hi − lo)/std + (lo − mean)/std, in numpy: one
        # thread, no temporaries (this runs beside the model's own threads).
        scale, shift = ((hi - lo) / std)[:, None, None], ((lo - mean) / std)[:, None, None]
        channels_first = np.asarray(images, dtype=np.float32).transpose(0, 3, 1, 2)
        x = np.multiply(channels_first, scale, out=np.empty(channels_first.shape, dtype=np.float32))
        return torch.from_numpy(np.add(x, shift, out=x))

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)
