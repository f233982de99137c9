"""Decode steps of fixed shapes, so that a GPU can replay them as CUDA graphs (gpt-fast's way).

A dynamic decode step (model/granitemoe.py) slices the KV cache to the positions held and lets
Python pick the experts: every step has new shapes and host round trips, so on a GPU each of
its few hundred small kernels is launched one by one. Here the step reads the position from a
tensor, writes this token's key and value with `index_copy_`, attends over the whole buffer with
a mask of the positions held, and gathers the chosen experts' weights by index: the same shapes
every step, nothing read back to Python, so `torch.compile(mode="reduce-overhead")` captures it
once per cache buffer and replays it. The price: attention reads the buffer's whole capacity
(the engine sizes it to the request, so little is wasted) and the gather copies the 8 chosen
experts' weights once per step.

`StaticDecoder(model, compiled=True)` is what the engine uses on CUDA for bf16/fp16 weights;
4-bit experts are dequantized per chosen expert in Python, so they keep the dynamic step. On the
CPU (`compiled=False`) it runs as plain torch code: the tests compare its tokens with the
dynamic path's there.
"""

from __future__ import annotations

import logging
import weakref

import torch
import torch.nn.functional as F

from model.errors import first_line
from model.granitemoe import GraniteMoe, Layer, rms_norm, rotate
from model.kvcache import KVCache
from model.moe import Experts
from model.request_state import is_out_of_memory

logger = logging.getLogger(__name__)


def applies_to(model: GraniteMoe) -> bool:
    """Whether every layer keeps dense experts (not the 4-bit ones, dequantized per expert)."""
    return all(type(layer.experts) is Experts for layer in model.layers)


class StaticDecoder:
    """The engine's runner for our GraniteMoE on CUDA: a single new token (decode) goes through
    the fixed-shape step, more tokens (prefill) through the model itself. Same calls as the model:
    `decoder(ids, cache, keep)` -> logits (1, keep or n, vocab), `decoder.new_cache(reserve)`."""

    def __init__(self, model: GraniteMoe, *, compiled: bool):
        self.model = model
        self.compiled = compiled
        self.failed = False
        self._zeroed: weakref.ref | None = None  # the cache buffer whose unwritten positions were zeroed
        self._step = torch.compile(self.step, mode="reduce-overhead", fullgraph=True) if compiled else self.step

    def new_cache(self, reserve: int = 0) -> KVCache:
        return self.model.new_cache(reserve)

    def __call__(self, ids: torch.Tensor, cache: KVCache, keep: int = 1) -> torch.Tensor:
        if self.failed or ids.numel() != 1:
            return self.model(ids, cache, keep)
        return self.decode(int(ids.reshape(-1)[0]), cache)

    def decode(self, token: int, cache: KVCache) -> torch.Tensor:
        """One token's logits (1, 1, vocab); the cache gains its key and value."""
        device = self.model.device
        position = cache.length
        cache.make_room(position + 1)
        if self._zeroed is None or self._zeroed() is not cache.buffer:
            # Attention reads the whole capacity under a mask, and 0 x NaN is NaN: positions never
            # written (torch.empty's memory, which may hold any bits) must hold numbers.
            cache.buffer[:, :, :, position:].zero_()
            self._zeroed = weakref.ref(cache.buffer)
        try:
            if self.compiled:  # the cache is written in place: a static address, as gpt-fast's buffers
                torch._dynamo.mark_static_address(cache.buffer)
            ids, where = torch.tensor([token], device=device), torch.tensor([position], device=device)
            logits = self._step(ids, where, cache.buffer)
        except Exception as exc:  # never yet run on a GPU: a failure must cost speed, not the answer
            if is_out_of_memory(exc):
                raise
            logger.warning("the CUDA-graph decode step failed (%s); decoding step by step", first_line(exc))
            self.failed = True  # what it wrote at `position` is written again by the dynamic step
            return self.model(torch.tensor([token], device=device), cache)
        cache.length = position + 1
        return logits.clone() if self.compiled else logits  # a replayed graph reuses its output memory

    def step(self, ids: torch.Tensor, position: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
        """ids, position (1,); buffer (layers, 2, kv_heads, capacity, head_dim) -> logits (1, 1, vocab)."""
        model = self.model
        freqs = position.float()[:, None] * model.inv_freq[None, :]
        angles = torch.cat((freqs, freqs), dim=-1)
        cos, sin = angles.cos().to(model.dtype), angles.sin().to(model.dtype)
        visible = torch.arange(buffer.shape[3], device=buffer.device) <= position  # (capacity,)
        h = F.embedding(ids, model.embed) * model.embedding_multiplier
        for index, layer in enumerate(model.layers):
            h = _layer(layer, h, cos, sin, buffer[index], position, visible)
        return (model.head(rms_norm(h, model.norm, model.eps)) / model.logits_scaling)[None]


def _layer(layer: Layer, h, cos, sin, kv: torch.Tensor, position: torch.Tensor, visible: torch.Tensor):
    dim, heads, kv_heads = layer.head_dim, layer.heads, layer.kv_heads
    x = rms_norm(h, layer.input_norm, layer.eps)
    q, k, v = layer.qkv(x).split([heads * dim, kv_heads * dim, kv_heads * dim], dim=-1)
    q = rotate(q.view(1, heads, dim).transpose(0, 1), cos, sin)
    kv[0].index_copy_(1, position, rotate(k.view(1, kv_heads, dim).transpose(0, 1), cos, sin))
    kv[1].index_copy_(1, position, v.view(1, kv_heads, dim).transpose(0, 1))
    mask = visible[None, None, None, :]
    out = F.scaled_dot_product_attention(q[None], kv[0][None], kv[1][None], attn_mask=mask, scale=layer.scaling,
                                         enable_gqa=True)  # fmt: skip
    h = h + layer.o(out.reshape(1, heads * dim)) * layer.residual
    x = rms_norm(h, layer.post_norm, layer.eps)
    top_index, weights = layer.route(x)
    return h + _experts(layer.experts, x, top_index[0], weights[0]) * layer.residual


def _experts(experts: Experts, x: torch.Tensor, chosen: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """x (1, hidden) through the k chosen experts (their weights gathered by index), weighted."""
    k = chosen.shape[0]
    column = x.reshape(1, -1, 1).expand(k, -1, 1)
    gate, up = torch.bmm(experts.gate_up[chosen], column).chunk(2, dim=1)  # (k, inner, 1) each
    out = torch.bmm(experts.down[chosen], F.silu(gate) * up)  # (k, hidden, 1)
    return (out[..., 0] * weights[:, None]).sum(dim=0, keepdim=True)
