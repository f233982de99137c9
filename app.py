"""Granite Long-Doc: the entry point for Hugging Face Spaces and the command line.

    python app.py [--model ID|PATH|tiny-random] [--quant ...] [--device ...]   serve the web UI
    python app.py info FILE                  pages, tokens and the context budget
    python app.py summarize FILE             stream a summary
    python app.py ask FILE "QUESTION"        stream an answer

`--json` prints one JSON object instead. Errors print `error: <message>` and exit with status 2.
"""

from __future__ import annotations

import os

# Set before gradio / huggingface_hub are imported: no analytics, no telemetry.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import argparse
import json
import logging
import sys
import time
from typing import Any

from model.checkpoints import DEFAULT_MODEL_ID
from model.runtime import DEVICE_CHOICES, QUANT_CHOICES, decide_runtime, detect_hardware
from tasks.errors import InvalidRequest, UserError
from tasks.events import Progress, TaskResult, TextDelta
from tasks.pipeline import GenerationOptions
from tasks.workbench import Workbench

logger = logging.getLogger("granite_longdoc")
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="app.py", description="Summarize and question long documents with IBM Granite."
    )
    _add_model_options(parser, suppress=False)
    serve = parser.add_argument_group("web UI")
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port to listen on (default 7860)")
    serve.add_argument("--share", action="store_true", help="also create a public gradio.live link")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = commands.add_parser("info", help="pages, tokens and the context budget of a file")
    summarize = commands.add_parser("summarize", help="summarize a file")
    ask = commands.add_parser("ask", help="answer a question about a file")
    for sub in (info, summarize, ask):
        sub.add_argument("file", help="a PDF, TXT or Markdown file")
    ask.add_argument("question")
    for sub in (summarize, ask):
        sub.add_argument("--max-new-tokens", type=int, default=512)
        sub.add_argument("--temperature", type=float, default=0.0, help="0 means greedy decoding")
    for sub in (info, summarize, ask):
        sub.add_argument("--json", action="store_true", help="print one JSON object")
        _add_model_options(sub, suppress=True)
    return parser


def _add_model_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Model options work before or after the command; after it they must not reset the defaults."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("model")
    group.add_argument("--model", default=default(DEFAULT_MODEL_ID), help="hub id, local folder, or tiny-random")
    group.add_argument("--quant", choices=QUANT_CHOICES, default=default("auto"))
    group.add_argument("--device", choices=DEVICE_CHOICES, default=default("auto"))
    group.add_argument("--context-budget", type=int, default=default(None), help="tokens per request")
    group.add_argument("--verbose", action="store_true", default=default(False))


def build_workbench(args: argparse.Namespace, *, weights: bool = True) -> Workbench:
    """Decide the runtime and load the model once. A model that fails to load leaves a Workbench
    without an engine (the document tools still work) that says why."""
    from model.engine import Engine
    from model.loader import ModelLoadError, load_model, load_token_counter

    try:
        runtime = decide_runtime(args.device, args.quant, detect_hardware())
    except ValueError as exc:  # an impossible --device / --quant combination
        raise InvalidRequest(str(exc)) from exc
    demo = args.model == "tiny-random"
    try:
        if not weights:
            counter = load_token_counter(args.model, runtime)
            return Workbench(counter=counter, model_status=args.model, context_budget=args.context_budget)
        engine = Engine(load_model(args.model, runtime))
    except ModelLoadError as exc:
        logger.warning("model not loaded: %s", exc)
        status = f"{args.model} (not loaded) · {runtime.describe()}"
        return Workbench(model_status=status, unavailable_reason=str(exc), context_budget=args.context_budget)
    workbench = Workbench(engine, model_status="", demo_model=demo, context_budget=args.context_budget)
    workbench.model_status = f"{engine.report.summary()} · context budget {workbench.budget:,} tokens"
    return workbench


def serve(args: argparse.Namespace) -> int:
    from app.ui import CSS, build_ui

    workbench = build_workbench(args)
    demo = build_ui(workbench)
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, css=CSS)
    return 0


def run_info(args: argparse.Namespace) -> int:
    workbench = build_workbench(args, weights=False)
    started = time.perf_counter()
    card = workbench.card(workbench.read(args.file))
    if args.json:
        strategy = None if card.fits is None else ("full" if card.fits else "exceeds-budget")
        document = {"name": card.name, "pages": card.pages, "tokens": card.tokens}
        timings = {"read_seconds": round(time.perf_counter() - started, 3)}
        extra = {"characters": card.characters, "budget": card.budget, "fits": card.fits, "note": card.note}
        _print_json({"task": "info", "strategy": strategy, "document": document, "timings": timings, **extra})
    else:
        tokens = "unknown" if card.tokens is None else f"{card.tokens:,}"
        print(f"{card.name}: {card.pages:,} pages, {card.characters:,} characters, {tokens} tokens")
        print(card.note)
    return 0


def run_task(args: argparse.Namespace) -> int:
    workbench = build_workbench(args)
    options = GenerationOptions(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, context_budget=args.context_budget
    )
    if args.command == "summarize":
        events = workbench.summarize(args.file, options)
    else:
        events = workbench.ask(args.file, args.question, options)
    for event in events:
        if isinstance(event, Progress) and not args.json:
            print(f"[{event.message}]", file=sys.stderr, flush=True)
        elif isinstance(event, TextDelta) and not args.json:
            print(event.text, end="", flush=True)
        elif isinstance(event, TaskResult):
            _print_result(event, args.json, workbench.demo_model)
    return 0


def _print_result(result: TaskResult, as_json: bool, demo: bool) -> None:
    if as_json:
        _print_json(result.to_json())
        return
    usage, timings = result.usage, result.timings
    print()
    print(
        f"[{result.finish_reason} · strategy {result.strategy} · {usage['prompt_tokens']:,} prompt tokens · "
        f"{usage['generated_tokens']:,} new tokens · {timings['decode_tokens_per_second']:.1f} tokens/s]",
        file=sys.stderr,
    )
    if demo:
        print("[tiny-random is a random demo model: its text is meaningless]", file=sys.stderr)


def _print_json(data: dict[str, Any]) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    handlers = {"info": run_info, "summarize": run_task, "ask": run_task, None: serve}
    try:
        return handlers[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ncancelled", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
