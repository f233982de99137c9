"""The real-size Granite-3.1-1B-A400M architecture with random weights, for speed measurements.

Speed does not depend on the weight values, so benchmarks build the published config with random
weights instead of downloading the checkpoint. The tokenizer is tiny-random's (its ids are valid
ids of the real vocabulary), so prompts go through exactly the engine path a real model takes.
"""

from __future__ import annotations

import time

import torch

from model.checkpoints import GRANITE_3_1_1B_A400M, TINY_RANDOM, tiny_random_path
from model.loader import LoadedModel, LoadReport, prepare_weights, weight_bytes
from model.runtime import Runtime


def build_random_granite(runtime: Runtime, seed: int = 0, *, prepare: bool = True) -> LoadedModel:
    """Build the real-size model on `runtime.device` in `runtime.dtype` (random weights), its
    weights prepared as the loader prepares them (`prepare=False`: left as transformers
    builds them, the stock baseline)."""
    from transformers import AutoTokenizer, GraniteMoeConfig, GraniteMoeForCausalLM

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(tiny_random_path())
    config = GraniteMoeConfig(**GRANITE_3_1_1B_A400M)
    torch.manual_seed(seed)
    with torch.device(runtime.device):
        model = GraniteMoeForCausalLM(config).to(getattr(torch, runtime.dtype)).eval()
    parameters = sum(p.numel() for p in model.parameters())
    if prepare:
        prepare_weights(model, runtime)
    report = LoadReport(
        model_id=f"granite-3.1-1b-a400m (random weights, tokenizer of {TINY_RANDOM})",
        source="random",
        device=runtime.device,
        dtype=runtime.dtype,
        quantization=runtime.quantization,
        parameters=parameters,
        weight_bytes=weight_bytes(model),
        context_limit=config.max_position_embeddings,
        load_seconds=time.perf_counter() - started,
        is_demo=True,
    )
    return LoadedModel(model, tokenizer, report)


def filler_text(words: int) -> str:
    """A deterministic, document-like text of about `words` words."""
    sentence = "The committee reviewed revenue of 4.2 million euros and approved the plan on 3 March. "
    count = len(sentence.split())
    return sentence * (words // count + 1)
