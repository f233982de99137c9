"""fp32 weights kept in oneDNN's packed layout, for the CPU.

A matrix product first rearranges ("packs") the weight matrix into the blocks its kernel reads.
For many rows that is a small share of the work; for a handful of rows (a question on a cached
document: about ten tokens per expert) the packing costs as much as the product itself, and it
is repeated for every call. Packing each weight once, when the model is loaded, removes it: on
the development machine a 1024x1024 expert matrix with ten rows streams at about 20 GB/s instead
of 13.6, and prefill products run at about 205 GFLOP/s instead of 150-190 with MKL.

The price: a single row (decode) streams a packed matrix at about 21 GB/s against 26 in the
ordinary layout. Measured whole, packing the experts and the attention projections still wins:
leaving the projections unpacked gained no decode speed within the noise and lost 5-10% of
prefill and of the cached question. The output head stays an ordinary tensor (tied to the
embeddings in the real model; one row through it is fast with `model.kernels.linear`). The
packed copy replaces the original: memory does not grow.
"""

from __future__ import annotations

import torch
from torch import nn

from model.kernels import ONEDNN, runs_fp32_on_cpu
from model.moe import fast_experts_forward, replace_layers

_ROWS_HINT = 16  # oneDNN picks the blocking for this many rows; it suits 1 to thousands here


class PackedMatrix:
    """One (out, in) fp32 matrix in oneDNN's packed layout."""

    def __init__(self, matrix: torch.Tensor):
        self.shape = tuple(matrix.shape)
        self.data = torch.ops.mkldnn._reorder_linear_weight(matrix.detach().float().contiguous(), _ROWS_HINT)

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.shape[1] * 4

    def mul(self, states: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """states (..., in) fp32 -> (..., out)."""
        return torch.ops.mkldnn._linear_pointwise(states, self.data, bias, "none", [], "")

    def dense(self) -> torch.Tensor:
        """The matrix in the ordinary layout (a copy)."""
        return self.data.to_dense()

    def __deepcopy__(self, memo: dict) -> PackedMatrix:
        return PackedMatrix(self.dense())  # packed tensors have no storage to copy


class PackedLinear(nn.Module):
    """An inference-only nn.Linear with a packed weight."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.matrix = PackedMatrix(linear.weight)
        self.bias = linear.bias

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.matrix.mul(states, self.bias)


class PackedExperts(nn.Module):
    """GraniteMoE experts with packed matrices, dispatched like model.moe's fast path."""

    def __init__(self, experts: nn.Module):
        super().__init__()
        self.num_experts = experts.num_experts
        self.hidden_dim, self.intermediate_dim = experts.hidden_dim, experts.intermediate_dim
        self.act_fn = experts.act_fn
        self.gate_up = [PackedMatrix(matrix) for matrix in experts.gate_up_proj.data]
        self.down = [PackedMatrix(matrix) for matrix in experts.down_proj.data]

    def apply_expert(self, expert: int, states: torch.Tensor, decode: bool = False) -> torch.Tensor:
        gate, up = self.gate_up[expert].mul(states).chunk(2, dim=-1)
        return self.down[expert].mul(self.act_fn(gate) * up)

    forward = fast_experts_forward


def can_pack(model: nn.Module) -> bool:
    """Packing needs oneDNN and a GraniteMoE model in fp32 on the CPU."""
    has_experts = any(type(module).__name__ == "GraniteMoeExperts" for module in model.modules())
    return ONEDNN and has_experts and runs_fp32_on_cpu(model)


def pack_for_cpu(model: nn.Module, linear_names: tuple[str, ...] = ()) -> int:
    """Replace the experts of `model` (and the bias-free linears named in `linear_names`) by
    packed ones, in place; return how many matrices were packed (0 when `can_pack` says no).
    Run it after `quantize_int8`, whose int8 decode copies are made from the unpacked weights."""
    if not can_pack(model):
        return 0
    with torch.no_grad():
        return replace_layers(model, PackedExperts, PackedLinear, linear_names)


def packed_bytes(model: nn.Module) -> int:
    """Bytes of the packed matrices in `model` (they are not parameters)."""
    total = 0
    for module in model.modules():
        if isinstance(module, PackedLinear):
            total += module.matrix.nbytes
        elif isinstance(module, PackedExperts):
            total += sum(matrix.nbytes for matrix in (*module.gate_up, *module.down))
    return total
