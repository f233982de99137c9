"""4-bit (NF4) weights for our GraniteMoE (model/granitemoe.py), the experts included, with
bitsandbytes' functional API.

`BitsAndBytesConfig(load_in_4bit=True)` only replaces `nn.Linear`, and GraniteMoE keeps its
experts (about 90% of the weights) in 3-D tensors, so that route would leave them in 16 bits.
Here every expert matrix and the attention projections are quantized to NF4 in blocks of 64
values; the embeddings, norms and output head stay in the compute dtype. A matrix is dequantized
just before it is used, so decode reads only the chosen experts' 4-bit weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.layers import Matrix
from model.moe import Experts

BLOCK = 64


class Packed(nn.Module):
    """One weight matrix (out, in) in NF4; `weight()` gives it back in the compute dtype."""

    def __init__(self, matrix: torch.Tensor):
        super().__init__()
        import bitsandbytes.functional as bnb

        data, self.state = bnb.quantize_4bit(matrix.contiguous(), blocksize=BLOCK, quant_type="nf4")
        self.register_buffer("data", data)
        self.register_buffer("absmax", self.state.absmax)  # counted in the weight memory
        self.shape = matrix.shape

    def weight(self) -> torch.Tensor:
        """The matrix in the compute dtype. Quantize after the model is on its device: the
        quantization state does not follow `.to()`, so a moved module says so."""
        import bitsandbytes.functional as bnb

        if self.state.absmax.device != self.data.device:
            raise RuntimeError("a 4-bit module was moved after quantization; quantize on the target device")
        return bnb.dequantize_4bit(self.data, self.state)


class Matrix4bit(nn.Module):
    """A drop-in for `Matrix` with NF4 weights."""

    def __init__(self, matrix: Matrix):
        super().__init__()
        self.packed = Packed(matrix.weight.data)
        self.shape = matrix.shape

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return F.linear(states, self.packed.weight())

    def decode_weights(self) -> None:
        return None  # no native kernel reads NF4


class Experts4bit(Experts):
    """Experts with NF4 weights, dispatched as `Experts` dispatches."""

    packed = False  # NF4 weights are never packed for the AMX kernels

    def pack(self) -> bool:
        return False

    def __init__(self, experts: Experts):
        nn.Module.__init__(self)  # not Experts.__init__: the full-precision tensors are not kept
        self.num_experts, self.hidden, self.inner = experts.num_experts, experts.hidden, experts.inner
        self.gate_up_packed = nn.ModuleList(Packed(matrix) for matrix in experts.gate_up.data)
        self.down_packed = nn.ModuleList(Packed(matrix) for matrix in experts.down.data)

    def expert(self, index: int, states: torch.Tensor) -> torch.Tensor:
        gate, up = F.linear(states, self.gate_up_packed[index].weight()).chunk(2, dim=-1)
        return F.linear(F.silu(gate) * up, self.down_packed[index].weight())

    def decode_weights(self) -> None:
        return None  # no native kernel reads NF4


def quantize_4bit(model: nn.Module) -> int:
    """Quantize our GraniteMoE `model` in place (on its current device); return how many
    matrices were packed. Each layer's old tensors are freed as soon as it is done, so memory
    never holds the whole model twice."""
    count = 0
    for layer in model.layers:
        layer.qkv, layer.o = Matrix4bit(layer.qkv), Matrix4bit(layer.o)
        layer.experts = Experts4bit(layer.experts)
        count += 2 + 2 * layer.experts.num_experts
    return count
