"""Attention probabilities of a transformer, tapped from one forward pass.

Attention rollout and gradient-weighted attention need each layer's attention probabilities
A = softmax(QKᵀ/√d + mask), (N, heads, T, T), as tensors of the autograd graph. Fused kernels
never materialise them, so ``AttentionTap``, a ``TorchFunctionMode`` active during the forward
pass, sees every torch call the model makes and

- ``torch.softmax``/``F.softmax``/``Tensor.softmax`` and the aten ``softmax``/``_softmax`` ops
  (hand-written attention; the ONNX twin's Softmax nodes; ``.pt2`` programs, unflattened or not)
  over the last dim of a (N, heads, T, T) or (N·heads, T, T) tensor: keeps the output;
- ``F.scaled_dot_product_attention`` and its aten op: runs it in the explicit form
  softmax(QKᵀ·scale + mask)·V (dropout as asked) and keeps the probabilities;
- ``F.multi_head_attention_forward`` (``nn.MultiheadAttention``): runs it in the explicit form
  (``explicit_multi_head_attention``) and keeps the probabilities its output is computed from
  (the weights torch returns with ``need_weights=True`` are a reshaped copy outside that graph,
  with no gradient), returning what the caller asked for.

The twin's Softmax must work over the last axis (any opset: before 13 the 2-D coercion at the last
axis is the same softmax, and the twin runs it as one).
A TorchScript module runs in C++ and is not seen; its layered module is the ONNX twin.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from audit.errors import AuditError

SOFTMAX = {torch.softmax, F.softmax, torch.Tensor.softmax, torch.special.softmax,
           torch.ops.aten.softmax.int, torch.ops.aten._softmax.default}
SDPA = {F.scaled_dot_product_attention, torch.ops.aten.scaled_dot_product_attention.default}
_SDPA_NAMES = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
_MHA = inspect.signature(F.multi_head_attention_forward)


def explicit_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       attn_mask: torch.Tensor | None = None, dropout_p: float = 0.0, is_causal: bool = False,
                       scale: float | None = None, enable_gqa: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(output, probabilities) of ``F.scaled_dot_product_attention`` in its documented explicit
    form: P = softmax(Q Kᵀ · scale + mask), scale = 1/√d by default, a boolean mask keeps True
    entries, ``is_causal`` keeps j ≤ i; output = dropout(P) V."""
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        repeat = query.shape[-3] // key.shape[-3]
        key, value = key.repeat_interleave(repeat, -3), value.repeat_interleave(repeat, -3)
    scores = query @ key.transpose(-2, -1) * (1 / math.sqrt(query.shape[-1]) if scale is None else scale)
    if is_causal:
        keep = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
    probabilities = scores.softmax(-1)
    kept = torch.dropout(probabilities, dropout_p, True) if dropout_p > 0 else probabilities
    return kept @ value, probabilities


def explicit_multi_head_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, embed_dim_to_check: int, num_heads: int,
    in_proj_weight: torch.Tensor | None, in_proj_bias: torch.Tensor | None, bias_k: torch.Tensor | None,
    bias_v: torch.Tensor | None, add_zero_attn: bool, dropout_p: float, out_proj_weight: torch.Tensor,
    out_proj_bias: torch.Tensor | None, training: bool = True, key_padding_mask: torch.Tensor | None = None,
    attn_mask: torch.Tensor | None = None, use_separate_proj_weight: bool = False,
    q_proj_weight: torch.Tensor | None = None, k_proj_weight: torch.Tensor | None = None,
    v_proj_weight: torch.Tensor | None = None, static_k: torch.Tensor | None = None,
    static_v: torch.Tensor | None = None, **_: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(output, probabilities (N, heads, L, S)) of ``F.multi_head_attention_forward`` on
    sequence-first (L, N, E) or unbatched (L, E) inputs: per head softmax(Q Kᵀ/√d + mask) V with
    Q, K, V the input projections, then the output projection. Boolean masks mark what may NOT
    be attended (torch's convention for this function); ``is_causal`` is only a hint there, the
    mask is what counts. ``bias_k``/``bias_v``, ``add_zero_attn`` and static keys are refused."""
    if bias_k is not None or bias_v is not None or add_zero_attn or static_k is not None or static_v is not None:
        raise AuditError("the attention tap does not support nn.MultiheadAttention with add_bias_kv, add_zero_attn "
                         "or static keys; use --method gradient or --method grad-cam")
    unbatched = query.dim() == 2
    if unbatched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        key_padding_mask = None if key_padding_mask is None else key_padding_mask.unsqueeze(0)
    length, batch, _ = query.shape
    weights = (q_proj_weight, k_proj_weight, v_proj_weight) if use_separate_proj_weight else in_proj_weight.chunk(3)
    biases = (None,) * 3 if in_proj_bias is None else in_proj_bias.chunk(3)

    def heads(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return F.linear(x, weight, bias).reshape(x.shape[0], batch, num_heads, -1).permute(1, 2, 0, 3)

    q, k, v = (heads(x, w, b) for x, w, b in zip((query, key, value), weights, biases))
    mask = torch.zeros(q.shape[:2] + (length, k.shape[2]), dtype=q.dtype, device=q.device)
    if attn_mask is not None:
        attn_mask = attn_mask.reshape(-1, num_heads, length, k.shape[2]) if attn_mask.dim() == 3 else attn_mask
        mask = mask + (torch.zeros_like(attn_mask, dtype=q.dtype).masked_fill(attn_mask, float("-inf"))
                       if attn_mask.dtype == torch.bool else attn_mask)
    if key_padding_mask is not None:
        padding = key_padding_mask[:, None, None, :]
        mask = mask + (torch.zeros_like(padding, dtype=q.dtype).masked_fill(padding, float("-inf"))
                       if padding.dtype == torch.bool else padding)
    output, probabilities = explicit_attention(q, k, v, mask, dropout_p if training else 0.0)
    output = F.linear(output.permute(2, 0, 1, 3).reshape(length, batch, -1), out_proj_weight, out_proj_bias)
    return (output[:, 0] if unbatched else output), probabilities


class AttentionTap(TorchFunctionMode):
    """``with AttentionTap() as tap: model(x)``; then ``tap.maps``: every attention probability
    tensor of the pass in execution order, and ``tap.events``: their positions in the count of
    ``tick`` calls (forward hooks use it to order module outputs against attention)."""

    def __init__(self) -> None:
        super().__init__()
        self.maps: list[torch.Tensor] = []
        self.events: list[int] = []
        self.clock = 0

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    def _keep(self, probabilities: torch.Tensor) -> None:
        self.maps.append(probabilities)
        self.events.append(self.tick())

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in SDPA:
            output, probabilities = explicit_attention(**dict(zip(_SDPA_NAMES, args)), **kwargs)
            self._keep(probabilities)
            return output
        if func is F.multi_head_attention_forward:
            bound = _MHA.bind(*args, **kwargs)
            bound.apply_defaults()
            output, probabilities = explicit_multi_head_attention(**bound.arguments)
            self._keep(probabilities)
            wanted, average = bound.arguments["need_weights"], bound.arguments["average_attn_weights"]
            if output.dim() == 2:
                probabilities = probabilities[0]
            return output, (probabilities.mean(-3) if average else probabilities) if wanted else None
        result = func(*args, **kwargs)
        if func in SOFTMAX and isinstance(result, torch.Tensor) and result.dim() in (3, 4) \
                and result.shape[-1] == result.shape[-2]:
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            if dim is not None and dim % result.dim() == result.dim() - 1:
                self._keep(result)
        return result


def by_head(maps: list[torch.Tensor], batch: int, path: object, method: str) -> list[torch.Tensor]:
    """The tapped ``maps`` as (N, heads, T, T) for a batch of ``batch`` images: a
    (N·heads, T, T) map is split batch-major (torch's and the exporters' layout). AuditError
    without attention, for windowed attention (Swin: leading dim not N) and for layers over
    different token counts."""
    if not maps:
        raise AuditError(f"{method}: model {path} computes no attention probabilities (a softmax over the last "
                         f"dim of (N, heads, T, T)) that the tap sees; it needs a transformer in torch, .pt2 or "
                         f"ONNX; use --method gradient or --method grad-cam")
    shaped = []
    for a in maps:
        if (a.dim() == 4 and a.shape[0] != batch) or a.shape[0] % batch:
            raise AuditError(f"{method}: model {path} has attention maps {tuple(a.shape)} whose leading dim is not "
                             f"the batch {batch} (windowed attention, as in Swin, mixes no global tokens); "
                             f"use --method grad-cam or a gradient method")
        shaped.append(a.reshape(batch, -1, *a.shape[-2:]))
    tokens = sorted({a.shape[-1] for a in shaped})
    if len(tokens) > 1:
        raise AuditError(f"{method}: model {path} attends over different token counts {tokens} in different "
                         f"layers; rollout needs one token sequence through every layer")
    return shaped
