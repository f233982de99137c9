"""The experts of one GraniteMoE layer (model/granitemoe.py) and their dispatch.

- decode (one token): only the token's top-k experts run, so only their weights are read; for
  fp32 on the CPU all k run in one native call (`model.native`), which streams their weights at
  the memory's speed;
- prefill (many tokens): the (token, slot) pairs are sorted by expert once, so every expert runs
  one matrix product over a contiguous block of its tokens.
The quantized kinds (model/quant8.py, model/quant4.py) subclass `Experts` and change how an
expert's weights are read, not the dispatch. Outputs match transformers' GraniteMoE experts up to
float rounding (tests check it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model import native
from model.kernels import linear
from model.layers import frozen


class Experts(nn.Module):
    """E SwiGLU experts: gate_up (E, 2 * inner, hidden), gate rows first; down (E, hidden, inner)."""

    def __init__(self, gate_up: torch.Tensor, down: torch.Tensor):
        super().__init__()
        self.gate_up = frozen(gate_up)
        self.down = frozen(down)
        self.num_experts, self.hidden, self.inner = down.shape[0], down.shape[1], down.shape[2]

    def forward(self, states: torch.Tensor, top_index: torch.Tensor, top_weights: torch.Tensor) -> torch.Tensor:
        """states (tokens, hidden); top_index, top_weights (tokens, k) -> (tokens, hidden)."""
        if states.shape[0] == 1:
            return self.one_token(states, top_index[0], top_weights[0])
        return self.grouped(states, top_index, top_weights)

    def decode_weights(self) -> tuple[torch.Tensor, ...] | None:
        """What the native decode step reads: gate_up, its row scales, down, its row scales."""
        return self.gate_up, native.NO_SCALE, self.down, native.NO_SCALE

    def expert(self, index: int, states: torch.Tensor) -> torch.Tensor:
        """Expert `index` applied to `states` (rows, hidden)."""
        gate, up = linear(states, self.gate_up[index]).chunk(2, dim=-1)
        return linear(F.silu(gate) * up, self.down[index])

    def one_token(self, state: torch.Tensor, chosen: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if native.applies(self.down[0], state) and self.gate_up.is_contiguous() and self.down.is_contiguous():
            scale = native.NO_SCALE
            return native.moe_one_token(state, self.gate_up, scale, self.down, scale, chosen, weights)
        return self.expert_sum(state, chosen, weights)

    def expert_sum(self, state: torch.Tensor, chosen: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """One token's weighted sum over its chosen experts, one expert at a time."""
        out = torch.zeros_like(state)
        for slot, expert in enumerate(chosen.tolist()):
            out += self.expert(expert, state) * weights[slot]
        return out

    def grouped(self, states: torch.Tensor, top_index: torch.Tensor, top_weights: torch.Tensor) -> torch.Tensor:
        """Each expert gathers its own tokens, runs once, and adds its weighted output back. Working
        per expert keeps every temporary small (a few MB): one gather of all (token, slot) pairs
        would be 64 MB per layer for 2K tokens, and allocations that size come fresh from the
        operating system each time, which made the page faults cost more than the copies."""
        k = top_index.shape[1]
        flat = top_index.reshape(-1)  # (tokens * k,)
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=self.num_experts).tolist()
        token_of = order // k
        weight_of = top_weights.reshape(-1)[order].to(states.dtype)[:, None]
        out = torch.zeros_like(states)
        start = 0
        for expert, count in enumerate(counts):
            if count:
                tokens = token_of[start : start + count]
                result = self.expert(expert, states.index_select(0, tokens))
                out.index_add_(0, tokens, result.mul_(weight_of[start : start + count]))
                start += count
        return out
