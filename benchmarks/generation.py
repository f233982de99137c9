"""Stock transformers `model.generate` against our engine, on the real-size Granite-3.1-1B-A400M
architecture with random weights, in one process, with this machine's limits measured alongside.

    python benchmarks/generation.py [--quick] [--json] [--threads N] [--model tiny-random]

Stock runs first, on the model exactly as transformers builds it; then the same model's weights
are prepared in place as our loader prepares them (quantized if asked; native kernels built), and our engine
runs. Prints one JSON object: prefill speed on a 2K-token prompt (and 8K without --quick), decode speed
of 64 new tokens after a 1K-token prompt, whether the greedy outputs match, the speed-up of a second
question (and of another task's prompt) on a prefilled 4K-token document, the measured matmul peak
and weight-streaming bandwidth, how close our decode comes to the bandwidth bound (and how far
above stock that bound lies: the most any fp32 engine could gain) and our prefill to the
arithmetic peak, and the peak resident memory; then the same decode with `--quant int8`
weights and its largest logit change; then our engine with bf16 weights (prefill and decode),
which dtype the runtime picks on this CPU, and `--quant bf16-weights` (bf16 storage, fp32
arithmetic).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks.random_granite import MODELS, REAL_SIZE, SMOKE_MODEL_HELP, build_random_granite, filler_text
from model import compute
from model.checkpoints import TINY_RANDOM
from model.engine import Engine
from model.kernels import linear
from model.loader import prepare_weights
from model.runtime import Runtime, bf16_time_ratio, decide_runtime, detect_hardware


@dataclass(frozen=True)
class Sizes:
    """How much each measurement reads and writes."""

    prefill: tuple[int, ...]  # prompt lengths whose prefill speed is measured (the first without suffix)
    decode_prompt: int  # the prompt before the decode measurement
    decode_tokens: int
    cached_document: int  # the document of the cached-question measurement
    matmul: int  # the side of the matrices of the arithmetic-peak probe
    bandwidth_mb: int  # the matrix of the bandwidth probe


FULL = Sizes((2048, 8192), 1024, 64, 4096, 2048, 512)
QUICK = dataclasses.replace(FULL, prefill=(2048,))
SMOKE = Sizes((256,), 256, 8, 512, 256, 32)  # --model tiny-random: every path, the figures mean nothing
QUESTION = "\n\nTask: Answer the question below using only the document above.\n\nQuestion: {q}\nAnswer:"
OTHER_TASK = "\n\nList every person, company and amount of money named in the text, one per line:\n-"


def _seconds_per_call(function, repeats: int) -> float:
    function()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats


def matmul_gflops(size: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """Matrix-product speed (the arithmetic peak prefill can approach): the faster of torch's
    default product and the engine's (oneDNN for this many rows); bf16: torch's F.linear, which
    is what the engine runs (oneDNN, AMX tiles where the CPU has them)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    if dtype != torch.float32:
        with torch.inference_mode():
            for _ in range(5):  # oneDNN builds its kernel per shape, AMX is set up per thread
                torch.nn.functional.linear(a, b)
            return 2 * size**3 / _seconds_per_call(lambda: torch.nn.functional.linear(a, b), repeats) / 1e9
    with torch.inference_mode():
        seconds = min(_seconds_per_call(lambda: a @ b, repeats), _seconds_per_call(lambda: linear(a, b), repeats))
    return 2 * size**3 / seconds / 1e9


def bandwidth_gbs(megabytes: int = 512, repeats: int = 5, sustain_seconds: float = 3.0) -> tuple[float, float]:
    """Weight streaming speed, (sustained, first): a matrix-vector product over a matrix far larger
    than the caches, the faster of torch's default (MKL) and the engine's (native kernels), or a
    plain sum over the same bytes. MKL's alone reads about 18 GB/s on the development machine
    where the memory gives about 30. Some hosts give a burst after idling that a long stream
    cannot keep (a 2-core AMD EPYC VM: 38-46 GB/s for the first second, 27-29 after): the first
    reading is kept for the report, and the rate after `sustain_seconds` of streaming, what a
    decode of many tokens meets, is the bound's."""
    rows = megabytes * 2**20 // 4 // 4096
    matrix, vector = torch.randn(rows, 4096), torch.randn(1, 4096)

    def fastest() -> float:
        return min(
            _seconds_per_call(lambda: matrix @ vector[0], repeats),
            _seconds_per_call(lambda: linear(vector, matrix), repeats),
            _seconds_per_call(matrix.sum, repeats),
        )

    with torch.inference_mode():
        first = fastest()
        deadline = time.perf_counter() + sustain_seconds
        while time.perf_counter() < deadline:
            matrix.sum()
        sustained = fastest()
    return matrix.numel() * 4 / sustained / 1e9, matrix.numel() * 4 / first / 1e9


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


def measure_stock(model, engine: Engine, sizes: Sizes) -> dict:
    """Stock `model.generate` on the unprepared model: prefill speeds, decode speed and tokens."""
    result: dict = {"prefill_tps": {}}
    stock_generate(model, engine.encode(prompt_text(engine, 64)), 2)  # one-time start-up costs are not speed
    for tokens in sizes.prefill:
        ids = engine.encode(prompt_text(engine, tokens))
        result["prefill_tps"][tokens] = len(ids) / stock_generate(model, ids, 1)[1]
    ids = engine.encode(prompt_text(engine, sizes.decode_prompt))
    # The better of two: a first prefill of a new length builds kernels (oneDNN primitives) the
    # second reuses, and the difference below must be decode time only.
    one = min(stock_generate(model, ids, 1)[1] for _ in range(2))
    result["decode_ids"], full = stock_generate(model, ids, sizes.decode_tokens)
    result["decode_tps"] = (len(result["decode_ids"]) - 1) / (full - one)
    return result


def measure_ours(engine: Engine, sizes: Sizes, stock_ids: list[int]) -> dict:
    """Our engine on the same model, its weights prepared as the loader prepares them."""
    result: dict = {"prefill_tps": {}}
    for tokens in sizes.prefill:
        ours = engine.generate(prompt_text(engine, tokens), max_new_tokens=1)
        result["prefill_tps"][tokens] = ours.prompt_tokens / ours.prefill_seconds
    ours = engine.generate(prompt_text(engine, sizes.decode_prompt), max_new_tokens=sizes.decode_tokens)
    stock_text = engine.tokenizer.decode(stock_ids, skip_special_tokens=True)
    result["decode_tps"] = (ours.generated_tokens - 1) / ours.decode_seconds
    result["outputs_match"] = ours.text == stock_text and ours.generated_tokens == len(stock_ids)
    return result


def measure_int8(reference: torch.Tensor, model: str, sizes: Sizes) -> dict:
    """`--quant int8`: decode speed, and the largest logit change at a decode step against the
    fp32 `reference` logits, on a freshly built model (the same seed, so the same weights)."""
    engine = Engine(build_random_granite(Runtime("cpu", "float32", "int8"), model=model))
    text = prompt_text(engine, sizes.decode_prompt)
    result = engine.generate(text, max_new_tokens=sizes.decode_tokens)
    error = (engine.decode_step_logits(text) - reference).abs().max()
    return {"tps": (result.generated_tokens - 1) / result.decode_seconds, "max_logit_error": float(error)}


BF16 = Runtime("cpu", "bfloat16", "none")


def measure_bf16(model: str, sizes: Sizes, runtime: Runtime = BF16) -> dict:
    """Our engine with bf16 weights (the same seed, so the same weights rounded): prefill and
    decode speed. A bf16 model's prefill runs torch's bf16 products (oneDNN: AMX tiles where the
    CPU has them); `--quant bf16-weights` (fp32 arithmetic) widens the weights for oneDNN's fp32
    products. Decode runs the native kernels either way."""
    engine = Engine(build_random_granite(runtime, model=model))
    engine.generate(prompt_text(engine, 64), max_new_tokens=2)  # one-time start-up costs are not speed
    prefill = engine.generate(prompt_text(engine, sizes.prefill[0]), max_new_tokens=1)
    decode = engine.generate(prompt_text(engine, sizes.decode_prompt), max_new_tokens=sizes.decode_tokens)
    return {"prefill_tps": prefill.prompt_tokens / prefill.prefill_seconds,
            "decode_tps": (decode.generated_tokens - 1) / decode.decode_seconds}  # fmt: skip


def measure_cached_question(engine: Engine, tokens: int) -> tuple[float, float]:
    """Speed-ups of the time to the first token on an already-prefilled `tokens`-token document,
    against prefilling it again: for a follow-up question (the engine also reuses the template
    text the two questions share) and for another task's prompt (only the document is shared)."""
    document = prompt_text(engine, tokens)
    first = engine.generate(QUESTION.format(q="Who approved the plan?"), prefix=document, max_new_tokens=1)
    second = engine.generate(QUESTION.format(q="How much was the revenue?"), prefix=document, max_new_tokens=1)
    other = engine.generate(OTHER_TASK, prefix=document, max_new_tokens=1)
    assert second.cached_tokens > 0 and other.cached_tokens > 0, "a later prompt did not reuse the document"
    return first.prefill_seconds / second.prefill_seconds, first.prefill_seconds / other.prefill_seconds


def cpu_flags() -> str:
    """The vector and matrix extensions of this CPU that decide these figures."""
    try:
        flags = next(
            line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")
        ).split()
    except (OSError, StopIteration):
        return "unknown"
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return " ".join(flag for flag in wanted if flag in flags) or "none of avx2/avx512/amx"


def main(argv: list[str] | None = None) -> int:
    """Everything on the engine's compute thread (model/compute.py), the stock baseline too: one
    pool of CPU threads, as in the app."""
    return compute.run(_main, argv)


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2K-token prefill only (ends within 10 minutes here)")
    parser.add_argument("--json", action="store_true", help="one line of JSON")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--model", choices=MODELS, default=REAL_SIZE, help=SMOKE_MODEL_HELP)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = SMOKE if args.model == TINY_RANDOM else QUICK if args.quick else FULL
    sustain = 0.2 if args.model == TINY_RANDOM else 3.0  # the smoke test's figures mean nothing
    peak, (bandwidth, first_bandwidth) = matmul_gflops(sizes.matmul), bandwidth_gbs(sizes.bandwidth_mb, 5, sustain)
    runtime = Runtime("cpu", "float32", "none")
    loaded = build_random_granite(runtime, prepare=False, model=args.model)
    stock = measure_stock(loaded.model, Engine(loaded), sizes)
    loaded.model = prepare_weights(loaded.model, runtime)  # as the loader prepares them (ours, same tensors)
    engine = Engine(loaded)
    ours = measure_ours(engine, sizes, stock["decode_ids"])
    config = engine.model.config
    report: dict = {"model": args.model, "threads": torch.get_num_threads(), "matmul_gflops": round(peak, 1),
                    "bandwidth_gbs": round(bandwidth, 2), "bandwidth_first_gbs": round(first_bandwidth, 2)}  # fmt: skip
    for tokens in sizes.prefill:
        suffix = "" if tokens == sizes.prefill[0] else f"_{tokens // 1024}k"
        stock_tps, ours_tps = stock["prefill_tps"][tokens], ours["prefill_tps"][tokens]
        report[f"stock_prefill_tps{suffix}"] = round(stock_tps, 1)
        report[f"ours_prefill_tps{suffix}"] = round(ours_tps, 1)
        report[f"prefill_speedup{suffix}"] = round(ours_tps / stock_tps, 2)
        fraction = ours_tps * prefill_flops_per_token(config, tokens) / (peak * 1e9)
        report[f"prefill_fraction_of_peak{suffix}"] = round(fraction, 3)
    bound = bandwidth * 1e9 / active_bytes_per_token(config)
    follow_up, other_task = measure_cached_question(engine, sizes.cached_document)
    report |= {
        "stock_decode_tps": round(stock["decode_tps"], 2),
        "ours_decode_tps": round(ours["decode_tps"], 2),
        "decode_speedup": round(ours["decode_tps"] / stock["decode_tps"], 2),
        "decode_bound_tps": round(bound, 2),
        "decode_fraction_of_bound": round(ours["decode_tps"] / bound, 3),
        # the most any fp32 engine could gain over stock here: stock's distance from the bound
        "decode_speedup_ceiling": round(bound / stock["decode_tps"], 2),
        "outputs_match": ours["outputs_match"],
        "cached_question_speedup": round(follow_up, 1),
        "cached_other_task_speedup": round(other_task, 1),
    }
    reference = engine.decode_step_logits(prompt_text(engine, sizes.decode_prompt))
    del loaded, engine
    gc.collect()  # one real-size model in memory at a time
    int8 = measure_int8(reference, args.model, sizes)
    report |= {
        "ours_int8_decode_tps": round(int8["tps"], 2),
        "int8_decode_speedup": round(int8["tps"] / stock["decode_tps"], 2),
        "int8_vs_fp32_decode": round(int8["tps"] / ours["decode_tps"], 2),
        "int8_max_logit_error": round(int8["max_logit_error"], 4),
    }
    gc.collect()
    bf16 = measure_bf16(args.model, sizes)
    bf16_peak = matmul_gflops(sizes.matmul, dtype=torch.bfloat16)
    report |= {
        "bf16_time_ratio": round(bf16_time_ratio(), 3),  # bf16 product time over fp32's: < 0.6, the runtime picks bf16
        "runtime_picks": decide_runtime("cpu", "auto", detect_hardware()).describe(),
        "ours_bf16_prefill_tps": round(bf16["prefill_tps"], 1),
        "ours_bf16_decode_tps": round(bf16["decode_tps"], 2),
        "bf16_vs_fp32_prefill": round(bf16["prefill_tps"] / ours["prefill_tps"][sizes.prefill[0]], 2),
        "bf16_vs_fp32_decode": round(bf16["decode_tps"] / ours["decode_tps"], 2),
        "bf16_matmul_gflops": round(bf16_peak, 1),
        "bf16_prefill_fraction_of_peak": round(
            bf16["prefill_tps"] * prefill_flops_per_token(config, sizes.prefill[0]) / (bf16_peak * 1e9), 3
        ),
    }
    gc.collect()
    bf16_weights = measure_bf16(args.model, sizes, Runtime("cpu", "float32", "bf16-weights"))
    report |= {
        "ours_bf16_weights_prefill_tps": round(bf16_weights["prefill_tps"], 1),
        "ours_bf16_weights_decode_tps": round(bf16_weights["decode_tps"], 2),
        "bf16_weights_vs_fp32_decode": round(bf16_weights["decode_tps"] / ours["decode_tps"], 2),
        "bf16_weights_decode_speedup": round(bf16_weights["decode_tps"] / stock["decode_tps"], 2),
        "cpu_flags": cpu_flags(),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
