"""Attention for the engine's own calls on the CPU: no mask tensors, no copied keys.

transformers' SDPA path serves any batch, so for a chunk of new tokens after a cached prefix it
builds a (chunk x context) mask, copies the keys and values once per query head (grouped-query
attention: 16 query heads share 8 key/value heads here), and the kernel then computes every
masked-out score as well. The engine always runs one unpadded sequence whose new tokens follow
the cache, so the mask is known from the shapes alone. Here a chunk's attention is split in two:
- the cached past, which every new token sees whole: no mask, and the query heads that share a
  key/value head go through the kernel together as one longer query block, so nothing is copied;
- the chunk itself, causal: the kernel's own causal mode skips the masked blocks.
The two halves are merged exactly with their log-sum-exp. A single decode token is the first
case alone. Outputs match transformers' SDPA up to float rounding (tests check it).
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface

from model.kernels import runs_fp32_on_cpu

NAME = "granite_longdoc_cpu"

_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


def engine_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    """query (1, heads, new, dim); key, value (1, kv_heads, past + new, dim), the new tokens last.
    Returns (1, new, heads, dim) like transformers' attention functions. `attention_mask` is not
    read: the engine's sequences are never padded (see the module docstring)."""
    new, context = query.shape[2], key.shape[2]
    past = context - new
    if past == 0:
        out, _ = _causal(query, key, value, scaling)
    elif new == 1:
        out, _ = _grouped_unmasked(query, key, value, scaling)
    else:
        out_past, lse_past = _grouped_unmasked(query, key[:, :, :past], value[:, :, :past], scaling)
        out_new, lse_new = _causal(query, key[:, :, past:], value[:, :, past:], scaling)
        lse = torch.logaddexp(lse_past, lse_new)
        out = out_past * torch.exp(lse_past - lse).unsqueeze(-1) + out_new * torch.exp(lse_new - lse).unsqueeze(-1)
    return out.transpose(1, 2).contiguous(), None


def _grouped_unmasked(query, key, value, scaling):
    """Every query sees every key. Query heads sharing a key/value head are stacked into one
    query block of that head, so the keys are used as they are."""
    batch, heads, new, dim = query.shape
    kv_heads = key.shape[1]
    stacked = query.reshape(batch, kv_heads, heads // kv_heads * new, dim)
    out, lse = _flash(stacked, key, value, 0.0, False, scale=scaling)
    return out.reshape(batch, heads, new, dim), lse.reshape(batch, heads, new)


def _causal(query, key, value, scaling):
    """The chunk against its own keys, causal (query i sees keys 0..i)."""
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    return _flash(query, key, value, 0.0, True, scale=scaling)


def applies_to(model: torch.nn.Module) -> bool:
    """Whether the engine may use this attention for `model`: fp32 on the CPU, where the model
    would otherwise use SDPA."""
    return runs_fp32_on_cpu(model) and getattr(model.config, "_attn_implementation", None) == "sdpa"


AttentionInterface.register(NAME, engine_attention)
