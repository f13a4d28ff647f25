"""Tiny vision transformers (32 px, patch 8: 4 × 4 patches and a class token, T = 17), random
weights: built on ``nn.MultiheadAttention``, with hand-written attention, or with
``F.scaled_dot_product_attention`` (``fused``, as timm runs it)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SIZE, PATCH, WIDTH, HEADS, DEPTH, CLASSES = 32, 8, 16, 2, 2, 3


class HandAttention(nn.Module):
    """softmax(Q Kᵀ/√d) V per head, as timm writes it (qkv in one Linear), written out or fused."""

    def __init__(self, fused: bool) -> None:
        super().__init__()
        self.fused = fused
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH)
        self.proj = nn.Linear(WIDTH, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, HEADS, d // HEADS).permute(2, 0, 3, 1, 4)
        if self.fused:
            mixed = F.scaled_dot_product_attention(q, k, v)
        else:
            mixed = (q @ k.transpose(-2, -1) * (d // HEADS) ** -0.5).softmax(dim=-1) @ v
        return self.proj(mixed.transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    def __init__(self, hand_written: bool, fused: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(WIDTH)
        self.hand_written = hand_written
        self.attn = HandAttention(fused) if hand_written else nn.MultiheadAttention(WIDTH, HEADS, batch_first=True)
        self.norm2 = nn.LayerNorm(WIDTH)
        self.mlp = nn.Sequential(nn.Linear(WIDTH, 2 * WIDTH), nn.GELU(), nn.Linear(2 * WIDTH, WIDTH))

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x) if self.hand_written else self.attn(x, x, x, need_weights=False)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mix(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    def __init__(self, hand_written: bool = False, channels: int = 3, classes: int = CLASSES,
                 fused: bool = False) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(channels, WIDTH, PATCH, PATCH)
        self.cls_token = nn.Parameter(0.02 * torch.randn(1, 1, WIDTH))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, 1 + (SIZE // PATCH) ** 2, WIDTH))
        self.blocks = nn.Sequential(*[Block(hand_written, fused) for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


def tiny_vit(hand_written: bool, seed: int = 0, channels: int = 3, classes: int = CLASSES,
             fused: bool = False) -> TinyViT:
    torch.manual_seed(seed)
    return TinyViT(hand_written, channels, classes, fused).eval()
