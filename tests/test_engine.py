"""Streaming generation on the tiny-random model: equality with stock, stops, cancel, errors."""

import threading

import pytest
import torch

from model.engine import Engine
from model.errors import RequestRefused

PROMPT = (
    "Annual report 2024: revenue grew to 4.2 million euros. Der Bericht beschreibt den Umsatz. この文書は会社の売上"
)


def stock_greedy(model, engine, prompt, n):
    ids = engine.encode(prompt)
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, eos_token_id=None)
    return out[0, len(ids) :].tolist()


def test_greedy_output_matches_stock_generate(tiny_engine, tiny_stock):
    reference = stock_greedy(tiny_stock, tiny_engine, PROMPT, 40)
    assert len(set(reference)) > 5  # the tiny model's output is varied, so the match means something
    ours = tiny_engine.generate(PROMPT, max_new_tokens=40)
    assert ours.generated_tokens == 40
    assert ours.text == tiny_engine.tokenizer.decode(reference, skip_special_tokens=True)


def test_stream_yields_deltas_then_a_final_chunk(tiny_engine):
    chunks = list(tiny_engine.stream(PROMPT, max_new_tokens=24))
    assert len(chunks) > 2
    assert all(c.finish_reason is None for c in chunks[:-1])
    final = chunks[-1]
    assert final.finish_reason == "length"
    assert final.generated_tokens == 24
    assert final.prompt_tokens == len(tiny_engine.encode(PROMPT))
    assert "".join(c.text for c in chunks) == tiny_engine.generate(PROMPT, max_new_tokens=24).text


def test_stop_string_ends_generation_without_showing_it(tiny_engine):
    free = tiny_engine.generate(PROMPT, max_new_tokens=40).text
    stop = free[10:14]
    assert stop.strip()
    result = tiny_engine.generate(PROMPT, max_new_tokens=40, stop=[stop])
    assert result.finish_reason == "stop"
    assert result.text == free[: free.index(stop)]
    assert stop not in result.text


def test_end_of_text_token_stops(tiny_loaded, tiny_stock, tiny_engine, monkeypatch):
    third = stock_greedy(tiny_stock, tiny_engine, PROMPT, 3)[2]
    # The model's generation config names the third token end-of-text: an engine made now stops there.
    monkeypatch.setattr(tiny_loaded.model.generation_config, "eos_token_id", third)
    engine = Engine(tiny_loaded)
    result = engine.generate(PROMPT, max_new_tokens=20)
    assert result.finish_reason == "stop"
    assert result.generated_tokens == 3


def cancel_after_first_chunk(engine, prompt=PROMPT):
    """Stream, set the cancel event as soon as the first chunk arrives, return all chunks."""
    cancel = threading.Event()
    chunks = []
    for chunk in engine.stream(prompt, max_new_tokens=200, cancel=cancel):
        chunks.append(chunk)
        cancel.set()
    return chunks


def test_cancel_stops_at_the_next_token(tiny_engine):
    chunks = cancel_after_first_chunk(tiny_engine)
    assert chunks[-1].finish_reason == "cancelled"
    assert chunks[-1].generated_tokens < 10


def test_sampling_is_reproducible_with_a_seed(tiny_engine):
    first = tiny_engine.generate(PROMPT, max_new_tokens=20, temperature=1.0, seed=7).text
    second = tiny_engine.generate(PROMPT, max_new_tokens=20, temperature=1.0, seed=7).text
    assert first == second


def test_an_error_inside_the_model_reaches_the_caller(tiny_engine):
    def explode(module, args):
        raise RuntimeError("boom inside the model")

    handle = tiny_engine.model.layers[1].register_forward_pre_hook(explode)
    try:
        with pytest.raises(RuntimeError, match="boom inside the model"):
            list(tiny_engine.stream(PROMPT, max_new_tokens=5))
    finally:
        handle.remove()
    assert tiny_engine.generate(PROMPT, max_new_tokens=5).generated_tokens == 5  # still usable


def test_abandoned_stream_leaves_the_engine_usable(tiny_engine):
    stream = tiny_engine.stream(PROMPT, max_new_tokens=50)
    next(stream)
    stream.close()
    assert tiny_engine.generate(PROMPT, max_new_tokens=5).generated_tokens == 5


def test_requests_beyond_the_context_are_refused(tiny_engine):
    with pytest.raises(ValueError, match="at least 1"):
        list(tiny_engine.stream(PROMPT, max_new_tokens=0))
    with pytest.raises(RequestRefused, match="context limit"):
        list(tiny_engine.stream(PROMPT, max_new_tokens=tiny_engine.context_limit))
