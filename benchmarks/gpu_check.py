"""A short GPU check, prepared for sessions that are lent a GPU.

    python benchmarks/gpu_check.py            # one JSON object; exit 1 if a check failed
    python benchmarks/gpu_check.py --smoke    # every part on the CPU, tiny sizes (the test suite's)

On the real-size Granite config with random weights (tokenizer of tiny-random): the runtime
decision picks CUDA and bf16; tiny-random streams on the GPU like on the CPU; bf16 decode tokens/s
(ours, with the CUDA-graph decode step of model/static_decode.py, and stock) after 1K and 32K
tokens; a 128K-token chunked prefill's time and peak memory;
4-bit (NF4 experts) weight memory and decode speed. Each part reports its own error and the
others still run. Meant to end within 8 minutes on an H100.

`--smoke` runs the same parts on the CPU with tiny-random's sizes and short prompts, so that the
test suite (tests/test_benchmarks.py) catches a broken script before a GPU session spends its
minutes on it; its figures mean nothing. Tests and CI never need a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks.random_granite import REAL_SIZE, build_random_granite, filler_text
from model.checkpoints import TINY_RANDOM
from model.engine import Engine
from model.loader import load_model, prepare_weights, weight_bytes
from model.runtime import Runtime, decide_runtime, detect_hardware

PROMPT = "Der Bericht beschreibt den Umsatz. この文書は会社の売上"


@dataclass(frozen=True)
class Sizes:
    """Where the check runs and how big it is."""

    device: str
    model: str  # benchmarks.random_granite's REAL_SIZE or TINY_RANDOM
    mid_context: int  # the second decode measurement's context
    long_context: int  # the chunked prefill's prompt
    four_bit_limit_mib: float | None  # None: the 4-bit weights must just be smaller than bf16's


GPU = Sizes("cuda", REAL_SIZE, 32_768, 131_000, 1024)
SMOKE = Sizes("cpu", TINY_RANDOM, 1_024, 4_000, None)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def text_of(engine: Engine, tokens: int) -> str:
    words = filler_text(tokens * 2)
    return engine.tokenizer.decode(engine.encode(words)[:tokens])


def check_runtime(sizes: Sizes) -> dict:
    hardware = detect_hardware()
    runtime = decide_runtime("auto", "auto", hardware)
    if sizes.device != "cuda":  # the smoke run: the CPU is what the decision must pick here
        return {"ok": runtime.device == "cpu", **vars(runtime)}
    expected = "bfloat16" if hardware.cuda_bf16 else "float16"
    return {"ok": runtime.device == "cuda" and runtime.dtype == expected, "gpu": hardware.gpu_name, **vars(runtime)}


def check_tiny(sizes: Sizes) -> dict:
    gpu = Engine(load_model("tiny-random", Runtime(sizes.device, "float32", "none")))
    cpu = Engine(load_model("tiny-random", Runtime("cpu", "float32", "none")))
    same = gpu.generate(PROMPT, max_new_tokens=32).text == cpu.generate(PROMPT, max_new_tokens=32).text
    cancel = threading.Event()
    chunks = []
    for chunk in gpu.stream(PROMPT, max_new_tokens=500, cancel=cancel):
        chunks.append(chunk)
        cancel.set()
    return {"ok": same and chunks[-1].finish_reason == "cancelled", "gpu_matches_cpu_fp32": same}


def decode_tps(engine: Engine, context: int, new_tokens: int = 64) -> float:
    result = engine.generate(text_of(engine, context), max_new_tokens=new_tokens)
    return round((result.generated_tokens - 1) / result.decode_seconds, 1)


def stock_decode_tps(model, engine: Engine, context: int, new_tokens: int = 64) -> float:
    """transformers' `generate` on the stock `model` (the engine's tokenizer makes the prompt)."""
    device = engine.device
    ids = torch.tensor([engine.encode(text_of(engine, context))], device=device)
    timings = []
    for count in (1, new_tokens):
        synchronize(device)
        started = time.perf_counter()
        with torch.inference_mode():
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=count,
                                  min_new_tokens=count, do_sample=False)  # fmt: skip
        synchronize(device)
        timings.append(time.perf_counter() - started)
    return round((new_tokens - 1) / (timings[1] - timings[0]), 1)


def peak_memory_gib(device: str) -> float:
    """The GPU's peak allocation since the last reset, or this process's peak RSS on the CPU."""
    if device == "cuda":
        return round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


def check_bf16(sizes: Sizes) -> dict:
    runtime = Runtime(sizes.device, "bfloat16", "none")
    loaded = build_random_granite(runtime, model=sizes.model, prepare=False)
    stock = loaded.model
    stock_tps = stock_decode_tps(stock, Engine(loaded), 1024)
    stock_tps_mid = stock_decode_tps(stock, Engine(loaded), sizes.mid_context)
    loaded.model = prepare_weights(stock, runtime)  # ours, on the same tensors
    del stock
    engine = Engine(loaded, prefill_chunk=4096)
    engine.generate("warm up " * 50, max_new_tokens=4)
    report = {
        "weight_mib": round(engine.report.weight_bytes / 2**20),
        "decode_tps_1k": decode_tps(engine, 1024),
        "stock_decode_tps_1k": stock_tps,
        "decode_tps_mid": decode_tps(engine, sizes.mid_context),
        "stock_decode_tps_mid": stock_tps_mid,
        "static_decode": type(engine._runner).__name__ == "StaticDecoder",  # CUDA graphs (model/static_decode.py)
    }
    if sizes.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    long = engine.generate(text_of(engine, sizes.long_context), max_new_tokens=1)
    report |= {
        "long_prefill_seconds": round(long.prefill_seconds, 1),
        "long_prefill_tokens": long.prompt_tokens,
        "long_prefill_peak_gib": peak_memory_gib(sizes.device),
        "kv_cache_tokens_that_fit": engine.memory_token_limit(),
    }
    report["ok"] = report["decode_tps_1k"] > 0 and long.prompt_tokens > 0.9 * sizes.long_context
    return report


def check_4bit(sizes: Sizes) -> dict:
    runtime = Runtime(sizes.device, "bfloat16", "4bit")  # experts and attention in NF4
    loaded = build_random_granite(runtime, model=sizes.model)
    engine = Engine(loaded)
    mib = weight_bytes(loaded.model) / 2**20
    limit = sizes.four_bit_limit_mib or loaded.report.parameters * 2 / 2**20  # bf16's size
    report = {
        "weight_mib": round(mib, 1),
        "decode_tps_1k": decode_tps(engine, 1024),
        "decode_tps_mid": decode_tps(engine, sizes.mid_context),
    }
    report["ok"] = mib <= limit
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--smoke", action="store_true", help="every part on the CPU at tiny sizes (figures mean nothing)"
    )
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else GPU
    if sizes.device == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"ok": False, "error": "no CUDA GPU here"}))
        return 1
    results: dict = {"sizes": {**vars(sizes), "ok": True}}
    for name, check in (("runtime", check_runtime), ("tiny_random", check_tiny), ("bf16", check_bf16),
                        ("four_bit", check_4bit)):  # fmt: skip
        started = time.perf_counter()
        try:
            results[name] = check(sizes)
        except Exception as exc:  # report and go on: one broken part must not hide the others
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(-3)}
        results[name]["seconds"] = round(time.perf_counter() - started, 1)
        if sizes.device == "cuda":
            torch.cuda.empty_cache()
        print(json.dumps({name: results[name]}), flush=True)
    results["ok"] = all(part["ok"] for part in results.values())
    print(json.dumps(results, indent=2))
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
