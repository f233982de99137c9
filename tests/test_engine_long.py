"""Long inputs: chunked prefill, the document prefix cache, scoring, and JSON-constrained output."""

import json

import jsonschema
import pytest
import torch

from model.engine import Engine
from model.errors import RequestRefused

DOC = "[Page 1]\nThe Berlin office opened on 3 March 2024 with 45 employees. " * 12
QUESTION = "\nQuestion: When did the Berlin office open?\nAnswer:"
TAIL = "Der Bericht beschreibt den Umsatz. この文書は会社の売上"


@pytest.fixture
def engine(tiny_loaded):
    return Engine(tiny_loaded, prefill_chunk=16)


def test_chunked_prefill_gives_the_same_logits_as_one_shot(tiny_loaded):
    chunked = Engine(tiny_loaded, prefill_chunk=7)
    one_shot = Engine(tiny_loaded, prefill_chunk=100_000)
    prompt = DOC + TAIL
    a = chunked.score(prompt, [" the report", " 2024"])
    b = one_shot.score(prompt, [" the report", " 2024"])
    assert a == pytest.approx(b, abs=1e-4)
    assert chunked.generate(prompt, max_new_tokens=30).text == one_shot.generate(prompt, max_new_tokens=30).text


def test_prefix_cache_reuses_the_document_and_changes_nothing(tiny_loaded, engine):
    uncached = Engine(tiny_loaded, prefix_cache_bytes=0)
    expected = uncached.generate(QUESTION + TAIL, prefix=DOC, max_new_tokens=30)
    first = engine.generate(QUESTION + TAIL, prefix=DOC, max_new_tokens=30)
    second = engine.generate(QUESTION + TAIL, prefix=DOC, max_new_tokens=30)
    document_tokens = len(engine.encode(DOC))
    prompt_tokens = len(engine.tokenizer.encode(QUESTION + TAIL, add_special_tokens=False))
    assert first.cached_tokens == 0
    assert second.cached_tokens == document_tokens + prompt_tokens - 1  # all but the token that starts the answer
    assert first.text == second.text == expected.text
    assert uncached.prefix_cache.hits == 0 and len(uncached.prefix_cache) == 0
    follow_up = "\nQuestion: How many employees?\nAnswer:" + TAIL
    other = engine.generate(follow_up, prefix=DOC, max_new_tokens=10)
    assert document_tokens < other.cached_tokens < second.cached_tokens  # "\nQuestion:" is shared, the rest is new
    assert other.text == uncached.generate(follow_up, prefix=DOC, max_new_tokens=10).text
    unrelated = "Summary of the document above:"
    assert engine.generate(unrelated, prefix=DOC, max_new_tokens=10).cached_tokens == document_tokens
    again = engine.generate(QUESTION + TAIL, prefix=DOC, max_new_tokens=30)
    assert again.text == expected.text


def test_a_cached_document_is_reused_only_within_its_sessions_salt(tiny_loaded, engine):
    reference = Engine(tiny_loaded, prefix_cache_bytes=0).generate(QUESTION, prefix=DOC, max_new_tokens=12)
    first = engine.generate(QUESTION, prefix=DOC, max_new_tokens=12, cache_salt="session-a")
    other = engine.generate(QUESTION, prefix=DOC, max_new_tokens=12, cache_salt="session-b")  # same question
    unsalted = engine.generate(QUESTION, prefix=DOC, max_new_tokens=12)
    again = engine.generate(QUESTION, prefix=DOC, max_new_tokens=12, cache_salt="session-a")
    assert first.cached_tokens == other.cached_tokens == unsalted.cached_tokens == 0  # nothing tells B what A read
    assert again.cached_tokens == first.prompt_tokens - 1  # A's own follow-up reuses A's cache
    assert reference.text == first.text == other.text == unsalted.text == again.text
    assert len(engine.prefix_cache) == 3  # one entry per boundary
    scores = engine.score(" The office", [" opened"], prefix=DOC, cache_salt="session-c")
    assert scores == pytest.approx(engine.score(" The office", [" opened"], prefix=DOC, cache_salt="session-c"))
    assert engine.prefix_cache.hits == 2 and len(engine.prefix_cache) == 4  # again, then C's second score


def test_prefix_cache_has_a_cap_and_evicts_the_least_recently_used(tiny_loaded):
    probe = Engine(tiny_loaded)
    probe.generate(QUESTION, prefix=DOC, max_new_tokens=1)
    one_entry = probe.prefix_cache.used_bytes
    engine = Engine(tiny_loaded, prefix_cache_bytes=int(one_entry * 2.5))
    docs = [DOC.replace("Berlin", city) for city in ("Berlin", "Paris", "Madrid")]
    for doc in docs:
        engine.generate(QUESTION, prefix=doc, max_new_tokens=1)
    assert len(engine.prefix_cache) == 2 and engine.prefix_cache.used_bytes <= engine.prefix_cache.max_bytes
    assert engine.generate(QUESTION, prefix=docs[2], max_new_tokens=1).cached_tokens > 0  # newest kept
    assert engine.generate(QUESTION, prefix=docs[0], max_new_tokens=1).cached_tokens == 0  # oldest evicted


def _fail_on_call(number: int):
    """A forward pre-hook that raises on its `number`-th call (a transient failure mid-prefill)."""
    calls = {"n": 0}

    def hook(module, args):
        calls["n"] += 1
        if calls["n"] == number:
            raise RuntimeError("transient failure")

    return hook


def test_a_failure_mid_prefill_does_not_poison_the_cache(tiny_loaded, engine):
    handle = tiny_loaded.model.layers[1].register_forward_pre_hook(_fail_on_call(3))
    try:
        with pytest.raises(RuntimeError, match="transient failure"):
            engine.generate(QUESTION, prefix=DOC, max_new_tokens=5)
    finally:
        handle.remove()
    reference = Engine(tiny_loaded, prefix_cache_bytes=0).generate(QUESTION, prefix=DOC, max_new_tokens=20)
    assert engine.generate(QUESTION, prefix=DOC, max_new_tokens=20).text == reference.text


def test_a_failure_after_the_shared_prompt_keeps_the_cache_correct(tiny_loaded):
    engine = Engine(tiny_loaded, prefill_chunk=4)
    engine.generate(QUESTION, prefix=DOC, max_new_tokens=3)
    follow_up = "\nQuestion: How many employees were there on the first day?\nAnswer:"
    handle = tiny_loaded.model.layers[0].register_forward_pre_hook(_fail_on_call(2))  # the second chunk
    try:
        with pytest.raises(RuntimeError, match="transient failure"):
            engine.generate(follow_up, prefix=DOC, max_new_tokens=5)
    finally:
        handle.remove()
    reference = Engine(tiny_loaded, prefix_cache_bytes=0)
    for prompt in (follow_up, QUESTION):
        result = engine.generate(prompt, prefix=DOC, max_new_tokens=20)
        assert result.cached_tokens > 0
        assert result.text == reference.generate(prompt, prefix=DOC, max_new_tokens=20).text


def test_scores_are_log_likelihoods(engine):
    scores = engine.score("The committee met on", [" Monday", " Monday and Tuesday"], prefix=DOC)
    assert all(score < 0 for score in scores)
    assert scores[1] < scores[0]  # a longer continuation cannot be more likely than its own start


@pytest.mark.parametrize(
    "schema",
    [
        {
            "type": "object",
            "properties": {"title": {"type": ["string", "null"], "maxLength": 30}},
            "required": ["title"],
            "additionalProperties": False,
        },
        {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 999}, "maxItems": 4},
        {
            "type": "object",
            "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer", "minimum": 0, "maximum": 9}},
            "required": ["ok", "n"],
            "additionalProperties": False,
        },
    ],
)
def test_json_schema_output_is_valid_by_construction(engine, schema):
    result = engine.generate("Extract the facts as JSON:", prefix=DOC, json_schema=schema, max_new_tokens=200)
    assert result.finish_reason == "stop"
    jsonschema.validate(json.loads(result.text), schema)


def test_chunked_prefill_next_token_distribution_matches_one_shot(tiny_loaded):
    prompt = DOC * 3 + TAIL
    states = []
    for chunk in (5, 64, 100_000):  # the prompt prefilled in chunks of 5 and 64 tokens, and in one piece
        engine = Engine(tiny_loaded, prefill_chunk=chunk)
        states.append(engine.decode_step_logits(prompt))  # reads every cached position of the prefill
    assert states[0].shape == (tiny_loaded.model.config.vocab_size,)
    for logits in states[:2]:
        assert torch.allclose(logits, states[2], atol=1e-4, rtol=1e-4)


def test_json_that_closes_on_the_last_allowed_token_counts_as_finished(engine):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    free = engine.generate("Facts as JSON:", prefix=DOC, json_schema=schema, max_new_tokens=50)
    exact = engine.generate("Facts as JSON:", prefix=DOC, json_schema=schema, max_new_tokens=free.generated_tokens)
    assert exact.finish_reason == "stop" and exact.text == free.text


def test_the_prefix_cache_counts_and_frees_what_an_answer_used(tiny_loaded):
    engine = Engine(tiny_loaded)
    prefix_bytes = engine.kv_bytes_per_token * len(engine.encode(DOC))
    engine.generate(QUESTION, prefix=DOC, max_new_tokens=300)  # a long answer grows the tensors
    from model.kvcache import PREFIX_SLACK

    slack = PREFIX_SLACK * engine.kv_bytes_per_token  # room kept for the next question
    assert prefix_bytes <= engine.prefix_cache.used_bytes <= 1.25 * prefix_bytes + slack


def test_an_empty_prompt_is_a_clear_error(engine):
    with pytest.raises(RequestRefused, match="the prompt is empty"):
        engine.generate("", max_new_tokens=3)


@pytest.fixture(scope="module")
def llama_loaded(tiny_loaded):
    """A tiny random Llama: any architecture other than GraniteMoE runs transformers' own forward."""
    import dataclasses

    from transformers import LlamaConfig, LlamaForCausalLM

    from model.loader import LoadedModel

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=tiny_loaded.model.config.vocab_size, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    return LoadedModel(model, tiny_loaded.tokenizer, dataclasses.replace(tiny_loaded.report, model_id="tiny-llama"))


def test_other_architectures_run_the_stock_forward_with_the_same_engine(llama_loaded):
    from model.stock import StockRunner

    engine = Engine(llama_loaded, prefill_chunk=16)
    assert isinstance(engine._runner, StockRunner)
    ids = engine.encode(DOC + QUESTION)
    with torch.inference_mode():
        out = llama_loaded.model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, eos_token_id=None)
    expected = engine.tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)
    assert engine.generate(DOC + QUESTION, max_new_tokens=12).text == expected  # chunked prefill, then decode
    first = engine.generate(QUESTION, prefix=DOC, max_new_tokens=12)
    again = engine.generate(QUESTION, prefix=DOC, max_new_tokens=12)
    assert again.cached_tokens > 0 and again.text == first.text
    assert engine.prefix_cache.used_bytes > 0
