"""A faster expert dispatch for GraniteMoE, used by the engine while it runs the model.

The stock layer builds a one-hot mask over all experts for every call and then, per expert,
searches that mask for its tokens. Here:
- decode (one token): the token's top-k experts are applied directly, as views of the expert
  weights, so only those experts' weights are read and nothing is searched;
- prefill (many tokens): the (token, slot) pairs are sorted by expert once, so every expert runs
  one matrix product over a contiguous block of its tokens.
Outputs match the stock layer up to float rounding (a test checks it). The swap lasts only
while the engine calls the model (`with FastExperts(model):`), so the model object stays stock for
anyone else, such as the benchmark's `model.generate` baseline.
"""

from __future__ import annotations

import threading
import types

import torch
import torch.nn.functional as F


class FastExperts:
    """A reusable context: inside it, every GraniteMoE experts module of `model` uses
    `fast_experts_forward`. Models without such modules are left alone."""

    def __init__(self, model: torch.nn.Module):
        self.modules = [
            module
            for module in model.modules()
            if type(module).__name__ == "GraniteMoeExperts" and hasattr(module, "gate_up_proj")
        ]
        self._lock = threading.Lock()
        self._users = 0  # streams in other threads may be inside at the same time

    def __enter__(self) -> FastExperts:
        with self._lock:
            if self._users == 0:
                for module in self.modules:
                    module.forward = types.MethodType(fast_experts_forward, module)
            self._users += 1
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                for module in self.modules:
                    module.__dict__.pop("forward", None)  # back to the class's (stock) forward


def fast_experts_forward(
    self, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
) -> torch.Tensor:
    """hidden_states (tokens, hidden); top_k_index, top_k_weights (tokens, k) -> (tokens, hidden)."""
    if hidden_states.shape[0] == 1:
        return _one_token(self, hidden_states, top_k_index[0].tolist(), top_k_weights[0])
    return _grouped(self, hidden_states, top_k_index, top_k_weights)


def _expert(self, expert: int, states: torch.Tensor, decode: bool = False) -> torch.Tensor:
    if hasattr(self, "apply_expert"):  # experts stored another way (model.quant4, model.quant8)
        return self.apply_expert(expert, states, decode)
    gate, up = F.linear(states, self.gate_up_proj[expert]).chunk(2, dim=-1)
    return F.linear(self.act_fn(gate) * up, self.down_proj[expert])


def _one_token(self, state: torch.Tensor, experts: list[int], weights: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(state)
    for slot, expert in enumerate(experts):
        out += _expert(self, expert, state, decode=True) * weights[slot]
    return out


def _grouped(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor) -> torch.Tensor:
    k = top_k_index.shape[1]
    flat = top_k_index.reshape(-1)  # (tokens * k,)
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=self.num_experts).tolist()
    token_of = order // k
    states = hidden_states.index_select(0, token_of)  # grouped by expert
    outputs = torch.empty_like(states)
    start = 0
    for expert, count in enumerate(counts):
        if count:
            outputs[start : start + count] = _expert(self, expert, states[start : start + count])
            start += count
    outputs *= top_k_weights.reshape(-1)[order, None].to(outputs.dtype)
    return torch.zeros_like(hidden_states).index_add_(0, token_of, outputs)


ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")


def replace_layers(model: torch.nn.Module, make_experts: type, make_linear: type, linear_names: tuple[str, ...]) -> int:
    """Replace every GraniteMoE experts module by `make_experts(module)` and every bias-free
    nn.Linear named in `linear_names` by `make_linear(module)`; return how many weight matrices
    the new modules cover (two per expert, one per linear)."""
    matrices = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child).__name__ == "GraniteMoeExperts":
                setattr(parent, name, make_experts(child))
                matrices += 2 * child.num_experts
            elif isinstance(child, torch.nn.Linear) and child.bias is None and name in linear_names:
                setattr(parent, name, make_linear(child))
                matrices += 1
    return matrices
