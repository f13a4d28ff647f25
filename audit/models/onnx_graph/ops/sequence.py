"""Sequence operators (ONNX-11+). A sequence is a Python list of tensors in the value slots;
every operator returns a new list, so values read elsewhere are never mutated. A scripted
``torch.cat`` of a list becomes ``SequenceConstruct``/``SequenceInsert`` → ``ConcatFromSequence``.
"""

from __future__ import annotations

import torch

from audit.models.onnx_graph.ops.base import Converted, NodeSpec, register, stateless
from audit.models.onnx_graph.ops.elementwise import torch_dtype

Sequence = list[torch.Tensor]


def _position(pos: torch.Tensor | None, length: int, default: int) -> int:
    """A sequence position; negative counts from the end (ONNX: ``[-n, n-1]``, insert ``[-n, n]``)."""
    if pos is None:
        return default
    p = int(pos)
    return p + length if p < 0 else p


def sequence_empty() -> Sequence:
    return []


@register("SequenceEmpty")
def sequence_empty_op(node: NodeSpec) -> Converted:
    if "dtype" in node.attrs:
        torch_dtype(node, node.attrs["dtype"])  # refuse dtypes torch lacks up front
    return stateless(sequence_empty, node)


def sequence_construct(*xs: torch.Tensor) -> Sequence:
    return list(xs)


@register("SequenceConstruct")
def sequence_construct_op(node: NodeSpec) -> Converted:
    return stateless(sequence_construct, node)


def sequence_insert(seq: Sequence, x: torch.Tensor, pos: torch.Tensor | None = None) -> Sequence:
    p = _position(pos, len(seq), len(seq))
    return seq[:p] + [x] + seq[p:]


@register("SequenceInsert")
def sequence_insert_op(node: NodeSpec) -> Converted:
    return stateless(sequence_insert, node, 0, 1, 2)


def sequence_erase(seq: Sequence, pos: torch.Tensor | None = None) -> Sequence:
    p = _position(pos, len(seq), len(seq) - 1)
    return seq[:p] + seq[p + 1:]


@register("SequenceErase")
def sequence_erase_op(node: NodeSpec) -> Converted:
    return stateless(sequence_erase, node, 0, 1)


def sequence_at(seq: Sequence, pos: torch.Tensor) -> torch.Tensor:
    return seq[_position(pos, len(seq), 0)]


@register("SequenceAt")
def sequence_at_op(node: NodeSpec) -> Converted:
    return stateless(sequence_at, node, 0, 1)


def sequence_length(seq: Sequence) -> torch.Tensor:
    return torch.tensor(len(seq), dtype=torch.int64, device=seq[0].device if seq else None)


@register("SequenceLength")
def sequence_length_op(node: NodeSpec) -> Converted:
    return stateless(sequence_length, node, 0)


def concat_from_sequence(seq: Sequence, axis: int, new_axis: bool) -> torch.Tensor:
    """``torch.cat`` along ``axis``, or ``torch.stack`` (a new axis; ``axis`` may be ``rank``)."""
    return torch.stack(seq, axis) if new_axis else torch.cat(seq, axis)


@register("ConcatFromSequence")
def concat_from_sequence_op(node: NodeSpec) -> Converted:
    return stateless(concat_from_sequence, node, 0, axis=node.attr("axis"), new_axis=bool(node.attr("new_axis", 0)))


def split_to_sequence(x: torch.Tensor, split: torch.Tensor | None = None, *, axis: int, keepdims: bool) -> Sequence:
    """ONNX SplitToSequence: ``split`` a scalar chunk length (the last chunk smaller), a list of
    lengths, or absent (chunks of 1, squeezed unless ``keepdims``)."""
    if split is None:
        parts = list(torch.split(x, 1, axis))
        return parts if keepdims else [p.squeeze(axis) for p in parts]
    if split.dim() == 0:
        size = int(split)
        return list(torch.split(x, size, axis)) if x.shape[axis] else []
    return list(torch.split(x, [int(s) for s in split.tolist()], axis))


@register("SplitToSequence")
def split_to_sequence_op(node: NodeSpec) -> Converted:
    return stateless(split_to_sequence, node, 0, 1, axis=node.attr("axis", 0), keepdims=bool(node.attr("keepdims", 1)))
