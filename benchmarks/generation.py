"""Stock transformers `model.generate` against our engine, on the real-size Granite-3.1-1B-A400M
architecture with random weights, in one process, with this machine's limits measured alongside.

    python benchmarks/generation.py [--quick] [--json] [--threads N]

Prints one JSON object: prefill speed on a 2K-token prompt (and 8K without --quick), decode speed
of 64 new tokens after a 1K-token prompt, whether the greedy outputs match, the speed-up of a second
question on a prefilled 4K-token document, the measured matmul peak and weight-streaming bandwidth,
how close our decode comes to the bandwidth bound and our prefill to the arithmetic peak, and the
peak resident memory; then the same decode with `--quant int8` weights and its largest logit change.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks.random_granite import build_random_granite, filler_text
from model.engine import Engine
from model.kvcache import new_cache
from model.loader import LoadedModel
from model.quant8 import quantize_int8
from model.runtime import Runtime

DECODE_TOKENS = 64
QUESTION = "\n\nTask: Answer the question below using only the document above.\n\nQuestion: {q}\nAnswer:"


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """fp32 matrix-product speed (the arithmetic peak prefill can approach)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def bandwidth_gbs(megabytes: int = 512, repeats: int = 5) -> float:
    """Weight streaming speed: a matrix-vector product over a matrix far larger than the caches."""
    rows = megabytes * 2**20 // 4 // 4096
    matrix, vector = torch.randn(rows, 4096), torch.randn(4096)
    matrix @ vector
    started = time.perf_counter()
    for _ in range(repeats):
        matrix @ vector
    return matrix.numel() * 4 * repeats / (time.perf_counter() - started) / 1e9


def active_bytes_per_token(config, dtype_bytes: int = 4) -> int:
    """Weights read to decode one token: attention, router, top-k experts per layer, output head."""
    hidden, inter = config.hidden_size, config.intermediate_size
    head_dim = hidden // config.num_attention_heads
    attention = 2 * hidden * hidden + 2 * hidden * config.num_key_value_heads * head_dim
    experts = config.num_experts_per_tok * 3 * hidden * inter
    router = config.num_local_experts * hidden
    head = config.vocab_size * hidden
    return (config.num_hidden_layers * (attention + experts + router) + head) * dtype_bytes


def prefill_flops_per_token(config, tokens: int) -> float:
    """Matrix FLOPs per prompt token (no output head: only the last position's logits are needed)."""
    per_layer_weights = active_bytes_per_token(config, 1) - config.vocab_size * config.hidden_size
    attention = 4 * (tokens / 2) * config.hidden_size * config.num_hidden_layers  # QK^T and AV, mean context
    return 2 * per_layer_weights + attention


def prompt_text(engine: Engine, tokens: int) -> str:
    """A document-like text of exactly `tokens` tokens for this tokenizer."""
    text = engine.tokenizer.decode(engine.encode(filler_text(tokens * 2))[:tokens])
    while engine.count_tokens(text) > tokens:
        text = text[:-1]
    return text


def stock_generate(model, ids: list[int], new_tokens: int) -> tuple[list[int], float]:
    inputs = torch.tensor([ids])
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(inputs, attention_mask=torch.ones_like(inputs), max_new_tokens=new_tokens, do_sample=False)
    return out[0, len(ids) :].tolist(), time.perf_counter() - started


def measure_prefill(engine: Engine, tokens: int) -> dict:
    text = prompt_text(engine, tokens)
    ids = engine.encode(text)
    _, stock_seconds = stock_generate(engine.model, ids, 1)
    ours = engine.generate(text, max_new_tokens=1)
    return {"stock_tps": len(ids) / stock_seconds, "ours_tps": ours.prompt_tokens / ours.prefill_seconds}


def measure_decode(engine: Engine) -> dict:
    text = prompt_text(engine, 1024)
    ids = engine.encode(text)
    _, one = stock_generate(engine.model, ids, 1)
    stock_ids, full = stock_generate(engine.model, ids, DECODE_TOKENS)
    ours = engine.generate(text, max_new_tokens=DECODE_TOKENS)
    stock_text = engine.tokenizer.decode(stock_ids, skip_special_tokens=True)
    return {
        "stock_tps": (len(stock_ids) - 1) / (full - one),
        "ours_tps": (ours.generated_tokens - 1) / ours.decode_seconds,
        "outputs_match": ours.text == stock_text and ours.generated_tokens == len(stock_ids),
    }


def decode_step_logits(engine: Engine, text: str) -> torch.Tensor:
    """Next-token logits when the prompt's last token goes through as a decode step."""
    ids = engine.encode(text)
    cache = new_cache(engine.model.config)
    engine._prefill(ids[:-1], cache, None)
    return engine._forward(torch.tensor([ids[-1:]]), cache, keep=1)[0, -1].float()


def measure_int8(engine: Engine) -> dict:
    """`--quant int8`: decode speed and the largest logit change at a decode step (changes the model)."""
    text = prompt_text(engine, 1024)
    reference = decode_step_logits(engine, text)
    quantize_int8(engine.model)
    report = dataclasses.replace(engine.report, quantization="int8")
    int8 = Engine(LoadedModel(engine.model, engine.tokenizer, report))
    result = int8.generate(text, max_new_tokens=DECODE_TOKENS)
    error = (decode_step_logits(int8, text) - reference).abs().max()
    return {"tps": (result.generated_tokens - 1) / result.decode_seconds, "max_logit_error": float(error)}


def measure_cached_question(engine: Engine, tokens: int = 4096) -> float:
    document = prompt_text(engine, tokens)
    first = engine.generate(QUESTION.format(q="Who approved the plan?"), prefix=document, max_new_tokens=1)
    second = engine.generate(QUESTION.format(q="How much was the revenue?"), prefix=document, max_new_tokens=1)
    assert second.cached_tokens > 0, "the second question did not reuse the document"
    return first.prefill_seconds / second.prefill_seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2K-token prefill only (ends within 10 minutes here)")
    parser.add_argument("--json", action="store_true", help="one line of JSON")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    peak, bandwidth = matmul_gflops(), bandwidth_gbs()
    engine = Engine(build_random_granite(Runtime("cpu", "float32", "none")))
    config = engine.model.config
    report: dict = {"threads": torch.get_num_threads(), "matmul_gflops": round(peak, 1),
                    "bandwidth_gbs": round(bandwidth, 2)}  # fmt: skip
    for tokens in (2048,) if args.quick else (2048, 8192):
        prefill = measure_prefill(engine, tokens)
        suffix = "" if tokens == 2048 else "_8k"
        report[f"stock_prefill_tps{suffix}"] = round(prefill["stock_tps"], 1)
        report[f"ours_prefill_tps{suffix}"] = round(prefill["ours_tps"], 1)
        report[f"prefill_speedup{suffix}"] = round(prefill["ours_tps"] / prefill["stock_tps"], 2)
        fraction = prefill["ours_tps"] * prefill_flops_per_token(config, tokens) / (peak * 1e9)
        report[f"prefill_fraction_of_peak{suffix}"] = round(fraction, 3)
    decode = measure_decode(engine)
    bound = bandwidth * 1e9 / active_bytes_per_token(config)
    report |= {
        "stock_decode_tps": round(decode["stock_tps"], 2),
        "ours_decode_tps": round(decode["ours_tps"], 2),
        "decode_speedup": round(decode["ours_tps"] / decode["stock_tps"], 2),
        "decode_bound_tps": round(bound, 2),
        "decode_fraction_of_bound": round(decode["ours_tps"] / bound, 3),
        "outputs_match": decode["outputs_match"],
        "cached_question_speedup": round(measure_cached_question(engine), 1),
    }
    int8 = measure_int8(engine)  # last: it adds int8 weights to the model
    report |= {
        "ours_int8_decode_tps": round(int8["tps"], 2),
        "int8_decode_speedup": round(int8["tps"] / decode["stock_tps"], 2),
        "int8_max_logit_error": round(int8["max_logit_error"], 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
