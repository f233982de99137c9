"""A short GPU check, prepared for sessions that are lent a GPU (never run by tests or CI).

    python benchmarks/gpu_check.py            # one JSON object; exit 1 if a check failed

On the real-size Granite config with random weights (tokenizer of tiny-random): the runtime
decision picks CUDA and bf16; tiny-random streams on the GPU like on the CPU; bf16 decode tokens/s
(ours and stock) after 1K and 32K tokens; a 128K-token chunked prefill's time and peak memory;
4-bit (NF4 experts) weight memory and decode speed. Each part reports its own error and the
others still run. Meant to end within 8 minutes on an H100.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks.random_granite import build_random_granite, filler_text
from model.engine import Engine
from model.loader import load_model, weight_bytes
from model.runtime import Runtime, decide_runtime, detect_hardware

PROMPT = "Der Bericht beschreibt den Umsatz. この文書は会社の売上"


def text_of(engine: Engine, tokens: int) -> str:
    words = filler_text(tokens * 2)
    return engine.tokenizer.decode(engine.encode(words)[:tokens])


def check_runtime() -> dict:
    hardware = detect_hardware()
    runtime = decide_runtime("auto", "auto", hardware)
    expected = "bfloat16" if hardware.cuda_bf16 else "float16"
    return {"ok": runtime.device == "cuda" and runtime.dtype == expected, "gpu": hardware.gpu_name, **vars(runtime)}


def check_tiny() -> dict:
    gpu = Engine(load_model("tiny-random", Runtime("cuda", "float32", "none")))
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


def stock_decode_tps(engine: Engine, context: int, new_tokens: int = 64) -> float:
    ids = torch.tensor([engine.encode(text_of(engine, context))], device="cuda")
    timings = []
    for count in (1, new_tokens):
        torch.cuda.synchronize()
        started = time.perf_counter()
        with torch.inference_mode():
            engine.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=count,
                                  min_new_tokens=count, do_sample=False)  # fmt: skip
        torch.cuda.synchronize()
        timings.append(time.perf_counter() - started)
    return round((new_tokens - 1) / (timings[1] - timings[0]), 1)


def check_bf16() -> dict:
    engine = Engine(build_random_granite(Runtime("cuda", "bfloat16", "none")), prefill_chunk=4096)
    engine.generate("warm up " * 50, max_new_tokens=4)
    report = {
        "weight_mib": round(engine.report.weight_bytes / 2**20),
        "decode_tps_1k": decode_tps(engine, 1024),
        "stock_decode_tps_1k": stock_decode_tps(engine, 1024),
        "decode_tps_32k": decode_tps(engine, 32_768),
    }
    torch.cuda.reset_peak_memory_stats()
    long = engine.generate(text_of(engine, 131_000), max_new_tokens=1)
    report |= {
        "prefill_128k_seconds": round(long.prefill_seconds, 1),
        "prefill_128k_tokens": long.prompt_tokens,
        "prefill_128k_peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "kv_cache_tokens_that_fit": engine.memory_token_limit(),
    }
    report["ok"] = report["decode_tps_1k"] > 0 and long.prompt_tokens > 120_000
    return report


def check_4bit() -> dict:
    loaded = build_random_granite(Runtime("cuda", "bfloat16", "4bit"))  # experts and attention in NF4
    engine = Engine(loaded)
    mib = round(weight_bytes(loaded.model) / 2**20)
    report = {
        "weight_mib": mib,
        "decode_tps_1k": decode_tps(engine, 1024),
        "decode_tps_32k": decode_tps(engine, 32_768),
    }
    report["ok"] = mib <= 1024
    return report


def main() -> int:
    if not torch.cuda.is_available():
        print(json.dumps({"ok": False, "error": "no CUDA GPU here"}))
        return 1
    results: dict = {}
    for name, check in (("runtime", check_runtime), ("tiny_random", check_tiny), ("bf16", check_bf16),
                        ("four_bit", check_4bit)):  # fmt: skip
        started = time.perf_counter()
        try:
            results[name] = check()
        except Exception as exc:  # report and go on: one broken part must not hide the others
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(-3)}
        results[name]["seconds"] = round(time.perf_counter() - started, 1)
        torch.cuda.empty_cache()
        print(json.dumps({name: results[name]}), flush=True)
    results["ok"] = all(part["ok"] for part in results.values())
    print(json.dumps(results, indent=2))
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
