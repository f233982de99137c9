"""Attention of new positions over the KV cache, for our GraniteMoE (model/granitemoe.py).

The engine always runs one unpadded sequence whose new tokens follow the cache, so the mask is
known from the shapes alone and never built on the CPU. There a chunk's attention is split in two:
- the cached past, which every new token sees whole: no mask, and the query heads that share a
  key/value head go through the kernel together as one longer query block, so nothing is copied
  (grouped-query attention: 16 query heads share 8 key/value heads here);
- the chunk itself, causal: the kernel's own causal mode skips the masked blocks.
The two halves are merged exactly with their log-sum-exp. A single decode token is the first
case alone. In bf16 on a CPU with AMX tiles a chunk of 17 positions or more runs our own kernel
instead (model/cpu_attention.cpp; model/native.py: attends), the past and the chunk in one pass.
Elsewhere (CUDA) torch's scaled_dot_product_attention runs, with the mask of the chunk against
the cache when there is a past. Outputs match transformers' SDPA attention up to
float rounding (tests check it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model import native

_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float) -> torch.Tensor:
    """query (heads, new, dim); key, value (kv_heads, past + new, dim), the new positions last.
    Returns (new, heads, dim)."""
    if native.attends(query, key):
        return native.kernels().attention_bf16(query, key, value, scaling)
    query, key, value = query[None], key[None], value[None]
    if query.device.type != "cpu":
        return _sdpa(query, key, value, scaling)[0].transpose(0, 1)
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
    return out[0].transpose(0, 1).to(query.dtype)  # the log-sum-exps are fp32 whatever the dtype


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


def _sdpa(query, key, value, scaling):
    new, context = query.shape[2], key.shape[2]
    past = context - new
    if past == 0 or new == 1:
        return F.scaled_dot_product_attention(query, key, value, is_causal=past == 0 and new > 1, scale=scaling,
                                              enable_gqa=True)  # fmt: skip
    mask = torch.ones(new, context, dtype=torch.bool, device=query.device).tril(past)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scaling, enable_gqa=True)
