"""The real-size Granite-3.1-1B-A400M architecture with random weights, for speed measurements.

Speed does not depend on the weight values, so benchmarks build the published config with random
weights instead of downloading the checkpoint. The tokenizer is tiny-random's (its ids are valid
ids of the real vocabulary), so prompts go through exactly the engine path a real model takes.
Every benchmark also takes `--model tiny-random`: tiny-random's config built the same way, so that
its smoke test (tests/test_benchmarks.py) runs every path in seconds; those figures mean nothing.
"""

from __future__ import annotations

import time

import torch

from model.checkpoints import GRANITE_3_1_1B_A400M, TINY_RANDOM, tiny_random_path
from model.loader import LoadedModel, LoadReport, prepare_weights, weight_bytes
from model.runtime import Runtime

REAL_SIZE = "granite-3.1-1b-a400m-random"
MODELS = (REAL_SIZE, TINY_RANDOM)  # the choices of every benchmark's --model
SMOKE_MODEL_HELP = "tiny-random: the smoke test's model (every path runs in seconds; the figures mean nothing)"


def build_random_granite(
    runtime: Runtime, seed: int = 0, *, prepare: bool = True, model: str = REAL_SIZE
) -> LoadedModel:
    """Build the real-size model (or `model=TINY_RANDOM`: tiny-random's sizes) on `runtime.device`
    in `runtime.dtype` (random weights), its weights prepared as the loader prepares them
    (`prepare=False`: left as transformers builds them, the stock baseline)."""
    from transformers import AutoTokenizer, GraniteMoeConfig, GraniteMoeForCausalLM

    if model not in MODELS:
        raise ValueError(f"unknown benchmark model {model!r}: choose one of {', '.join(MODELS)}")
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(tiny_random_path())
    if model == REAL_SIZE:
        config = GraniteMoeConfig(**GRANITE_3_1_1B_A400M)
    else:
        config = GraniteMoeConfig.from_pretrained(tiny_random_path())
    torch.manual_seed(seed)
    with torch.device(runtime.device):
        network = GraniteMoeForCausalLM(config).to(getattr(torch, runtime.dtype)).eval()
    parameters = sum(p.numel() for p in network.parameters())
    if prepare:
        network = prepare_weights(network, runtime)
    report = LoadReport(
        model_id=f"{model} (random weights, tokenizer of {TINY_RANDOM})",
        source="random",
        device=runtime.device,
        dtype=runtime.dtype,
        quantization=runtime.quantization,
        parameters=parameters,
        weight_bytes=weight_bytes(network),
        context_limit=config.max_position_embeddings,
        load_seconds=time.perf_counter() - started,
        is_demo=True,
    )
    return LoadedModel(network, tokenizer, report)


def filler_text(words: int) -> str:
    """A deterministic, document-like text of about `words` words."""
    sentence = "The committee reviewed revenue of 4.2 million euros and approved the plan on 3 March. "
    count = len(sentence.split())
    return sentence * (words // count + 1)
