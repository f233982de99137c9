"""Where one decode step's time goes: torch's profiler over the engine's decode steps on a cached
document, the real-size Granite-3.1-1B-A400M with random weights.

    python benchmarks/decode_profile.py [--steps 32] [--context 1024] [--quant none|int8|bf16|auto] [--top 15]
                                        [--json] [--model tiny-random]

The document is read once (not profiled); then a question on it is answered with --steps new
tokens under the profiler. Prints the milliseconds of one step (wall clock, from the engine's own
timing), and the operators that take the most time per step (self time: an operator's own work,
not that of the operators it calls), summed over all calls and divided by the steps.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.random_granite import MODELS, REAL_SIZE, SMOKE_MODEL_HELP, build_random_granite, filler_text
from model import compute
from model.checkpoints import TINY_RANDOM
from model.engine import Engine
from model.runtime import Runtime, decide_runtime, detect_hardware


def document(engine: Engine, tokens: int) -> str:
    return engine.tokenizer.decode(engine.encode(filler_text(tokens * 2))[:tokens])


def profile_decode(engine: Engine, context: int, steps: int, top: int) -> dict:
    """Profile `steps` decode steps after a `context`-token cached document."""
    text = document(engine, context)
    engine.generate("\n\nQuestion: Who met?\nAnswer:", prefix=text, max_new_tokens=2)  # read it once
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        result = engine.generate("\n\nQuestion: What was approved?\nAnswer:", prefix=text, max_new_tokens=steps)
    step_ms = result.decode_seconds / max(result.generated_tokens, 1) * 1000
    events = sorted(profiler.key_averages(), key=lambda event: event.self_cpu_time_total, reverse=True)
    rows = [
        {
            "op": event.key,
            "ms_per_step": round(event.self_cpu_time_total / 1000 / result.generated_tokens, 3),
            "calls_per_step": round(event.count / result.generated_tokens, 1),
        }
        for event in events[:top]
    ]
    calls = sum(event.count for event in events) / result.generated_tokens
    operators_ms = sum(event.self_cpu_time_total for event in events) / 1000 / result.generated_tokens
    return {"step_ms": round(step_ms, 2), "ops_per_step": round(calls), "operators_ms_per_step": round(operators_ms, 2),
            "top_ops": rows}  # fmt: skip


def runtime_for(quant: str) -> Runtime:
    """fp32 for "none" (the stock comparison's dtype); otherwise as `app.py --quant` decides."""
    if quant == "none":
        return Runtime("cpu", "float32", "none")
    return decide_runtime("cpu", quant, detect_hardware())


def main(argv: list[str] | None = None) -> int:
    """Everything on the engine's compute thread (model/compute.py), the stock baseline too: one
    pool of CPU threads, as in the app."""
    return compute.run(_main, argv)


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument(
        "--quant",
        choices=("none", "int8", "bf16", "bf16-weights", "auto"),
        default="none",
        help="none: fp32; auto: what the runtime picks on this CPU",
    )
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--model", choices=MODELS, default=REAL_SIZE, help=SMOKE_MODEL_HELP)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    engine = Engine(build_random_granite(runtime_for(args.quant), model=args.model))
    context = min(args.context, 200) if args.model == TINY_RANDOM else args.context
    report = {"model": args.model, "quant": args.quant, "context": context, "threads": torch.get_num_threads()}
    report |= profile_decode(engine, context, args.steps, args.top)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"one decode step: {report['step_ms']} ms; torch operators {report['operators_ms_per_step']} ms in "
          f"{report['ops_per_step']} calls (the rest: native kernels, Python)")  # fmt: skip
    print("| operator | ms per step | calls per step |\n|---|---|---|")
    for row in report["top_ops"]:
        print(f"| {row['op']} | {row['ms_per_step']} | {row['calls_per_step']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
