"""`--quant int8` on the CPU: int8 weights for decode, fp32 weights for prefill.

Decode reads every active weight once per token, so it is bound by memory traffic: int8 weights
(per-row scales) are a quarter of the fp32 bytes, and torch's `_weight_int8pack_mm` kernel
multiplies them with bf16 activations at memory speed. Prefill is bound by arithmetic, where this
CPU is fastest in fp32, so it keeps the fp32 weights. The price is memory: both copies are kept.
One exception: the prefill's last position goes through the int8 output head (it is one token).
"""

from __future__ import annotations

import torch
from torch import nn

from model.moe import ATTENTION_PROJECTIONS, expert_output, fast_experts_forward, replace_layers


class Int8Matrix(nn.Module):
    """An (out, in) matrix as int8 with one bf16 scale per row."""

    def __init__(self, matrix: torch.Tensor):
        super().__init__()
        # The scale is rounded to bf16 first, so the values are quantized with the scale used later.
        scale = (matrix.float().abs().amax(dim=1).clamp(min=1e-12) / 127).to(torch.bfloat16)
        data = torch.round(matrix.float() / scale.float()[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("data", data)
        self.register_buffer("scale", scale)

    def mul(self, states: torch.Tensor) -> torch.Tensor:
        """states (n, in), any float dtype -> (n, out) in the same dtype."""
        out = torch.ops.aten._weight_int8pack_mm(states.to(torch.bfloat16).contiguous(), self.data, self.scale)
        return out.to(states.dtype)


class DualLinear(nn.Module):
    """An nn.Linear that uses int8 weights for a single token and its fp32 weights otherwise."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear
        self.int8 = Int8Matrix(linear.weight.data)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        if states.numel() != states.shape[-1]:  # more than one token: prefill
            return self.linear(states)
        return self.int8.mul(states.reshape(1, -1)).reshape(*states.shape[:-1], -1)


class DualExperts(nn.Module):
    """GraniteMoE experts with int8 copies for decode, dispatched like model.moe's fast path."""

    def __init__(self, experts: nn.Module):
        super().__init__()
        self.experts = experts  # the fp32 weights, for prefill
        self.num_experts = experts.num_experts
        self.act_fn = experts.act_fn
        self.gate_up = nn.ModuleList(Int8Matrix(m) for m in experts.gate_up_proj.data)
        self.down = nn.ModuleList(Int8Matrix(m) for m in experts.down_proj.data)

    def apply_expert(self, expert: int, states: torch.Tensor, decode: bool = False) -> torch.Tensor:
        if not decode:  # prefill, even for an expert that got a single token
            return expert_output(self.experts, expert, states)
        gate, up = self.gate_up[expert].mul(states).chunk(2, dim=-1)
        return self.down[expert].mul(self.act_fn(gate) * up)

    forward = fast_experts_forward


def quantize_int8(model: nn.Module) -> int:
    """Add int8 decode copies to `model` in place (experts, attention, output head); return how
    many matrices got one. Matrices the int8 kernel cannot take (rows not a multiple of 16 long)
    stay fp32 only."""
    return replace_layers(model, _dual_experts, _dual_linear, (*ATTENTION_PROJECTIONS, "lm_head"))


def _dual_experts(experts: nn.Module) -> nn.Module:
    return DualExperts(experts) if experts.hidden_dim % 16 == 0 and experts.intermediate_dim % 16 == 0 else experts


def _dual_linear(linear: nn.Linear) -> nn.Module:
    return DualLinear(linear) if linear.in_features % 16 == 0 else linear
