"""Spatial padding shared by Conv and the pooling ops (``pads`` and ``auto_pad`` attributes)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from audit.models.onnx_graph.ops.base import NodeSpec


def torch_order(pads: list[int]) -> list[int]:
    """ONNX ``[b1, b2, …, e1, e2, …]`` → ``F.pad``'s ``[b_last, e_last, …, b1, e1]``."""
    n = len(pads) // 2
    out: list[int] = []
    for i in reversed(range(n)):
        out += [pads[i], pads[i + n]]
    return out


class Padding:
    """Pads the spatial dims of an N-C-spatial tensor as the node's attributes say.

    ``auto_pad`` SAME_UPPER/SAME_LOWER pads so that ``out = ceil(in / stride)``, the extra
    element at the end (UPPER) or start (LOWER) — ONNX Conv spec."""

    def __init__(self, pads: list[int] | None, auto: str, kernel: list[int], strides: list[int],
                 dilations: list[int], value: float = 0.0) -> None:
        self.pads = torch_order(pads) if pads is not None else None
        self.auto = auto
        self.kernel, self.strides, self.dilations = kernel, strides, dilations
        self.value = value

    def explicit(self, sizes: tuple[int, ...]) -> list[int]:
        if self.pads is not None:
            return self.pads
        begins, ends = [], []
        for size, k, s, d in zip(sizes, self.kernel, self.strides, self.dilations):
            total = max(0, (math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size)
            small = total // 2
            begins.append(small if self.auto == "SAME_UPPER" else total - small)
            ends.append(total - begins[-1])
        return torch_order(begins + ends)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        pads = self.explicit(tuple(x.shape[2:]))
        return F.pad(x, pads, value=self.value) if any(pads) else x


def spatial_attrs(node: NodeSpec, nd: int) -> tuple[list[int], list[int], list[int] | None, str]:
    """(strides, dilations, explicit pads or None for auto padding, auto_pad)."""
    strides = list(node.attr("strides", [1] * nd))
    dilations = list(node.attr("dilations", [1] * nd))
    auto = node.attr("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        return strides, dilations, None, auto
    pads = [0] * (2 * nd) if auto == "VALID" else list(node.attr("pads", [0] * (2 * nd)))
    return strides, dilations, pads, auto


def symmetric(pads: list[int] | None) -> list[int] | None:
    """The per-dim padding if begin == end everywhere, else None."""
    if pads is None:
        return None
    n = len(pads) // 2
    return pads[:n] if pads[:n] == pads[n:] else None
