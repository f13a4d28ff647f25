"""Shape and indexing operators. Shape arguments (``shape``, ``axes``, ``starts``…) known at
build time are baked in as Python values; computed ones (e.g. from ``Shape`` of a dynamic batch)
are read with ``.tolist()`` at runtime, so any batch size works."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from audit.models.onnx_graph.ops.base import Converted, NodeSpec, register, stateless, tensor_from_proto


def _ints(t: torch.Tensor | None) -> list[int] | None:
    return None if t is None else [int(v) for v in t.reshape(-1).tolist()]


class WithShapeArg(nn.Module):
    """Base for ops with one shape-like input: ``self.arg`` if known at build time, else
    the runtime tensor (as a list of ints)."""

    def __init__(self, arg: list[int] | None, **attrs: object) -> None:
        super().__init__()
        self.arg = arg
        self.__dict__.update(attrs)

    def resolve(self, runtime: torch.Tensor | None) -> list[int] | None:
        return self.arg if runtime is None else _ints(runtime)


def _shape_arg(node: NodeSpec, module_cls: type[WithShapeArg], index: int, attr: str | None = None,
               **attrs: object) -> Converted:
    """Build ``module_cls`` for a node whose input ``index`` (or attribute ``attr`` in old
    opsets) is a list of ints."""
    if attr is not None and attr in node.attrs:
        return module_cls(list(node.attrs[attr]), **attrs), (0,)
    if not node.has(index):
        return module_cls(None, **attrs), (0,)
    if node.is_const(index):
        return module_cls(node.ints(index), **attrs), (0,)
    return module_cls(None, **attrs), (0, index)


class Reshape(WithShapeArg):
    """ONNX Reshape: 0 copies the input dim (unless ``allowzero``), -1 is inferred."""

    def forward(self, x: torch.Tensor, shape: torch.Tensor | None = None) -> torch.Tensor:
        dims = self.resolve(shape)
        if not self.allowzero:
            dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
        return x.reshape(dims)


@register("Reshape")
def reshape(node: NodeSpec) -> Converted:
    return _shape_arg(node, Reshape, 1, allowzero=bool(node.attr("allowzero", 0)))


class Flatten(nn.Module):
    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axis = self.axis % x.dim() if self.axis < 0 else self.axis
        return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


@register("Flatten")
def flatten(node: NodeSpec) -> Converted:
    return Flatten(node.attr("axis", 1)), (0,)


def transpose(x: torch.Tensor, perm: list[int] | None) -> torch.Tensor:
    return x.permute(perm if perm is not None else list(reversed(range(x.dim()))))


@register("Transpose")
def transpose_op(node: NodeSpec) -> Converted:
    perm = node.attr("perm")
    return stateless(transpose, node, 0, perm=None if perm is None else list(perm))


def concat(*xs: torch.Tensor, axis: int) -> torch.Tensor:
    return torch.cat(xs, axis)


@register("Concat")
def concat_op(node: NodeSpec) -> Converted:
    return stateless(concat, node, axis=node.attr("axis"))


def shape(x: torch.Tensor, start: int, end: int | None) -> torch.Tensor:
    return torch.tensor(x.shape[start:end], dtype=torch.int64, device=x.device)


@register("Shape")
def shape_op(node: NodeSpec) -> Converted:
    return stateless(shape, node, 0, start=node.attr("start", 0), end=node.attr("end"))


def size(x: torch.Tensor) -> torch.Tensor:
    return torch.tensor(x.numel(), dtype=torch.int64, device=x.device)


@register("Size")
def size_op(node: NodeSpec) -> Converted:
    return stateless(size, node, 0)


def gather(x: torch.Tensor, indices: torch.Tensor, axis: int) -> torch.Tensor:
    """ONNX Gather: ``out.shape = x.shape[:axis] + indices.shape + x.shape[axis+1:]``."""
    axis = axis % x.dim()
    indices = indices.long()
    indices = torch.where(indices < 0, indices + x.shape[axis], indices)
    out = torch.index_select(x, axis, indices.reshape(-1))
    return out.reshape(x.shape[:axis] + indices.shape + x.shape[axis + 1:])


@register("Gather")
def gather_op(node: NodeSpec) -> Converted:
    return stateless(gather, node, 0, 1, axis=node.attr("axis", 0))


def gather_elements(x: torch.Tensor, indices: torch.Tensor, axis: int) -> torch.Tensor:
    indices = indices.long()
    indices = torch.where(indices < 0, indices + x.shape[axis], indices)
    return torch.gather(x, axis, indices)


@register("GatherElements")
def gather_elements_op(node: NodeSpec) -> Converted:
    return stateless(gather_elements, node, 0, 1, axis=node.attr("axis", 0))


def gather_nd(x: torch.Tensor, indices: torch.Tensor, batch_dims: int) -> torch.Tensor:
    """ONNX GatherND: the last axis of ``indices`` (length q) indexes the q axes of ``x`` after
    its first ``batch_dims``; ``out.shape = indices.shape[:-1] + x.shape[batch_dims + q:]``."""
    q = indices.shape[-1]
    batch = math.prod(x.shape[:batch_dims])
    data = x.reshape((batch,) + x.shape[batch_dims:])
    index = indices.long().reshape(batch, -1, q)
    sizes = torch.tensor(data.shape[1:q + 1], dtype=torch.long, device=index.device)
    index = torch.where(index < 0, index + sizes, index)
    rows = torch.arange(batch, device=index.device).reshape(batch, 1).expand(batch, index.shape[1])
    out = data[(rows,) + tuple(index[..., j] for j in range(q))]
    return out.reshape(indices.shape[:-1] + x.shape[batch_dims + q:])


@register("GatherND")
def gather_nd_op(node: NodeSpec) -> Converted:
    return stateless(gather_nd, node, 0, 1, batch_dims=node.attr("batch_dims", 0))


def depth_to_space(x: torch.Tensor, block: int, crd: bool) -> torch.Tensor:
    """ONNX DepthToSpace: channels ``(b, b, C')`` (DCR) or ``(C', b, b)`` (CRD, ``pixel_shuffle``)
    move into ``b×b`` blocks of space."""
    n, c, h, w = x.shape
    if crd:
        return F.pixel_shuffle(x, block)
    y = x.reshape(n, block, block, c // block ** 2, h, w).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(n, c // block ** 2, h * block, w * block)


@register("DepthToSpace")
def depth_to_space_op(node: NodeSpec) -> Converted:
    return stateless(depth_to_space, node, 0, block=node.attr("blocksize"), crd=node.attr("mode", "DCR") == "CRD")


def space_to_depth(x: torch.Tensor, block: int, crd: bool) -> torch.Tensor:
    """ONNX SpaceToDepth: ``b×b`` blocks of space into channels ordered ``(b, b, C)`` (DCR) or
    ``(C, b, b)`` (CRD, ``pixel_unshuffle``)."""
    if crd:
        return F.pixel_unshuffle(x, block)
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // block, block, w // block, block).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * block ** 2, h // block, w // block)


@register("SpaceToDepth")
def space_to_depth_op(node: NodeSpec) -> Converted:
    return stateless(space_to_depth, node, 0, block=node.attr("blocksize"), crd=node.attr("mode", "DCR") == "CRD")


def cum_sum(x: torch.Tensor, axis: torch.Tensor, exclusive: bool, reverse: bool) -> torch.Tensor:
    """ONNX CumSum; ``exclusive`` leaves each element out of its own sum."""
    dim = int(axis)
    y = x.flip(dim) if reverse else x
    out = torch.cumsum(y, dim).to(x.dtype)
    if exclusive:
        out = out - y
    return out.flip(dim) if reverse else out


@register("CumSum")
def cum_sum_op(node: NodeSpec) -> Converted:
    return stateless(cum_sum, node, 0, 1, exclusive=bool(node.attr("exclusive", 0)), reverse=bool(node.attr("reverse", 0)))


def trilu(x: torch.Tensor, k: torch.Tensor | None = None, *, upper: bool) -> torch.Tensor:
    diagonal = 0 if k is None else int(k)
    return torch.triu(x, diagonal) if upper else torch.tril(x, diagonal)


@register("Trilu")
def trilu_op(node: NodeSpec) -> Converted:
    return stateless(trilu, node, 0, 1, upper=bool(node.attr("upper", 1)))


_SCATTER_REDUCE = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}


def scatter_nd(x: torch.Tensor, indices: torch.Tensor, updates: torch.Tensor, reduction: str) -> torch.Tensor:
    """ONNX ScatterND: a copy of ``x`` whose entries at ``indices`` (last axis indexes the
    leading axes) are replaced by, or reduced with, ``updates``."""
    q = indices.shape[-1]
    flat = indices.long().reshape(-1, q)
    sizes = torch.tensor(x.shape[:q], dtype=torch.long, device=flat.device)
    flat = torch.where(flat < 0, flat + sizes, flat)
    index = tuple(flat[:, j] for j in range(q))
    values = updates.reshape((flat.shape[0],) + x.shape[q:])
    if reduction == "none":
        return x.index_put(index, values)
    linear = torch.zeros(flat.shape[0], dtype=torch.long, device=flat.device)
    for j in range(q):
        linear = linear * x.shape[j] + flat[:, j]
    rows = x.reshape((-1,) + x.shape[q:])
    target = linear.reshape((-1,) + (1,) * (rows.dim() - 1)).expand_as(values)
    return rows.scatter_reduce(0, target, values, _SCATTER_REDUCE[reduction]).reshape(x.shape)


@register("ScatterND")
def scatter_nd_op(node: NodeSpec) -> Converted:
    reduction = node.attr("reduction", "none")
    if reduction != "none" and reduction not in _SCATTER_REDUCE:
        raise node.unsupported(f"reduction={reduction}")
    return stateless(scatter_nd, node, 0, 1, 2, reduction=reduction)


class Slice(nn.Module):
    """ONNX Slice-13: starts/ends clamped per axis; negative steps reverse (via index_select)."""

    def __init__(self, consts: list[list[int] | None]) -> None:
        super().__init__()
        self.consts = consts  # starts, ends, axes, steps (None: runtime or absent)

    def forward(self, x: torch.Tensor, *runtime: torch.Tensor | None) -> torch.Tensor:
        starts, ends, axes, steps = [c if r is None else _ints(r) for c, r in zip(self.consts, runtime)]
        axes = axes if axes is not None else list(range(len(starts)))
        steps = steps if steps is not None else [1] * len(starts)
        index: list[slice] = [slice(None)] * x.dim()
        reversed_axes = []
        for start, end, axis, step in zip(starts, ends, axes, steps):
            axis %= x.dim()
            dim = x.shape[axis]
            start = start + dim if start < 0 else start
            end = end + dim if end < 0 else end
            if step > 0:
                index[axis] = slice(min(max(start, 0), dim), min(max(end, 0), dim), step)
            else:
                start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
                reversed_axes.append((axis, torch.arange(start, end, step, device=x.device)))
        x = x[tuple(index)]
        for axis, idx in reversed_axes:
            x = torch.index_select(x, axis, idx)
        return x


@register("Slice")
def slice_op(node: NodeSpec) -> Converted:
    if node.opset < 10:
        starts, ends = list(node.attr("starts")), list(node.attr("ends"))
        axes = node.attr("axes")
        return Slice([starts, ends, None if axes is None else list(axes), None]), (0, None, None, None, None)
    consts = [node.ints(i) if node.is_const(i) else None for i in range(1, 5)]
    return Slice(consts), (0,) + tuple(node.runtime(i) for i in range(1, 5))


class Split(nn.Module):
    """ONNX Split-18: explicit ``split`` sizes, else ``num_outputs`` chunks of
    ``ceil(dim / n)`` (the last smaller), else equal parts."""

    def __init__(self, axis: int, sizes: list[int] | None, parts: int) -> None:
        super().__init__()
        self.axis, self.sizes, self.parts = axis, sizes, parts

    def forward(self, x: torch.Tensor, split: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        sizes = self.sizes if split is None else _ints(split)
        if sizes is None:
            dim = x.shape[self.axis]
            chunk = math.ceil(dim / self.parts)
            sizes = [min(chunk, dim - i * chunk) for i in range(self.parts)]
        return tuple(torch.split(x, sizes, self.axis))


@register("Split")
def split(node: NodeSpec) -> Converted:
    axis, parts = node.attr("axis", 0), len(node.outputs)
    if "split" in node.attrs:
        return Split(axis, list(node.attrs["split"]), parts), (0,)
    if node.has(1) and not node.is_const(1):
        return Split(axis, None, parts), (0, 1)
    return Split(axis, node.ints(1) if node.has(1) else None, parts), (0,)


class Squeeze(WithShapeArg):
    def forward(self, x: torch.Tensor, axes: torch.Tensor | None = None) -> torch.Tensor:
        dims = self.resolve(axes)
        if dims is None:
            return x.squeeze()
        return x.squeeze(tuple(d % x.dim() for d in dims)) if dims else x.squeeze()


@register("Squeeze")
def squeeze(node: NodeSpec) -> Converted:
    return _shape_arg(node, Squeeze, 1, "axes")


class Unsqueeze(WithShapeArg):
    """Axes index the output (ONNX Unsqueeze-13), so insert them in ascending order."""

    def forward(self, x: torch.Tensor, axes: torch.Tensor | None = None) -> torch.Tensor:
        dims = self.resolve(axes)
        rank = x.dim() + len(dims)
        for d in sorted(d % rank for d in dims):
            x = x.unsqueeze(d)
        return x


@register("Unsqueeze")
def unsqueeze(node: NodeSpec) -> Converted:
    return _shape_arg(node, Unsqueeze, 1, "axes")


class Expand(WithShapeArg):
    """Bidirectional broadcast of ``x`` against ``shape`` (ONNX Expand-13)."""

    def forward(self, x: torch.Tensor, shape: torch.Tensor | None = None) -> torch.Tensor:
        return x.expand(torch.broadcast_shapes(x.shape, tuple(self.resolve(shape))))


@register("Expand")
def expand(node: NodeSpec) -> Converted:
    return _shape_arg(node, Expand, 1)


class Tile(WithShapeArg):
    def forward(self, x: torch.Tensor, repeats: torch.Tensor | None = None) -> torch.Tensor:
        return x.repeat(self.resolve(repeats))


@register("Tile")
def tile(node: NodeSpec) -> Converted:
    return _shape_arg(node, Tile, 1)


class ConstantOfShape(WithShapeArg):
    def forward(self, shape: torch.Tensor | None = None) -> torch.Tensor:
        device = None if shape is None else shape.device
        return torch.full(self.resolve(shape), self.value.item(), dtype=self.value.dtype, device=device)


@register("ConstantOfShape")
def constant_of_shape(node: NodeSpec) -> Converted:
    value = tensor_from_proto(node.attrs["value"]) if "value" in node.attrs else torch.zeros(1)
    return ConstantOfShape(node.ints(0), value=value.reshape(-1)[0]), (node.runtime(0),)


def range_(start: torch.Tensor, limit: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype, device=start.device)


@register("Range")
def range_op(node: NodeSpec) -> Converted:
    return stateless(range_, node, 0, 1, 2)
