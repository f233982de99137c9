"""4-bit (NF4) weights for GraniteMoE, the experts included, with bitsandbytes' functional API.

`BitsAndBytesConfig(load_in_4bit=True)` only replaces `nn.Linear`, and GraniteMoE keeps its
experts (about 90% of the weights) in 3-D parameters, so that route leaves them in 16 bits. Here
every expert matrix and every attention projection is quantized to NF4 in blocks of 64 values;
the embeddings and norms stay in the compute dtype. A matrix is dequantized just before it is
used, so decode reads only the chosen experts' 4-bit weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.moe import ATTENTION_PROJECTIONS, fast_experts_forward, replace_layers

BLOCK = 64


class Packed(nn.Module):
    """One weight matrix (out, in) in NF4; `weight()` gives it back in the compute dtype."""

    def __init__(self, matrix: torch.Tensor):
        super().__init__()
        import bitsandbytes.functional as bnb

        data, self.state = bnb.quantize_4bit(matrix.contiguous(), blocksize=BLOCK, quant_type="nf4")
        self.register_buffer("data", data)
        self.register_buffer("absmax", self.state.absmax)  # counted in the weight memory

    def weight(self) -> torch.Tensor:
        """The matrix in the compute dtype. Quantize after the model is on its device: the
        quantization state does not follow `.to()`, so a moved module says so."""
        import bitsandbytes.functional as bnb

        if self.state.absmax.device != self.data.device:
            raise RuntimeError("a 4-bit module was moved after quantization; quantize on the target device")
        return bnb.dequantize_4bit(self.data, self.state)


class Linear4bit(nn.Module):
    """A drop-in for a bias-free nn.Linear with NF4 weights."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        if linear.bias is not None:
            raise ValueError("Linear4bit covers bias-free layers only")
        self.packed = Packed(linear.weight.data)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return F.linear(states, self.packed.weight())


class Experts4bit(nn.Module):
    """GraniteMoE experts with NF4 weights, dispatched like model.moe's fast path."""

    def __init__(self, experts: nn.Module):
        super().__init__()
        self.num_experts = experts.num_experts
        self.act_fn = experts.act_fn
        self.gate_up = nn.ModuleList(Packed(matrix) for matrix in experts.gate_up_proj.data)
        self.down = nn.ModuleList(Packed(matrix) for matrix in experts.down_proj.data)

    def apply_expert(self, expert: int, states: torch.Tensor, decode: bool = False) -> torch.Tensor:
        gate, up = F.linear(states, self.gate_up[expert].weight()).chunk(2, dim=-1)
        return F.linear(self.act_fn(gate) * up, self.down[expert].weight())

    forward = fast_experts_forward


def quantize_4bit(model: nn.Module) -> int:
    """Quantize `model` in place (on its current device); return how many matrices were packed."""
    return replace_layers(model, Experts4bit, Linear4bit, ATTENTION_PROJECTIONS)
