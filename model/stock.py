"""What the engine runs: any causal LM folder other than GraniteMoE runs transformers' own
forward, behind the same call as our GraniteMoE (model/granitemoe.py): `runner(ids, cache, keep)`
-> logits, and `runner.new_cache(reserve)`. The engine sees only that."""

from __future__ import annotations

from typing import Any

import torch

from model.granitemoe import GraniteMoe
from model.kvcache import StockCache
from model.static_decode import StaticDecoder, applies_to


class StockRunner:
    """A transformers causal LM with a DynamicCache (model/kvcache.StockCache)."""

    def __init__(self, model: Any):
        self.model = model

    def new_cache(self, reserve: int = 0) -> StockCache:
        return StockCache(self.model.config)

    def __call__(self, ids: torch.Tensor, cache: StockCache, keep: int = 1) -> torch.Tensor:
        output = self.model(input_ids=ids.reshape(1, -1), cache=cache.dynamic, use_cache=True, logits_to_keep=keep)
        return output.logits


def runner_for(model: Any, device: str) -> GraniteMoe | StaticDecoder | StockRunner:
    """What the engine calls to run `model`: ours for GraniteMoE (its decode steps replayed as
    CUDA graphs on a GPU: model/static_decode.py; on the CPU the native one-call layers are
    faster), transformers' forward for the rest."""
    if not isinstance(model, GraniteMoe):
        return StockRunner(model)
    return StaticDecoder(model, compiled=True) if device == "cuda" and applies_to(model) else model
