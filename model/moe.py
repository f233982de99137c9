"""A faster expert dispatch for GraniteMoE, used by the engine while it runs the model.

The stock layer builds a one-hot mask over all experts for every call and then, per expert,
searches that mask for its tokens. Here:
- decode (one token): only the token's top-k experts are applied, so only their weights are read
  and nothing is searched; for fp32 on the CPU all k experts run in one native call
  (`model.native`), which streams their weights at the memory's speed;
- prefill (many tokens): the (token, slot) pairs are sorted by expert once, so every expert runs
  one matrix product over a contiguous block of its tokens.
Outputs match the stock layer up to float rounding (a test checks it). The engine swaps this in
only while it calls the model (model.fastpath).
"""

from __future__ import annotations

import torch

from model import native
from model.kernels import linear


def fast_experts_forward(
    self, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
) -> torch.Tensor:
    """hidden_states (tokens, hidden); top_k_index, top_k_weights (tokens, k) -> (tokens, hidden)."""
    if hidden_states.shape[0] == 1:
        if _native_one_token(self, hidden_states):
            return native.kernels().moe_one_token(
                hidden_states, self.gate_up_proj, self.down_proj, top_k_index[0], top_k_weights[0]
            )
        return _one_token(self, hidden_states, top_k_index[0].tolist(), top_k_weights[0])
    return _grouped(self, hidden_states, top_k_index, top_k_weights)


def expert_output(self, expert: int, states: torch.Tensor, decode: bool = False) -> torch.Tensor:
    """One expert applied to `states` (rows, hidden), however its weights are stored."""
    if hasattr(self, "apply_expert"):  # experts stored another way (model.quant4, model.quant8)
        return self.apply_expert(expert, states, decode)
    gate, up = linear(states, self.gate_up_proj[expert]).chunk(2, dim=-1)
    return linear(self.act_fn(gate) * up, self.down_proj[expert])


_SILU = {"SiLU", "SiLUActivation"}  # torch's and transformers' (ACT2FN["silu"])


def _native_one_token(self, state: torch.Tensor) -> bool:
    """Whether the native kernel applies: the stock fp32 expert tensors, SiLU, on the CPU."""
    return (
        not hasattr(self, "apply_expert")
        and type(self.act_fn).__name__ in _SILU
        and native.applies(self.down_proj[0], state)
        and self.gate_up_proj.is_contiguous()
        and self.down_proj.is_contiguous()
    )


def _one_token(self, state: torch.Tensor, experts: list[int], weights: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(state)
    for slot, expert in enumerate(experts):
        out += expert_output(self, expert, state, decode=True) * weights[slot]
    return out


def _grouped(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor) -> torch.Tensor:
    """Each expert gathers its own tokens, runs once, and adds its weighted output back. Working
    per expert keeps every temporary small (a few MB): one gather of all (token, slot) pairs
    would be 64 MB per layer for 2K tokens, and allocations that size come fresh from the
    operating system each time, which made the page faults cost more than the copies."""
    k = top_k_index.shape[1]
    flat = top_k_index.reshape(-1)  # (tokens * k,)
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=self.num_experts).tolist()
    token_of = order // k
    weight_of = top_k_weights.reshape(-1)[order].to(hidden_states.dtype)[:, None]
    out = torch.zeros_like(hidden_states)
    start = 0
    for expert, count in enumerate(counts):
        if count:
            tokens = token_of[start : start + count]
            result = expert_output(self, expert, hidden_states.index_select(0, tokens))
            out.index_add_(0, tokens, result.mul_(weight_of[start : start + count]))
            start += count
    return out


ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")


def replace_layers(model: torch.nn.Module, make_experts: type, make_linear: type, linear_names: tuple[str, ...]) -> int:
    """Replace every GraniteMoE experts module by `make_experts(module)` and every bias-free
    nn.Linear named in `linear_names` by `make_linear(module)`; return how many weight matrices
    the new modules cover (two per expert, one per linear)."""

    def kind(name: str, child: torch.nn.Module) -> str | None:
        if type(child).__name__ == "GraniteMoeExperts":
            return "experts"
        if isinstance(child, torch.nn.Linear) and child.bias is None and name in linear_names:
            return "linear"
        return None

    # Only names are listed first, so no list holds the old modules: each one is freed as soon
    # as it is replaced, and memory never holds the whole model twice.
    targets = [
        (parent_name, name, found)
        for parent_name, parent in model.named_modules()
        for name, child in parent.named_children()
        if (found := kind(name, child))
    ]
    matrices = 0
    for parent_name, name, found in targets:
        parent = model.get_submodule(parent_name)
        child = getattr(parent, name)
        matrices += 2 * child.num_experts if found == "experts" else 1
        setattr(parent, name, make_experts(child) if found == "experts" else make_linear(child))
        del child
    return matrices
