"""Cross-modal prompt fusion: text and stride-16 image features condition each other.

In the CroBIM spirit (bidirectional image<->language interaction before decoding), the image
tokens attend to the text and the text tokens attend to the image; the conditioned text becomes
sparse prompts and the conditioned image a dense prompt for SAM's mask decoder, so frame 0 can
be segmented from the text alone. The SAM prompt encoder (box, points, mask) is left untouched.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from mqc_edge.model.text_encoder import masked_mean


class FusedPrompts(NamedTuple):
    """Prompt embeddings for SAM's mask decoder."""

    sparse: torch.Tensor  # [B, K, C]
    dense: torch.Tensor  # [B, C, h, w], a residual on SAM's no-mask dense embedding


class _CrossAttentionBlock(nn.Module):
    """Query tokens attend to context tokens: residual + LayerNorm, then MLP + residual + LayerNorm.

    `positional_values`: the values are context + context_pos (as the keys), so what a query reads
    says where it was read, not only what; off, the values are the context alone (SAM's two-way
    transformer's choice, where position reaches queries and keys only)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, positional_values: bool = False) -> None:
        super().__init__()
        self.positional_values = positional_values
        self.attention = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm_attention = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))
        self.norm_mlp = nn.LayerNorm(dim)

    def forward(
        self,
        query: torch.Tensor,
        query_pos: torch.Tensor,
        context: torch.Tensor,
        context_pos: torch.Tensor,
        context_padding: torch.Tensor | None,
    ) -> torch.Tensor:
        keys = context + context_pos
        values = keys if self.positional_values else context
        attended, _ = self.attention(query + query_pos, keys, values, key_padding_mask=context_padding, need_weights=False)
        query = self.norm_attention(query + attended)
        return self.norm_mlp(query + self.mlp(query))


class _BidirectionalLayer(nn.Module):
    """One round of image->text then text->image cross-attention; `positional_values` (the text
    reading the image's positions with its content) as `_CrossAttentionBlock`'s."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, positional_values: bool = False) -> None:
        super().__init__()
        self.image_from_text = _CrossAttentionBlock(dim, num_heads, mlp_ratio)
        self.text_from_image = _CrossAttentionBlock(dim, num_heads, mlp_ratio, positional_values)

    def forward(
        self, image: torch.Tensor, image_pos: torch.Tensor, text: torch.Tensor, text_padding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        no_pos = torch.zeros_like(text)
        image = self.image_from_text(image, image_pos, text, no_pos, text_padding)
        text = self.text_from_image(text, no_pos, image, image_pos, None)
        return image, text


class PromptFusion(nn.Module):
    """Text tokens + image features `[B, C, h, w]` -> sparse `[B, K, C]` and dense `[B, C, h, w]` prompts.

    `positional_values`: the text tokens read the image's positional encoding with its content, so
    the sparse prompts can say where the referred object is (as a box prompt's corner tokens do);
    off in checkpoints written before it existed (MQCSAMConfig.fusion_positional_values)."""

    def __init__(
        self, dim: int = 256, num_layers: int = 2, num_heads: int = 8, num_sparse_tokens: int = 2, mlp_ratio: int = 4,
        positional_values: bool = False,
    ) -> None:
        super().__init__()
        self.num_sparse_tokens = num_sparse_tokens
        self.layers = nn.ModuleList(
            _BidirectionalLayer(dim, num_heads, mlp_ratio, positional_values) for _ in range(num_layers))
        self.to_sparse = nn.Linear(dim, num_sparse_tokens * dim)
        self.sparse_queries = nn.Parameter(torch.zeros(num_sparse_tokens, dim))
        self.to_dense = nn.Linear(dim, dim)
        # Zero-initialised so that an untrained fusion leaves SAM's dense (no-mask) prompt as it is,
        # the same start ControlNet-style residual branches use.
        nn.init.zeros_(self.to_dense.weight)
        nn.init.zeros_(self.to_dense.bias)

    def forward(
        self,
        image_features: torch.Tensor,
        image_pos: torch.Tensor,
        text_tokens: torch.Tensor,
        text_mask: torch.Tensor,
    ) -> FusedPrompts:
        """`image_pos` is SAM's dense positional encoding `[B or 1, C, h, w]`; `text_mask` True = real token."""
        batch, dim, height, width = image_features.shape
        image = image_features.flatten(2).transpose(1, 2)
        pos = image_pos.flatten(2).transpose(1, 2).expand(batch, -1, -1)
        text = text_tokens
        for layer in self.layers:
            image, text = layer(image, pos, text, ~text_mask)
        pooled = masked_mean(text, text_mask)
        sparse = self.to_sparse(pooled).view(batch, self.num_sparse_tokens, dim) + self.sparse_queries
        dense = self.to_dense(image).transpose(1, 2).reshape(batch, dim, height, width)
        return FusedPrompts(sparse, dense)

