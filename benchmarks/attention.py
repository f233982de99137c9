"""Prefill attention in bf16: torch's CPU flash-attention path (as model/attention.py runs it
without our kernel) against our AMX kernel (model/cpu_attention.cpp), in one run.

    python benchmarks/attention.py [--json] [--lengths 1024,2048,4096,8192] [--smoke]

Granite-3.1-1B-A400M's shapes (16 query heads, 8 key/value heads, head size 64): a whole chunk
read from an empty cache (causal), and a question of `--question` positions after a cached
document of each length. Prints milliseconds per layer and the matrix GFLOP/s (QK^T and PV,
causal half counted once). Where the CPU has no AMX, only torch's figures are given.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks.generation import cpu_flags
from model import compute, native
from model.attention import attend

HEADS, KV_HEADS, DIM = 16, 8, 64


def _milliseconds(function, repeats: int) -> float:
    function()  # warm-up: the first call sets up the tiles and torch's kernels
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats * 1e3


def measure(past: int, new: int, repeats: int) -> dict:
    """One layer's attention of `new` positions after `past` cached ones, both ways."""
    query = torch.randn(HEADS, new, DIM).bfloat16()
    keys, values = torch.randn(KV_HEADS, past + new, DIM).bfloat16(), torch.randn(KV_HEADS, past + new, DIM).bfloat16()
    flops = 4 * HEADS * DIM * new * (past + (new + 1) / 2)  # each query's visible keys, two products

    def run() -> None:
        attend(query, keys, values, 0.125)

    row: dict = {"past": past, "new": new}
    with torch.inference_mode():
        with mock.patch.object(native, "attends", lambda *_: False):
            row["torch_ms"] = round(_milliseconds(run, repeats), 3)
        if native.attends(query, keys):
            row["ours_ms"] = round(_milliseconds(run, repeats), 3)
            row["speedup"] = round(row["torch_ms"] / row["ours_ms"], 2)
    for name in ("torch", "ours"):
        if f"{name}_ms" in row:
            row[f"{name}_gflops"] = round(flops / row[f"{name}_ms"] / 1e6, 1)
    return row


def main(argv: list[str] | None = None) -> int:
    return compute.run(_main, argv)  # the engine's compute thread, as in the app


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="1024,2048,4096,8192", help="document lengths in tokens")
    parser.add_argument("--question", type=int, default=native.MIN_ATTENTION_ROWS, help="a question's positions")
    parser.add_argument("--json", action="store_true", help="one line of JSON")
    parser.add_argument("--smoke", action="store_true", help="tiny lengths, one repeat: every path, no figures")
    args = parser.parse_args(argv)
    lengths = [64] if args.smoke else [int(part) for part in args.lengths.split(",")]
    repeats = 1 if args.smoke else 3
    rows = []
    for length in lengths:
        rows.append(measure(0, length, repeats))
        rows.append(measure(length, args.question, repeats * 5))
    report = {"cpu_flags": cpu_flags(), "threads": torch.get_num_threads(), "rows": rows}
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
