"""The experts of one GraniteMoE layer (model/granitemoe.py) and their dispatch.

- decode (one token): only the token's top-k experts run, so only their weights are read; for
  fp32 on the CPU all k run in one native call (`model.native`), which streams their weights at
  the memory's speed;
- prefill (many tokens): the (token, slot) pairs are sorted by expert once, so every expert runs
  one matrix product over a contiguous block of its tokens.
- bf16 on a CPU with AVX512-BF16 (AMX too, or not): the weights are packed once at load for the
  CPU's bf16 products (AMX tiles, vdpbf16ps dot products), and a layer's experts run in one
  native call for any number of tokens (`Experts.pack`).
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

    @property
    def packed(self) -> bool:
        """Whether the weights are packed for the CPU's bf16 products (`pack`)."""
        return self.gate_up.dim() == 4

    def pack(self) -> bool:
        """Rearrange bf16 weights once for the native bf16 kernels where the CPU has them
        (`native.pack_experts`; AVX512-BF16, AMX tiles where present): then every number of tokens
        runs in one native call per layer, the weights never rearranged again. True when packed.
        The original tensors are released."""
        if self.packed or not native.packs_experts(self.gate_up):
            return self.packed
        self.gate_up = frozen(native.pack_experts(self.gate_up.data))
        self.down = frozen(native.pack_experts(self.down.data))
        return True

    def forward(self, states: torch.Tensor, top_index: torch.Tensor, top_weights: torch.Tensor) -> torch.Tensor:
        """states (tokens, hidden); top_index, top_weights (tokens, k) -> (tokens, hidden)."""
        if self.packed:
            return native.moe_packed(states, self.gate_up, self.down, top_index, top_weights)
        if states.shape[0] == 1:
            return self.one_token(states, top_index[0], top_weights[0])
        if states.shape[0] <= FEW_TOKENS and (weights := self.few_token_weights(states)) is not None:
            return native.moe_few_tokens(states, *weights, top_index, top_weights)
        return self.grouped(states, top_index, top_weights)

    def decode_weights(self) -> tuple[torch.Tensor, ...] | None:
        """What the native decode step reads: gate_up, its row scales, down, its row scales."""
        return self.gate_up, native.NO_SCALE, self.down, native.NO_SCALE

    def few_token_weights(self, states: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
        """The weights `native.moe_few_tokens` reads for these states, or None where it cannot."""
        weights = self.decode_weights()
        if weights is None or not all(weight.is_contiguous() for weight in weights):
            return None
        return weights if native.applies(weights[2][0], states[:1]) else None

    def expert(self, index: int, states: torch.Tensor) -> torch.Tensor:
        """Expert `index` applied to `states` (rows, hidden)."""
        gate, up = linear(states, self.gate_up[index]).chunk(2, dim=-1)
        return linear(F.silu(gate) * up, self.down[index])

    def one_token(self, state: torch.Tensor, chosen: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if (stored := self.few_token_weights(state)) is not None:
            return native.moe_one_token(state, *stored, chosen, weights)
        return self.expert_sum(state, chosen, weights)

    def expert_sum(self, state: torch.Tensor, chosen: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """One token's weighted sum over its chosen experts, one expert at a time (where the
        native kernels cannot run)."""
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
                rows = states.index_select(0, _padded(tokens, states.device))
                result = self.expert(expert, rows)[:count]
                out.index_add_(0, tokens, result.mul_(weight_of[start : start + count]))
                start += count
        return out

    def warm_up(self, max_rows: int, dtype: torch.dtype) -> None:
        """Have oneDNN build its kernel for every padded row count up to `max_rows` of states in
        `dtype` now (a few milliseconds each), not during the first documents read."""
        if self.packed:
            return  # the packed kernels are compiled ahead, nothing is built per row count
        states = self.gate_up.new_zeros((max_rows, self.hidden), dtype=dtype)
        for rows in range(ROW_MULTIPLE, max_rows + 1, ROW_MULTIPLE):
            self.expert(0, states[:rows])


# Up to this many tokens (a question on a cached document) go through the experts in one native
# call: each expert used reads its weights once for all its tokens, without the batched path's
# per-expert operators; more tokens (a document) are oneDNN's, which computes faster.
FEW_TOKENS = 64

# oneDNN, which runs the CPU's products of many rows, builds (JIT-compiles) a kernel for every new
# number of rows, 1-3 ms each, and an expert's token count changes with every chunk: a first
# document read 1K tokens in 2.9 s where a second took 1.6 s. So an expert's rows are padded to a
# multiple of ROW_MULTIPLE (a few percent more arithmetic) and those few kernels built at load.
ROW_MULTIPLE = 32


def _padded(tokens: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tokens`, on the CPU past the native kernels' row count padded with its first token to a
    multiple of ROW_MULTIPLE."""
    count = tokens.shape[0]
    if device.type != "cpu" or count <= native.MAX_ROWS or count % ROW_MULTIPLE == 0:
        return tokens
    return torch.cat([tokens, tokens[:1].expand(ROW_MULTIPLE - count % ROW_MULTIPLE)])
