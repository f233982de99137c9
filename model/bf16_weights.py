"""`--quant bf16-weights` on the CPU: the large matrices kept in bf16, the arithmetic in fp32.

Granite's checkpoints store bf16 values, so an fp32 model holds the same numbers in twice the
bytes. Decode reads every active weight once per token and is bound by memory traffic: with bf16
storage it reads half (1.4x faster decode on an AVX2-only CPU, where bf16 *arithmetic* is several
times slower than fp32 and the runtime otherwise picks fp32), and the model takes half the memory.
The activations, norms, router, KV cache and every sum stay fp32:
- a handful of rows (decode, a question) go through the native kernels, which widen bf16 weights
  to fp32 in registers (model/cpu_kernels.cpp);
- more rows (prefill) widen the matrix to fp32 for oneDNN's product (model/kernels.py: linear), a
  copy that costs a few percent of the product's arithmetic.
Where the CPU has AVX512-BF16 the native kernels round x to bf16 (`vdpbf16ps`), as a bf16 model
does; elsewhere the results are fp32's up to summation order.
"""

from __future__ import annotations

import torch

from model.granitemoe import GraniteMoe
from model.layers import Matrix, frozen


def store_bf16_weights(model: GraniteMoe) -> None:
    """In place: attention, experts and the embedding (with the output head tied to it) in bf16;
    norms and router in fp32, which sets the dtype the model computes in (GraniteMoe.dtype)."""
    tied = model.head.weight is model.embed
    model.embed = frozen(model.embed.data.to(torch.bfloat16))
    model.head = Matrix(model.embed if tied else model.head.weight.data.to(torch.bfloat16))
    model.norm = frozen(model.norm.data.float())
    for layer in model.layers:
        layer.qkv = Matrix(layer.qkv.weight.data.to(torch.bfloat16))
        layer.o = Matrix(layer.o.weight.data.to(torch.bfloat16))
        layer.experts.gate_up = frozen(layer.experts.gate_up.data.to(torch.bfloat16))
        layer.experts.down = frozen(layer.experts.down.data.to(torch.bfloat16))
        layer.input_norm = frozen(layer.input_norm.data.float())
        layer.post_norm = frozen(layer.post_norm.data.float())
        layer.router = frozen(layer.router.data.float())
        for cached in ("fp32_small_weights", "router_fp32"):
            layer.__dict__.pop(cached, None)  # functools.cached_property of the old tensors
