"""`--quant int8` on the CPU: int8 weights for decode, fp32 weights for prefill.

Decode reads every active weight once per token, so it is bound by memory traffic: int8 weights
(one scale per row) are a quarter of the fp32 bytes. The native kernels (model/cpu_kernels.cpp)
widen them to fp32 in registers and multiply fp32 activations, so this pays on CPUs without
native bf16 too (torch's own int8 kernel wants bf16 activations, which such CPUs compute slowly;
it is the fallback where the native kernels cannot be built). Prefill is bound by arithmetic,
where fp32 is fast, so it keeps the fp32 weights. The price is memory: both copies are kept.
One exception: the prefill's last position goes through the int8 output head (it is one token).
"""

from __future__ import annotations

import torch
from torch import nn

from model import native
from model.layers import Matrix
from model.moe import Experts


def quantize_rows(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., out, in) -> int8 values and fp32 scales (..., out), one per row. The scales are
    rounded to bf16 values first, so torch's kernel (bf16 scales) computes the same products."""
    scale = (matrix.float().abs().amax(dim=-1).clamp(min=1e-12) / 127).to(torch.bfloat16).float()
    data = torch.round(matrix.float() / scale[..., None]).clamp(-127, 127).to(torch.int8)
    return data, scale


def int8_product(states: torch.Tensor, data: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """states (..., in) @ (data * scale).T -> (..., out) in the states' dtype."""
    flat = states.reshape(-1, states.shape[-1])
    if native.applies(data, flat):
        out = native.product(flat, data, scale)
    else:
        out = torch.ops.aten._weight_int8pack_mm(flat.to(torch.bfloat16).contiguous(), data, scale.to(torch.bfloat16))
    return out.to(states.dtype).reshape(*states.shape[:-1], -1)


class Int8Matrix(Matrix):
    """A matrix with an int8 copy for a handful of rows (decode); more rows use the fp32 weight."""

    def __init__(self, matrix: Matrix):
        super().__init__(matrix.weight)
        data, scale = quantize_rows(self.weight.data)
        self.register_buffer("data", data)
        self.register_buffer("scale", scale)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        if states.numel() // states.shape[-1] > native.MAX_ROWS:  # prefill
            return super().forward(states)
        return int8_product(states, self.data, self.scale)

    def decode_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data, self.scale


class Int8Experts(Experts):
    """Experts with int8 copies for one token (decode); prefill uses the fp32 weights."""

    def __init__(self, experts: Experts):
        super().__init__(experts.gate_up, experts.down)
        gate_up, gate_up_scale = quantize_rows(self.gate_up.data)
        down, down_scale = quantize_rows(self.down.data)
        self.register_buffer("gate_up_data", gate_up)
        self.register_buffer("gate_up_scale", gate_up_scale)
        self.register_buffer("down_data", down)
        self.register_buffer("down_scale", down_scale)

    def pack(self) -> bool:
        return False  # int8 experts have kernels of their own

    def decode_weights(self) -> tuple[torch.Tensor, ...]:
        return self.gate_up_data, self.gate_up_scale, self.down_data, self.down_scale

    def few_token_weights(self, states: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
        """int8 for a handful of rows, as Int8Matrix; more (prefill) read the fp32 weights."""
        if states.shape[0] <= native.MAX_ROWS:
            return super().few_token_weights(states)
        fp32 = (self.gate_up, native.NO_SCALE, self.down, native.NO_SCALE)
        return fp32 if native.applies(self.down[0], states[:1]) else None

    def expert_sum(self, state: torch.Tensor, chosen: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Without the native kernels: torch's int8 kernel, one expert at a time."""
        out = torch.zeros_like(state)
        for slot, expert in enumerate(chosen.tolist()):
            gate, up = int8_product(state, self.gate_up_data[expert], self.gate_up_scale[expert]).chunk(2, dim=-1)
            hidden = torch.nn.functional.silu(gate) * up
            out += int8_product(hidden, self.down_data[expert], self.down_scale[expert]) * weights[slot]
        return out


def quantize_int8(model: nn.Module) -> int:
    """Add int8 decode copies to our GraniteMoE `model` in place (experts, attention, output
    head); return how many matrices got one. Matrices whose rows are not a multiple of 16 long
    (neither int8 kernel takes them) stay fp32 only."""
    count = 0

    def dual(matrix: Matrix) -> Matrix:
        nonlocal count
        if matrix.shape[-1] % 16:
            return matrix
        count += 1
        return Int8Matrix(matrix)

    for layer in model.layers:
        layer.qkv, layer.o = dual(layer.qkv), dual(layer.o)
        if layer.experts.hidden % 16 == 0 and layer.experts.inner % 16 == 0:
            layer.experts = Int8Experts(layer.experts)
            count += 2 * layer.experts.num_experts
    model.head = dual(model.head)
    return count
