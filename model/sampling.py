"""Choosing the next token, and knowing which tokens end the text."""

from __future__ import annotations

from typing import Any

import torch

from model.generation import sampling_temperature


def pick_token(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> int:
    """The next token: the most likely one (greedy), or one drawn at `temperature`."""
    temperature = sampling_temperature(temperature)  # a tiny one would overflow the division below
    if temperature <= 0:
        return int(logits.argmax(dim=-1).item())
    probs = torch.softmax(logits / temperature, dim=-1)
    return int(torch.multinomial(probs, num_samples=1, generator=generator).item())


def end_of_text_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """The tokens that end the text: the model's generation config's and the tokenizer's."""
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (configured, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return frozenset(ids)
