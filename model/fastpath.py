"""The engine's fast path, swapped into a model only while the engine calls it.

Inside `with FastPath(model):` every GraniteMoE experts module dispatches with
`model.moe.fast_experts_forward`, every nn.Linear whose products `model.kernels` can speed up
uses `model.kernels.linear_forward`, and on the CPU the attention is `model.attention`'s.
Outside, the model object is stock for anyone else (the benchmark's `model.generate` baseline,
for one). The swaps are per instance (`module.forward`) plus the model config's attention name,
and they are reference-counted, so streams in other threads can be inside at the same time.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Callable

import torch

from model import attention
from model.kernels import linear_forward, speeds_up
from model.moe import fast_experts_forward


class FastPath:
    """A reusable context that swaps the fast forwards into `model`'s modules."""

    def __init__(self, model: torch.nn.Module):
        self.swaps: list[tuple[torch.nn.Module, Callable]] = []
        for module in model.modules():
            if type(module).__name__ == "GraniteMoeExperts" and hasattr(module, "gate_up_proj"):
                self.swaps.append((module, fast_experts_forward))
            elif type(module) is torch.nn.Linear and speeds_up(module.weight):
                self.swaps.append((module, linear_forward))
        self.config = model.config
        self.attention = attention.NAME if attention.applies_to(model) else None
        self._stock_attention = model.config._attn_implementation
        self._lock = threading.Lock()
        self._users = 0

    def __enter__(self) -> FastPath:
        with self._lock:
            if self._users == 0:
                for module, forward in self.swaps:
                    module.forward = types.MethodType(forward, module)
                if self.attention:
                    self.config._attn_implementation = self.attention
            self._users += 1
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                for module, _ in self.swaps:
                    module.__dict__.pop("forward", None)  # back to the class's (stock) forward
                if self.attention:
                    self.config._attn_implementation = self._stock_attention
