"""``Resize`` (10–19) and ``Upsample`` as separable 1-D resampling along each resized axis.

Every output index is mapped to an input coordinate with the node's
``coordinate_transformation_mode`` (formulas from the ONNX Resize-19 spec), then gathered
(nearest, per ``nearest_mode``), linearly blended (linear) or blended over 4 taps with
coefficient ``cubic_coeff_a`` (cubic). Out-of-range taps use the edge value (or are dropped and
the weights renormalised with ``exclude_outside``). Gradients flow through the gathers.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from audit.models.onnx_graph.ops.base import Converted, NodeSpec, register

_MODES = {"half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric"}
_ROUND = {
    "round_prefer_floor": lambda c: torch.ceil(c - 0.5),
    "round_prefer_ceil": lambda c: torch.floor(c + 0.5),
    "floor": torch.floor,
    "ceil": torch.ceil,
}


def source_coords(length: int, out: int, scale: float, mode: str) -> torch.Tensor:
    """Input coordinate of each output index (float64)."""
    i = torch.arange(out, dtype=torch.float64)
    if mode == "asymmetric":
        return i / scale
    if mode == "align_corners":  # the resized length is scale * length, not rounded
        return torch.zeros(out, dtype=torch.float64) if out == 1 else i * (length - 1) / (scale * length - 1)
    if mode == "pytorch_half_pixel" and out == 1:
        return torch.zeros(1, dtype=torch.float64)
    coords = (i + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        adjustment = out / (scale * length)
        coords = coords + (length / 2) * (1 - adjustment)
    return coords


def _cubic_weights(t: torch.Tensor, a: float) -> list[torch.Tensor]:
    s = 1 - t
    return [
        ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
        ((a + 2) * t - (a + 3)) * t * t + 1,
        ((a + 2) * s - (a + 3)) * s * s + 1,
        ((a * (s + 1) - 5 * a) * (s + 1) + 8 * a) * (s + 1) - 4 * a,
    ]


class Resize(nn.Module):
    def __init__(self, mode: str, coord_mode: str, nearest_mode: str, cubic_a: float, exclude_outside: bool,
                 axes: list[int] | None, policy: str, scales: list[float] | None, sizes: list[int] | None) -> None:
        super().__init__()
        self.mode, self.coord_mode, self.nearest_mode = mode, coord_mode, nearest_mode
        self.cubic_a, self.exclude_outside = cubic_a, exclude_outside
        self.axes, self.policy, self.scales, self.sizes = axes, policy, scales, sizes

    def forward(self, x: torch.Tensor, scales: torch.Tensor | None = None, sizes: torch.Tensor | None = None) -> torch.Tensor:
        sc = self.scales if scales is None or scales.numel() == 0 else [float(v) for v in scales.tolist()]
        sz = self.sizes if sizes is None or sizes.numel() == 0 else [int(v) for v in sizes.tolist()]
        axes = [a % x.dim() for a in self.axes] if self.axes is not None else list(range(x.dim()))
        lengths = [x.shape[a] for a in axes]
        if sz:
            if self.policy == "stretch":
                factors = [o / n for o, n in zip(sz, lengths)]
                outs = list(sz)
            else:
                pick = min if self.policy == "not_larger" else max
                f = pick(o / n for o, n in zip(sz, lengths))
                factors = [f] * len(axes)
                outs = [int(math.floor(f * n + 0.5)) for n in lengths]
        else:
            factors = list(sc)
            outs = [int(math.floor(n * f)) for n, f in zip(lengths, factors)]
        for axis, n, out, f in zip(axes, lengths, outs, factors):
            if out != n or f != 1.0:
                x = self._resample(x, axis, n, out, f)
        return x

    def _resample(self, x: torch.Tensor, axis: int, n: int, out: int, scale: float) -> torch.Tensor:
        coords = source_coords(n, out, scale, self.coord_mode)
        view = [1] * x.dim()
        view[axis] = out
        if self.mode == "nearest":
            idx = _ROUND[self.nearest_mode](coords).long().clamp(0, n - 1)
            return torch.index_select(x, axis, idx.to(x.device))
        base = torch.floor(coords)
        t = coords - base
        if self.mode == "linear":
            offsets, weights = [0, 1], [1 - t, t]
        else:
            offsets, weights = [-1, 0, 1, 2], _cubic_weights(t, self.cubic_a)
        taps = [base.long() + o for o in offsets]
        if self.exclude_outside:
            weights = [w * ((i >= 0) & (i < n)) for w, i in zip(weights, taps)]
            total = sum(weights)
            weights = [w / total for w in weights]
        y = None
        for i, w in zip(taps, weights):
            term = torch.index_select(x, axis, i.clamp(0, n - 1).to(x.device)) * w.to(x.dtype).to(x.device).reshape(view)
            y = term if y is None else y + term
        return y


@register("Resize")
def resize(node: NodeSpec) -> Converted:
    mode = node.attr("mode", "nearest")
    coord = node.attr("coordinate_transformation_mode", "half_pixel" if node.opset >= 11 else "asymmetric")
    nearest = node.attr("nearest_mode", "round_prefer_floor" if node.opset >= 11 else "floor")
    if mode not in ("nearest", "linear", "cubic"):
        raise node.unsupported(f"mode={mode}")
    if coord not in _MODES:
        raise node.unsupported(f"coordinate_transformation_mode={coord}")
    if node.attr("antialias", 0):
        raise node.unsupported("antialias=1")
    scale_i, size_i = (1, None) if node.opset < 11 else (2, 3)
    scales = node.const(scale_i)
    sizes = node.const(size_i) if size_i is not None else None
    axes = node.attr("axes")
    module = Resize(
        mode, coord, nearest, node.attr("cubic_coeff_a", -0.75), bool(node.attr("exclude_outside", 0)),
        None if axes is None else list(axes), node.attr("keep_aspect_ratio_policy", "stretch"),
        None if scales is None or scales.numel() == 0 else [float(v) for v in scales.tolist()],
        None if sizes is None or sizes.numel() == 0 else [int(v) for v in sizes.tolist()],
    )
    return module, (0, node.runtime(scale_i), None if size_i is None else node.runtime(size_i))


@register("Upsample")
def upsample(node: NodeSpec) -> Converted:
    mode = node.attr("mode", "nearest")
    mode = {"bilinear": "linear"}.get(mode, mode)
    scales = list(node.attr("scales")) if "scales" in node.attrs else (
        None if not node.is_const(1) else [float(v) for v in node.const(1).tolist()])
    module = Resize(mode, "asymmetric", "floor", -0.75, False, None, "stretch", scales, None)
    return module, (0, None if "scales" in node.attrs else node.runtime(1), None)
