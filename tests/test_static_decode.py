"""The fixed-shape decode step for CUDA graphs (model/static_decode.py), run on the CPU."""

from __future__ import annotations

import copy

import pytest
import torch

from model.granitemoe import GraniteMoe
from model.static_decode import StaticDecoder, applies_to

PROMPT_IDS = [5, 17, 99, 311, 42, 7, 1000, 3, 55, 66, 77, 120]


def greedy(model: GraniteMoe, step, count: int, forced: list[int] | None = None) -> tuple[list[int], torch.Tensor]:
    """Greedy tokens after PROMPT_IDS (or the `forced` ones), each decode step through
    `step(token, cache)`, and every step's logits."""
    cache = model.new_cache(len(PROMPT_IDS) + count)
    tokens, all_logits = [], []
    with torch.inference_mode():
        logits = model(torch.tensor(PROMPT_IDS), cache)[0, -1]
        for index in range(count):
            tokens.append(forced[index] if forced else int(logits.argmax()))
            logits = step(torch.tensor([tokens[-1]]), cache)[0, -1]
            all_logits.append(logits.float())
    return tokens, torch.stack(all_logits)


def test_static_steps_give_the_dynamic_steps_tokens(tiny_stock):
    model = GraniteMoe.from_stock(copy.deepcopy(tiny_stock))
    assert applies_to(model)
    expected_tokens, expected = greedy(model, model, 20)
    tokens, logits = greedy(model, StaticDecoder(model, compiled=False), 20)
    assert tokens == expected_tokens and len(set(tokens)) > 3
    assert torch.allclose(logits, expected, atol=1e-5, rtol=1e-4)


def test_static_bf16_steps_compute_what_the_dynamic_ones_do(tiny_stock):
    """bf16: the dynamic step computes in fp32 (model/cpu_kernels.cpp), the static one in bf16
    (as a GPU does), so the same tokens are fed to both and the logits compared closely."""
    model = GraniteMoe.from_stock(copy.deepcopy(tiny_stock).to(torch.bfloat16))
    tokens, expected = greedy(model, model, 20)
    _, logits = greedy(model, StaticDecoder(model, compiled=False), 20, forced=tokens)
    assert (logits - expected).abs().max() < 0.05 * expected.abs().max()


def test_the_engine_replays_decode_steps_on_cuda_only(tiny_engine, tiny_loaded):
    from model.stock import runner_for

    assert tiny_engine._runner is tiny_engine.model  # on the CPU the native one-call layers are faster
    assert isinstance(runner_for(tiny_loaded.model, "cuda"), StaticDecoder)


def test_four_bit_experts_keep_the_dynamic_step():
    from model.quant4 import Experts4bit

    pytest.importorskip("bitsandbytes")
    model = type("Model", (), {"layers": [type("Layer", (), {"experts": object.__new__(Experts4bit)})()]})()
    assert not applies_to(model)


def test_a_failing_static_step_falls_back_to_the_dynamic_one(tiny_stock, caplog):
    model = GraniteMoe.from_stock(copy.deepcopy(tiny_stock))
    decoder = StaticDecoder(model, compiled=False)

    def broken(*args):
        raise RuntimeError("graph capture failed")

    decoder._step = broken
    expected_tokens, expected = greedy(model, model, 8)
    tokens, logits = greedy(model, decoder, 8)
    assert decoder.failed and "decoding step by step" in caplog.text
    assert tokens == expected_tokens and torch.allclose(logits, expected)


def test_unwritten_cache_positions_cannot_poison_the_masked_attention(tiny_stock):
    """The static step attends over the whole buffer under a mask; 0 x NaN is NaN, so memory that
    was never written (torch.empty's) must not reach the result, whatever bits it holds."""
    model = GraniteMoe.from_stock(copy.deepcopy(tiny_stock))
    decoder = StaticDecoder(model, compiled=False)
    cache = model.new_cache(64)
    with torch.inference_mode():
        model(torch.tensor([5, 17, 99]), cache)
        cache.buffer[:, :, :, cache.length :] = float("nan")
        logits = decoder(torch.tensor([42]), cache)
    assert torch.isfinite(logits).all()
