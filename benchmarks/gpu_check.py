"""A short GPU check, prepared for sessions that are lent a GPU (never run by tests or CI).

    python benchmarks/gpu_check.py            # prints one JSON object, exits 1 if a check failed

Checks: the runtime decision picks CUDA and bf16 (fp16 without bf16); tiny-random streams on the
GPU with stop strings and cancel; greedy fp32 tokens on the GPU match the CPU's; the real-size
Granite config (random weights) loads in bf16 with the expected weight memory, and its prefill of
a ~2K-token prompt and decode of 64 tokens are timed.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks.random_granite import build_random_granite, filler_text
from model.engine import Engine
from model.loader import load_model
from model.runtime import Runtime, decide_runtime, detect_hardware

PROMPT = "Der Bericht beschreibt den Umsatz. この文書は会社の売上"


def check_runtime() -> dict:
    hardware = detect_hardware()
    runtime = decide_runtime("auto", "auto", hardware)
    expected = "bfloat16" if hardware.cuda_bf16 else "float16"
    return {"ok": runtime.device == "cuda" and runtime.dtype == expected, "gpu": hardware.gpu_name, **vars(runtime)}


def check_tiny_on_gpu() -> dict:
    gpu = Engine(load_model("tiny-random", Runtime("cuda", "float32", "none")))
    cpu = Engine(load_model("tiny-random", Runtime("cpu", "float32", "none")))
    same = gpu.generate(PROMPT, max_new_tokens=32).text == cpu.generate(PROMPT, max_new_tokens=32).text
    cancel = threading.Event()
    chunks = []
    for chunk in gpu.stream(PROMPT, max_new_tokens=500, cancel=cancel):
        chunks.append(chunk)
        cancel.set()
    last = chunks[-1]
    bf16 = Engine(load_model("tiny-random", Runtime("cuda", "bfloat16", "none"))).generate(PROMPT, max_new_tokens=16)
    ok = same and last.finish_reason == "cancelled" and bf16.generated_tokens == 16
    return {"ok": ok, "gpu_matches_cpu_fp32": same, "cancel": last.finish_reason, "bf16_tokens": bf16.generated_tokens}


def check_real_size() -> dict:
    loaded = build_random_granite(decide_runtime("cuda", "auto", detect_hardware()))
    engine = Engine(loaded)
    prompt = filler_text(1400)
    engine.generate(prompt[:2000], max_new_tokens=4)  # warm-up
    torch.cuda.synchronize()
    result = engine.generate(prompt, max_new_tokens=64, stop=[])
    report = loaded.report
    return {
        "ok": report.parameters == 1_334_628_352 and result.generated_tokens == 64,
        "parameters": report.parameters,
        "weight_mib": round(report.weight_bytes / 2**20),
        "prompt_tokens": result.prompt_tokens,
        "prefill_tokens_per_second": round(result.prompt_tokens / result.prefill_seconds, 1),
        "decode_tokens_per_second": round(result.decode_tokens_per_second, 1),
        "peak_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20),
        "kv_cache_tokens_that_fit": engine.memory_token_limit(),
        "kv_bytes_per_token": engine.kv_bytes_per_token,  # 49,152 (48 KiB) expected in bf16
    }


def main() -> int:
    if not torch.cuda.is_available():
        print(json.dumps({"ok": False, "error": "no CUDA GPU here"}))
        return 1
    results = {"runtime": check_runtime(), "tiny_random": check_tiny_on_gpu(), "real_size": check_real_size()}
    results["ok"] = all(part["ok"] for part in results.values())
    print(json.dumps(results, indent=2))
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
