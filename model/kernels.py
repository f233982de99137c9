"""Matrix products for the engine's hot path.

On the CPU in fp32, torch's default `F.linear` goes through MKL, which on this project's machines
(AMD EPYC) streams a weight matrix at about 18 GB/s in a matrix-vector product and slows down
further for a handful of rows. So:
- up to `native.MAX_ROWS` rows (decode, a question on a cached document, scoring labels), the
  project's own kernels (`model.native`) stream the weights at 27-29 GB/s for one row;
- larger products (prefill) and the small ones where the native kernels are unavailable go
  through oneDNN, also built into torch's x86 wheels: 205-210 GFLOP/s for prefill shapes against
  MKL's 175-190, and 20-27 GB/s for one row.
bf16-stored weights with fp32 states (model/bf16_weights.py) are widened to fp32 for those.
Everywhere else (GPU, bf16, builds without oneDNN) the stock `F.linear` is used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model import native


def _onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


ONEDNN = _onednn_available()


def linear(states: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear(states, weight, bias)`, faster for fp32 on the CPU."""
    if weight.dtype != torch.int8 and native.applies(weight, states):
        out = native.product(states, weight)
        return out if bias is None else out.add_(bias)
    if weight.dtype == torch.bfloat16 and states.dtype == torch.float32 and weight.device.type == "cpu":
        weight = weight.float()  # stored in bf16 for fp32 arithmetic (model/bf16_weights.py): widened here
    cpu_fp32 = weight.device.type == "cpu" and weight.dtype == states.dtype == torch.float32
    if ONEDNN and cpu_fp32 and not torch.is_grad_enabled():
        return torch.ops.mkldnn._linear_pointwise(states, weight, bias, "none", [], "")
    return F.linear(states, weight, bias)
