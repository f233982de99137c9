"""Long-context measurements on the real-size Granite-3.1-1B-A400M architecture (random weights).

    python benchmarks/long_context.py [--tokens 4096] [--chunk N] [--json] [--model tiny-random]

Reports, for a prompt of --tokens tokens on this machine:
- the peak memory added by prefilling it in one pass and in chunks of --chunk tokens (each in a
  fresh process, sampled from /proc every 5 ms), and whether both give the same next token;
- the time to the first token of a second question on the same, already-prefilled document
  (the document prefix cache) against prefilling it again, both asked in one session (one cache
  salt, as the web UI sends them), and the same question from another session, which must read
  the document again (the cache's trust boundary).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.memory import PeakSampler, rss_bytes
from benchmarks.random_granite import MODELS, REAL_SIZE, SMOKE_MODEL_HELP

QUESTION = "\n\nTask: Answer the question below using only the document above.\n\nQuestion: {q}\nAnswer:"


def build_engine(chunk: int, model: str = REAL_SIZE):
    """The engine measured: the real-size architecture with random weights, or `tiny-random` (the
    smoke test's: every path runs in seconds, the figures mean nothing)."""
    from benchmarks.random_granite import build_random_granite
    from model.engine import Engine
    from model.loader import load_model
    from model.runtime import Runtime

    runtime = Runtime("cpu", "float32", "none")
    # tiny-random goes through the loader, as `--model tiny-random` does in the app
    loaded = build_random_granite(runtime) if model == REAL_SIZE else load_model(model, runtime)
    return Engine(loaded, prefill_chunk=chunk)


def document_of(engine, tokens: int) -> str:
    from benchmarks.random_granite import filler_text

    text = filler_text(tokens)
    while engine.count_tokens(text) > tokens:
        text = text[: int(len(text) * 0.97)]
    return text


def measure_prefill(tokens: int, chunk: int, model: str = REAL_SIZE) -> dict:
    """In this process: the memory added by prefilling `tokens` tokens in chunks of `chunk`."""
    engine = build_engine(chunk, model)
    document = document_of(engine, tokens)
    engine.generate("warm up", max_new_tokens=2)
    before = rss_bytes()
    with PeakSampler() as sampler:
        result = engine.generate(document, max_new_tokens=1)
    return {
        "chunk": chunk,
        "prompt_tokens": result.prompt_tokens,
        "peak_added_mib": round((sampler.peak - before) / 2**20),
        "prefill_seconds": round(result.prefill_seconds, 1),
        "first_token": result.text,
    }


def measure_cached_question(tokens: int, chunk: int, model: str = REAL_SIZE) -> dict:
    engine = build_engine(chunk, model)
    document = document_of(engine, tokens)
    ask = lambda question, session: engine.generate(  # noqa: E731
        QUESTION.format(q=question), prefix=document, max_new_tokens=1, cache_salt=session
    )
    first = ask("Who approved the plan?", "session-a")
    second = ask("How much revenue?", "session-a")
    other_session = ask("How much revenue?", "session-b")
    return {
        "document_tokens": first.prompt_tokens,
        "first_question_seconds": round(first.prefill_seconds, 2),
        "second_question_seconds": round(second.prefill_seconds, 3),
        "cached_tokens": second.cached_tokens,
        "speedup": round(first.prefill_seconds / second.prefill_seconds, 1),
        "other_session_seconds": round(other_session.prefill_seconds, 2),
        "other_session_cached_tokens": other_session.cached_tokens,
    }


def in_subprocess(tokens: int, chunk: int, model: str) -> dict:
    code = (
        "import json, sys; sys.path.insert(0, '.'); from benchmarks.long_context import measure_prefill; "
        f"print(json.dumps(measure_prefill({tokens}, {chunk}, {model!r})))"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    from model.engine import DEFAULT_PREFILL_CHUNK

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--chunk", type=int, default=DEFAULT_PREFILL_CHUNK, help="prefill chunk (the engine's default)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--model", choices=MODELS, default=REAL_SIZE, help=SMOKE_MODEL_HELP)
    args = parser.parse_args(argv)
    one_shot = in_subprocess(args.tokens, 10**9, args.model)
    chunked = in_subprocess(args.tokens, args.chunk, args.model)
    cached = measure_cached_question(args.tokens, args.chunk, args.model)
    report = {
        "prefill_one_shot": one_shot,
        "prefill_chunked": chunked,
        "same_first_token": one_shot["first_token"] == chunked["first_token"],
        "cached_question": cached,
    }
    print(json.dumps(report, indent=2 if not args.json else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
