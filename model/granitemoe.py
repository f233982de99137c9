"""Our own GraniteMoE forward pass, in the style of gpt-fast's `model.py` and mlx-lm's
`models/granitemoe.py`: the whole network in one file, over our KV cache (model/kvcache.py).

Granite-3.x MoE is a Llama-like decoder with four scalars of its own (the "muP" multipliers):
    h = embed(ids) * embedding_multiplier
    per layer:  h = h + attention(rms_norm(h)) * residual_multiplier   (scores scaled by attention_multiplier)
                h = h + experts(rms_norm(h)) * residual_multiplier     (top-k of E experts, softmax over the k)
    logits = lm_head(rms_norm(h)) / logits_scaling
Attention is grouped-query with rotary positions (rotate-half); each expert is a SwiGLU MLP
whose gate and up rows are stored together.

It reads the tensors of the same checkpoints transformers reads, under either naming: the
original (`block_sparse_moe.input_linear`, `output_linear`, `router.layer`) and transformers 5's
(`experts.gate_up_proj`, `experts.down_proj`, `router.weight`). `from_stock` takes a loaded
transformers model's tensors without copying them (the attention projections are joined into
one matrix, a small copy). Everything else about running it (which product kernel, how experts
are dispatched, int8/4-bit weights) lives in model/layers.py and model/moe.py, shared with the
quantized variants.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model import native
from model.attention import attend
from model.kvcache import KVCache
from model.layers import Matrix
from model.moe import Experts


def supports(config: Any) -> bool:
    """Whether this file runs a checkpoint of `config` (GraniteMoE with plain rotary positions)."""
    if getattr(config, "model_type", None) != "granitemoe":
        return False
    return (
        rope_parameters(config).get("rope_type", "default") == "default"
        and not getattr(config, "attention_bias", False)
        and getattr(config, "hidden_act", "silu") == "silu"
    )


def rope_parameters(config: Any) -> dict:
    """The rotary settings under transformers 5's name, or built from the older attributes."""
    found = getattr(config, "rope_parameters", None)
    if found:
        return dict(found)
    scaling = getattr(config, "rope_scaling", None) or {}
    return {"rope_type": scaling.get("rope_type", scaling.get("type", "default")), "rope_theta": config.rope_theta}


def rms_norm(states: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """As transformers computes it: in fp32, then back to the states' dtype before the weight
    (on the CPU in one native pass where the kernels run)."""
    if native.norms(states, weight):
        return native.kernels().rms_norm_rows(states.contiguous(), weight, eps)
    as_float = states.float()
    normed = as_float * torch.rsqrt(as_float.pow(2).mean(-1, keepdim=True) + eps)
    return weight * normed.to(states.dtype)


def rotate(states: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary positions, rotate-half layout: states (heads, n, dim), cos/sin (n, dim)."""
    half = states.shape[-1] // 2
    rotated = torch.cat((-states[..., half:], states[..., :half]), dim=-1)
    return states * cos + rotated * sin


class Layer(nn.Module):
    """One decoder layer: attention, then the experts, each in a residual branch."""

    def __init__(self, model: GraniteMoe, tensors: dict[str, torch.Tensor]):
        super().__init__()
        self.input_norm = nn.Parameter(tensors["input_norm"], requires_grad=False)
        self.post_norm = nn.Parameter(tensors["post_norm"], requires_grad=False)
        self.qkv = Matrix(torch.cat([tensors["q"], tensors["k"], tensors["v"]]))
        self.o = Matrix(tensors["o"])
        self.router = nn.Parameter(tensors["router"], requires_grad=False)
        self.experts = Experts(tensors["gate_up"], tensors["down"])
        self.heads, self.kv_heads, self.head_dim = model.heads, model.kv_heads, model.head_dim
        self.top_k, self.eps = model.top_k, model.eps
        self.scaling, self.residual = model.attention_multiplier, model.residual_multiplier

    def forward(
        self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache, index: int
    ) -> torch.Tensor:
        """h (n, hidden) of the positions `cache.length` onwards -> the same after this layer."""
        if h.shape[0] == 1 and (weights := self.fused_decode_weights(h, cache)) is not None:
            state = h.float()  # the one-call layer computes in fp32 (the same tensor when h is fp32)
            native.kernels().decode_layer(state, *weights, cache.buffer[index], cache.length, cos.float(), sin.float(),
                                          self.heads, self.top_k, self.eps, self.scaling, self.residual)  # fmt: skip
            return state.to(h.dtype)
        # h + branch * residual in one operator (one rounding in bf16 where transformers rounds twice)
        h = torch.add(h, self.attention(rms_norm(h, self.input_norm, self.eps), cos, sin, cache, index),
                      alpha=self.residual)  # fmt: skip
        x = rms_norm(h, self.post_norm, self.eps)
        return torch.add(h, self.experts(x, *self.route(x)), alpha=self.residual)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's top-k experts and their weights (softmax over the k), as transformers does."""
        top_logits, top_index = F.linear(x, self.router).float().topk(self.top_k, dim=-1)
        return top_index, torch.softmax(top_logits, dim=-1).type_as(x)

    def fused_decode_weights(self, h: torch.Tensor, cache: KVCache) -> tuple | None:
        """The tensors of the native one-call decode step (model/cpu_kernels.cpp: decode_layer),
        in its order, or None where it does not apply: it runs on the CPU, computes in fp32 over
        an fp32 or bf16 cache, and reads fp32, bf16 or int8 matrices (not NF4)."""
        if cache.dtype not in (torch.float32, torch.bfloat16) or not native.applies(self.router, h):
            return None
        qkv, o, experts = self.qkv.decode_weights(), self.o.decode_weights(), self.experts.decode_weights()
        if qkv is None or o is None or experts is None or self.head_dim % 16 or self.experts.inner % 16:
            return None
        return (*self.fp32_small_weights, *qkv, *o, self.router_fp32, *experts)

    @functools.cached_property
    def fp32_small_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The norms' weights in fp32 (themselves when they are): the one-call step reads fp32."""
        return self.input_norm.float(), self.post_norm.float()

    @functools.cached_property
    def router_fp32(self) -> torch.Tensor:
        return self.router.float()

    def attention(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache, index: int
    ) -> torch.Tensor:
        n, dim = x.shape[0], self.head_dim
        projected = self.qkv(x).view(n, self.heads + 2 * self.kv_heads, dim)
        q, k, v = (part.transpose(0, 1) for part in projected.split([self.heads, self.kv_heads, self.kv_heads], 1))
        if native.rotates(projected, cos):  # q's and k's heads in place, one pass (the views see it)
            native.kernels().rotate_heads(projected, cos, sin, self.heads + self.kv_heads)
        else:
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        keys, values = cache.write(index, k, v)
        out = attend(q, keys, values, self.scaling)  # (n, heads, dim)
        return self.o(out.reshape(n, self.heads * dim))


class GraniteMoe(nn.Module):
    """A GraniteMoE causal LM: `forward(ids, cache, keep)` -> logits (1, keep or n, vocab)."""

    def __init__(self, config: Any, tensors: Mapping[str, torch.Tensor], generation_config: Any = None):
        super().__init__()
        if not supports(config):
            raise ValueError("model.granitemoe runs GraniteMoE checkpoints with plain rotary positions only")
        self.config = config
        self.generation_config = generation_config
        self.hidden = config.hidden_size
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.top_k, self.eps = config.num_experts_per_tok, config.rms_norm_eps
        self.attention_multiplier = config.attention_multiplier
        self.residual_multiplier = config.residual_multiplier
        self.embedding_multiplier = config.embedding_multiplier
        self.logits_scaling = config.logits_scaling
        named = _by_role(tensors, config.num_hidden_layers)
        self.embed = nn.Parameter(named["embed"], requires_grad=False)
        self.layers = nn.ModuleList(Layer(self, layer) for layer in named["layers"])
        self.norm = nn.Parameter(named["norm"], requires_grad=False)
        head = named.get("head")
        tied = head is None or head.data_ptr() == named["embed"].data_ptr()
        self.head = Matrix(self.embed if tied else head)
        theta = rope_parameters(config)["rope_theta"]
        inv_freq = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float) / self.head_dim))
        self.register_buffer("inv_freq", inv_freq.to(self.embed.device), persistent=False)

    @classmethod
    def from_stock(cls, model: nn.Module) -> GraniteMoe:
        """Ours, on the tensors of a transformers GraniteMoeForCausalLM (shared, not copied)."""
        tensors = {name: tensor.detach() for name, tensor in model.state_dict(keep_vars=True).items()}
        return cls(model.config, tensors, getattr(model, "generation_config", None))

    @property
    def device(self) -> torch.device:
        return self.embed.device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype it computes in: its final norm's (the embedding's too, except where the large
        matrices are stored in bf16 for fp32 arithmetic: model/bf16_weights.py)."""
        return self.norm.dtype

    def new_cache(self, reserve: int = 0) -> KVCache:
        return KVCache(len(self.layers), self.kv_heads, self.head_dim, self.dtype, self.device, reserve)

    def forward(self, ids: torch.Tensor, cache: KVCache, keep: int = 1) -> torch.Tensor:
        """ids (n,) or (1, n), the positions after `cache.length`; the cache gains them. Returns the
        logits of the last `keep` positions (all when keep is 0): (1, keep or n, vocab), fp32 on
        the CPU in fp32, else the model's dtype."""
        ids = ids.reshape(-1)
        start, n = cache.length, ids.numel()
        cache.make_room(start + n)
        cos, sin = self.rotary(start, n)
        h = F.embedding(ids, self.embed).to(self.dtype) * self.embedding_multiplier
        for index, layer in enumerate(self.layers):
            h = layer(h, cos, sin, cache, index)
        cache.length = start + n  # only now: a pass cut short leaves the cache as it was
        if keep:
            h = h[-keep:]
        return (self.head(rms_norm(h, self.norm, self.eps)) / self.logits_scaling)[None]

    def pack_experts(self) -> bool:
        """Pack every layer's experts for the CPU's bf16 products where they can be (model/moe.py:
        Experts.pack); True when they are."""
        return all([layer.experts.pack() for layer in self.layers])

    def warm_up(self, chunk: int = 2048) -> None:
        """Build the CPU's product kernels for the experts' padded row counts of a `chunk`-token
        prefill now, at load (model/moe.py: ROW_MULTIPLE). One layer serves all: the kernels
        depend on the shapes, not the weights."""
        with torch.inference_mode():
            experts = self.layers[0].experts
            if experts.decode_weights() is None:
                return  # 4-bit experts: dequantized to a fixed shape, nothing per row count
            experts.warm_up(2 * chunk * self.top_k // experts.num_experts, self.dtype)  # twice an expert's mean share

    def rotary(self, start: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin (n, head_dim) of positions start..start+n-1, computed as transformers does."""
        positions = torch.arange(start, start + n, device=self.device, dtype=torch.float)
        freqs = positions[:, None] * self.inv_freq[None, :]
        angles = torch.cat((freqs, freqs), dim=-1)
        return angles.cos().to(self.dtype), angles.sin().to(self.dtype)


# Each role, then the names checkpoints give it: the original Granite names first, then
# transformers 5's. Layer roles are under "model.layers.{i}.".
_ROLES = {
    "embed": ("model.embed_tokens.weight",),
    "norm": ("model.norm.weight",),
    "head": ("lm_head.weight",),
}
_LAYER_ROLES = {
    "input_norm": ("input_layernorm.weight",),
    "post_norm": ("post_attention_layernorm.weight",),
    "q": ("self_attn.q_proj.weight",),
    "k": ("self_attn.k_proj.weight",),
    "v": ("self_attn.v_proj.weight",),
    "o": ("self_attn.o_proj.weight",),
    "router": ("block_sparse_moe.router.layer.weight", "block_sparse_moe.router.weight"),
    "gate_up": ("block_sparse_moe.input_linear.weight", "block_sparse_moe.experts.gate_up_proj"),
    "down": ("block_sparse_moe.output_linear.weight", "block_sparse_moe.experts.down_proj"),
}


def _by_role(tensors: Mapping[str, torch.Tensor], layers: int) -> dict:
    def find(names: tuple[str, ...], prefix: str = "", required: bool = True) -> torch.Tensor | None:
        for name in names:
            if prefix + name in tensors:
                return tensors[prefix + name]
        if required:
            raise ValueError(f"the checkpoint has no tensor {prefix + names[0]}")
        return None

    named: dict = {role: find(names, required=role != "head") for role, names in _ROLES.items()}
    named["layers"] = [
        {role: find(names, f"model.layers.{index}.") for role, names in _LAYER_ROLES.items()} for index in range(layers)
    ]
    return named
