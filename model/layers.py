"""The weight matrices of our GraniteMoE (model/granitemoe.py) and the product by each.

`Matrix` is a plain (out, in) weight: `matrix(x)` is `x @ weight.T` through model.kernels (the
native kernels for a handful of rows, oneDNN for prefill, torch elsewhere). The quantized kinds
(model/quant8.py, model/quant4.py) are drop-in replacements with the same call.
"""

from __future__ import annotations

import torch
from torch import nn

from model import native
from model.kernels import linear


def frozen(tensor: torch.Tensor) -> nn.Parameter:
    """`tensor` as a parameter (itself when it already is one, so tied weights stay one)."""
    return tensor if isinstance(tensor, nn.Parameter) else nn.Parameter(tensor, requires_grad=False)


class Matrix(nn.Module):
    """A weight matrix (out, in) and the product by it."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = frozen(weight)

    @property
    def shape(self) -> torch.Size:
        return self.weight.shape

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """states (..., in) -> (..., out)."""
        return linear(states, self.weight)

    def decode_weights(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """What the native decode step reads: the weight and its row scales (none here)."""
        return self.weight, native.NO_SCALE
