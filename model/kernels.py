"""Matrix products for the engine's hot path.

On the CPU in fp32, torch's default `F.linear` goes through MKL, which on this project's machines
(AMD EPYC) streams a weight matrix at about 18 GB/s in a matrix-vector product and slows down
further for a handful of rows. oneDNN, also built into torch's x86 wheels, streams the same
matrix at about 30 GB/s (the memory's own speed), and for a few rows it is 1.3-1.6x faster
(benchmarks/generation.py measures both). Decode is one matrix-vector product per weight, so this
choice alone moves decode speed by about two thirds. oneDNN builds a kernel for every new shape,
which costs a first pass over a long prompt more than its few percent of gain on large products
save, so products of more than `ONEDNN_MAX_ROWS` rows (prefill) stay with MKL; the small shapes
(decode, a question on a cached document, scoring labels) are few and quickly built. Everywhere
else (GPU, bf16, builds without oneDNN) the stock `F.linear` is used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


ONEDNN = _onednn_available()
ONEDNN_MAX_ROWS = 64


def runs_fp32_on_cpu(model: torch.nn.Module) -> bool:
    """Whether `model`'s weights are fp32 tensors on the CPU (judged by its first parameter)."""
    parameter = next(model.parameters(), None)
    return parameter is not None and parameter.device.type == "cpu" and parameter.dtype == torch.float32


def uses_onednn(weight: torch.Tensor) -> bool:
    """Whether `linear` multiplies by this weight with oneDNN."""
    return ONEDNN and weight.device.type == "cpu" and weight.dtype == torch.float32


def linear(states: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear(states, weight, bias)`, with oneDNN for fp32 on the CPU."""
    rows = states.numel() // max(states.shape[-1], 1)
    if (
        rows <= ONEDNN_MAX_ROWS
        and uses_onednn(weight)
        and states.dtype == torch.float32
        and not torch.is_grad_enabled()
    ):
        return torch.ops.mkldnn._linear_pointwise(states, weight, bias, "none", [], "")
    return F.linear(states, weight, bias)


def linear_forward(self: torch.nn.Linear, states: torch.Tensor) -> torch.Tensor:
    """An `nn.Linear.forward` that goes through `linear`."""
    return linear(states, self.weight, self.bias)
