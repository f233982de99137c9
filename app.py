"""Granite Long-Doc: the entry point for Hugging Face Spaces and the command line.

    python app.py [--model ID|PATH|tiny-random] [--quant ...] [--device ...]   serve the web UI
        [--host H] [--port P] [--share] [--auth USER:PASSWORD] [--max-file-mb N] [--max-queue N]
        [--time-limit SECONDS]
    python app.py --backend openai [--base-url URL] [--served-model NAME] [--api-key KEY] ...
                                             the same, with the model on a vLLM (OpenAI-compatible) server
    python app.py info FILE...               pages, tokens, language, budget, strategies, wait
    python app.py text FILE...               the normalized text, with page markers
    python app.py summarize FILE...          stream a summary
    python app.py ask FILE... "QUESTION"     stream an answer, with sources
    python app.py prompt FILE... "INSTRUCTION"   run your own instruction, with sources
    python app.py extract FILE... --fields title,author,date | --schema SCHEMA.json
    python app.py classify FILE... --labels invoice,contract,report
    python app.py check-context [--lengths 4k,16k,64k,128k] [--plot FILE.png]   needle-in-a-haystack

`--json` prints one JSON object instead; `--password` opens encrypted PDFs.
Errors print `error: <message>` and exit with status 2.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from app.cli_inputs import check_documents, check_plot, read_schema
from app.launch import DEFAULT_KEEP_MINUTES, DEFAULT_MAX_FILE_MB, DEFAULT_MAX_QUEUE
from model.checkpoints import DEFAULT_MODEL_ID, TINY_RANDOM
from model.runtime import DEVICE_CHOICES, QUANT_CHOICES, decide_runtime, detect_hardware
from tasks.budget import STRATEGY_CHOICES
from tasks.errors import InvalidRequest, ModelUnavailable, UserError
from tasks.events import Progress, TaskResult, TextDelta
from tasks.extract import spec_from_fields, spec_from_schema
from tasks.language import LANGUAGES
from tasks.pipeline import TaskOptions
from tasks.workbench import Workbench

logger = logging.getLogger("granite_longdoc")
EXIT_USAGE = 2
TASK_COMMANDS = ("summarize", "ask", "extract", "classify", "prompt")
BACKEND_CHOICES = ("transformers", "openai")
DEFAULT_BASE_URL = "http://localhost:8000/v1"  # vLLM's default port
DEFAULT_MAX_CONCURRENT = 16
DEFAULT_TIME_LIMIT = 600.0  # seconds per web request, so that no request holds the model and the queue for ever


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are InvalidRequest, so that main prints each as one `error: ...` line
    with status 2, like every other wrong value (not the usage text and a SystemExit). The
    subparsers are of this class too: argparse makes them with `parser_class=type(parser)`."""

    def error(self, message: str) -> NoReturn:
        raise InvalidRequest(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="app.py", description="Summarize and question long documents with IBM Granite.")
    _add_model_options(parser, suppress=False)
    serve = parser.add_argument_group("web UI")
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    # The numbers are checked by app.launch.serve_options, so that every wrong value gets one
    # `error: ...` line (argparse would add its usage text).
    serve.add_argument("--port", default=None, help="port to listen on, 1-65535 (default 7860)")
    serve.add_argument("--share", action="store_true", help="also create a public gradio.live link (needs internet)")
    serve.add_argument(
        "--auth",
        default=None,
        metavar="USER:PASSWORD",
        help="require sign-in (several pairs separated by commas; or set GRANITE_LONGDOC_AUTH)",
    )
    serve.add_argument(
        "--max-file-mb", default=DEFAULT_MAX_FILE_MB, metavar="MB", help="largest upload accepted, in MB (default 50)"
    )
    serve.add_argument(
        "--max-queue",
        default=DEFAULT_MAX_QUEUE,
        metavar="N",
        help="requests that may wait for the model; more are turned away with a message (default 16)",
    )
    serve.add_argument(
        "--keep-files-minutes",
        default=DEFAULT_KEEP_MINUTES,
        metavar="MINUTES",
        help="delete uploaded and exported files this many minutes after they were written, also those "
        "left by an earlier run (default 60)",
    )
    serve.add_argument(
        "--time-limit",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help=f"stop each request after this many seconds, keeping the text so far; 0 for no limit "
        f"(default {DEFAULT_TIME_LIMIT:g} for the web UI, none for the commands)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_check_context(commands)
    subs = {
        "info": commands.add_parser("info", help="pages, tokens, language, budget and strategies of files"),
        "text": commands.add_parser("text", help="print the normalized text with page markers"),
        "summarize": commands.add_parser("summarize", help="summarize files"),
        "ask": commands.add_parser("ask", help="answer a question about files"),
        "extract": commands.add_parser("extract", help="extract fields as JSON"),
        "classify": commands.add_parser("classify", help="classify files into one of several labels"),
        "prompt": commands.add_parser("prompt", help="run your own instruction on files"),
    }
    for sub in subs.values():
        sub.add_argument("files", nargs="+", metavar="FILE", help="PDF, DOCX, HTML, TXT or Markdown files")
        sub.add_argument("--password", default=None, help="password of encrypted PDFs")
    subs["ask"].add_argument("question")
    subs["prompt"].add_argument("instruction")
    fields = subs["extract"].add_mutually_exclusive_group(required=True)
    fields.add_argument("--fields", help="comma-separated field names, e.g. title,author,date")
    fields.add_argument("--schema", help="a JSON schema of an object: a file path or inline JSON")
    subs["classify"].add_argument("--labels", required=True, help="comma-separated labels, e.g. invoice,contract")
    for name in TASK_COMMANDS:
        _add_task_options(subs[name])
    subs["info"].add_argument("--strategy", choices=STRATEGY_CHOICES, default="auto")
    for name in ("info", "text", *TASK_COMMANDS):
        subs[name].add_argument("--json", action="store_true", help="print one JSON object")
        _add_model_options(subs[name], suppress=True)
    return parser


def _add_task_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 means greedy decoding")
    parser.add_argument("--strategy", choices=STRATEGY_CHOICES, default="auto", help="how to handle long documents")
    parser.add_argument(
        "--lang", choices=tuple(LANGUAGES), default=None, help="output language (default: the document's)"
    )
    # SUPPRESS: `app.py --time-limit N summarize ...` (before the command) must not be reset here.
    parser.add_argument(
        "--time-limit",
        type=_seconds,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help="stop after this many seconds, keeping the text so far (default: no limit)",
    )


def _add_check_context(commands: argparse._SubParsersAction) -> None:
    check = commands.add_parser(
        "check-context", help="needle-in-a-haystack: is a fact found at every depth of a long text?"
    )
    check.add_argument("--lengths", default="4k,16k,64k,128k", help="haystack sizes in tokens (default: all four)")
    check.add_argument("--depths", default="0,25,50,75,100", help="needle depths in percent (default 0,25,50,75,100)")
    check.add_argument("--trials", type=int, default=1, help="trials per length and depth (default 1)")
    check.add_argument("--plot", metavar="FILE.png", help="also write the accuracy table as a PNG heatmap")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    _add_model_options(check, suppress=True)


def _seconds(value: str) -> float:
    """An argparse type: a number of seconds, 0 or more."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds (0 or more), not {value!r}")
    return seconds


def time_limit(args: argparse.Namespace, default: float | None) -> float | None:
    """The --time-limit as TaskOptions takes it: `default` when it was not given, None for 0."""
    return default if args.time_limit is None else (args.time_limit or None)


def _add_model_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Model options work before or after the command; after it they must not reset the defaults."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default=default(os.environ.get("GRANITE_LONGDOC_MODEL")),
        help=f"hub id, local folder, or tiny-random (default {DEFAULT_MODEL_ID}; with --backend openai: "
        "where the tokenizer comes from, default the served model's name; $GRANITE_LONGDOC_MODEL)",
    )
    group.add_argument("--quant", choices=QUANT_CHOICES, default=default("auto"))
    group.add_argument("--device", choices=DEVICE_CHOICES, default=default("auto"))
    group.add_argument("--context-budget", type=int, default=default(None), help="tokens per request")
    group.add_argument("--verbose", action="store_true", default=default(False))
    server = parser.add_argument_group("model server (--backend openai)")
    server.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default=default(os.environ.get("GRANITE_LONGDOC_BACKEND", "transformers")),
        help="transformers: run the model in this process (default); openai: send every task to an "
        "OpenAI-compatible completions server such as vLLM ($GRANITE_LONGDOC_BACKEND)",
    )
    server.add_argument(
        "--base-url",
        default=default(os.environ.get("GRANITE_LONGDOC_BASE_URL", DEFAULT_BASE_URL)),
        help=f"the server's address (default {DEFAULT_BASE_URL}, $GRANITE_LONGDOC_BASE_URL)",
    )
    server.add_argument(
        "--api-key",
        default=default(None),
        help="the server's API key (default $GRANITE_LONGDOC_API_KEY or $OPENAI_API_KEY)",
    )
    server.add_argument(
        "--served-model",
        default=default(os.environ.get("GRANITE_LONGDOC_SERVED_MODEL")),
        help="the model's name on the server (default: the only one it serves; $GRANITE_LONGDOC_SERVED_MODEL)",
    )
    server.add_argument(
        "--wait-for-server",
        type=float,
        default=default(0.0),
        metavar="SECONDS",
        help="keep trying to reach the server this long at start, while it loads the model (default 0)",
    )
    server.add_argument(
        "--max-concurrent",
        type=int,
        default=default(DEFAULT_MAX_CONCURRENT),
        help=f"web UI: tasks sent to the server at once, which it batches (default {DEFAULT_MAX_CONCURRENT})",
    )


def build_workbench(args: argparse.Namespace) -> Workbench:
    """Load the model once (or connect to its server). A model that fails to load leaves a
    Workbench without an engine (the document tools still work) that says why."""
    if args.backend == "openai":
        return _server_workbench(args)
    from model.engine import Engine
    from model.loader import ModelLoadError, load_model

    model = args.model or DEFAULT_MODEL_ID
    try:
        runtime = decide_runtime(args.device, args.quant, detect_hardware())
    except ValueError as exc:  # an impossible --device / --quant combination
        raise InvalidRequest(str(exc)) from exc
    try:
        engine = Engine(load_model(model, runtime))
    except ModelLoadError as exc:
        logger.warning("model not loaded: %s", exc)
        status = f"{model} (not loaded) · {runtime.describe()}"
        return Workbench(model_status=status, unavailable_reason=str(exc), context_budget=args.context_budget)
    workbench = Workbench(engine, demo_model=model == TINY_RANDOM, context_budget=args.context_budget)
    workbench.model_status = f"{engine.report.summary()} · context budget {workbench.budget:,} tokens"
    return workbench


def _server_workbench(args: argparse.Namespace) -> Workbench:
    """The openai backend: every task goes to the server; only the tokenizer is loaded here."""
    from model.loader import ModelLoadError
    from model.openai_server import normalize_base_url
    from model.remote import connect

    for option in ("quant", "device"):
        if getattr(args, option) != "auto":
            raise InvalidRequest(f"--{option} is for the in-process backend; with --backend openai the server decides")
    if args.max_concurrent < 1:
        raise InvalidRequest("--max-concurrent must be at least 1")
    try:
        base_url = normalize_base_url(args.base_url)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from exc
    workbench = Workbench(context_budget=args.context_budget)
    workbench.concurrency = args.max_concurrent

    def connect_once() -> Any:
        """Connect and describe the server on the workbench; a failure is the user's message."""
        try:
            engine = connect(base_url, served_model=args.served_model, api_key=args.api_key, tokenizer_model=args.model)
        except ModelLoadError as exc:  # the tokenizer
            raise ModelUnavailable(str(exc)) from exc
        workbench.demo_model = args.model == TINY_RANDOM or Path(engine.model_name).name.startswith(TINY_RANDOM)
        workbench.engine = engine
        workbench.model_status = f"{engine.summary()} · context budget {workbench.budget:,} tokens"
        return engine

    try:
        _connect_patiently(connect_once, base_url, args.wait_for_server)
    except (ConnectionError, ValueError, UserError) as exc:
        logger.warning("model server not connected: %s", exc)
        workbench.model_status = f"{args.served_model or 'model'} on {base_url} (not connected) · openai backend"
        workbench.unavailable_reason = str(exc)
        workbench.reconnect = connect_once  # tried again by requests, so a server that comes up later is found
    return workbench


def _connect_patiently(connect: Callable[[], Any], base_url: str, wait_seconds: float) -> Any:
    """Connect; while nothing answers at the address, retry for `wait_seconds` (a server started
    at the same time may still be loading its model)."""
    from model.openai_server import ServerUnreachable

    deadline = time.monotonic() + max(0.0, wait_seconds)
    while True:
        try:
            return connect()
        except ServerUnreachable:
            if time.monotonic() >= deadline:
                raise
            logger.warning("waiting for the model server at %s", base_url)
            time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))


def serve(args: argparse.Namespace) -> int:
    from app.launch import serve_options
    from app.ui import CSS, build_ui

    # Checked before the model loads, so a wrong option (or --share without network) fails at once.
    options = serve_options(
        args.host, args.port, args.share, args.auth, args.max_file_mb, args.max_queue, args.keep_files_minutes
    )
    workbench = build_workbench(args)
    workbench.time_limit = time_limit(args, DEFAULT_TIME_LIMIT)  # every web request's TaskOptions.time_limit
    demo = build_ui(workbench, keep_seconds=options.keep_seconds)
    demo.queue(**options.queue_kwargs())
    try:
        demo.launch(**options.launch_kwargs(), css=CSS)
    except OSError as exc:  # the port was taken after the check above, or no default port was free
        raise InvalidRequest(f"the web server could not start: {exc}") from exc
    return 0


def run_info(args: argparse.Namespace) -> int:
    check_documents(args.files)  # before the model loads
    workbench = build_workbench(args)
    card = workbench.card(workbench.read(args.files, args.password), workbench.options(strategy=args.strategy))
    if args.json:
        document = {"name": card.name, "pages": card.pages, "tokens": card.tokens}
        _print_json({"task": "info", "strategy": card.strategies.get("summarize"), "document": document,
                     **card.to_json()})  # fmt: skip
        return 0
    tokens = "unknown" if card.tokens is None else f"{card.tokens:,}"
    print(
        f"{card.name}: {card.pages:,} pages, {card.characters:,} characters, {tokens} tokens, language {card.language}"
    )
    print(card.note)
    if card.strategies:
        print("strategies: " + ", ".join(f"{task} {strategy}" for task, strategy in card.strategies.items()))
        print(f"expected wait for a summary: {card.expected_wait}")
    return 0


def run_text(args: argparse.Namespace) -> int:
    workbench = Workbench()
    if args.json:
        documents = workbench.read(args.files, args.password)
        _print_json({"task": "text", "documents": [
            {"name": d.name, "language": d.language, "meta": d.meta,
             "pages": [{"number": p.number, "text": p.text} for p in d.pages]} for d in documents
        ]})  # fmt: skip
    else:
        print(workbench.text(args.files, args.password), end="")
    return 0


def run_task(args: argparse.Namespace) -> int:
    # Everything that can be checked without the model is checked before it loads.
    check_documents(args.files)
    settings = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "strategy": args.strategy,
                "language": args.lang, "time_limit": time_limit(args, None)}  # fmt: skip
    TaskOptions(**settings).validate()
    if args.command == "extract":
        spec = spec_from_fields(args.fields) if args.fields else spec_from_schema(read_schema(args.schema))
    workbench = build_workbench(args)
    options = workbench.options(**settings)
    files, password = args.files, args.password
    if args.command == "summarize":
        events = workbench.summarize(files, options, password=password)
    elif args.command == "ask":
        events = workbench.ask(files, args.question, options, password=password)
    elif args.command == "prompt":
        events = workbench.custom(files, args.instruction, options, password=password)
    elif args.command == "extract":
        events = workbench.extract(files, spec, options, password=password)
    else:
        events = workbench.classify(files, args.labels, options, password=password)
    for event in events:
        if isinstance(event, Progress) and not args.json:
            print(f"[{event.message}]", file=sys.stderr, flush=True)
        elif isinstance(event, TextDelta) and not args.json and args.command != "extract":
            print(event.text, end="", flush=True)  # extraction prints its checked JSON at the end
        elif isinstance(event, TaskResult):
            _print_result(event, args.json, workbench.demo_model)
    return 0


def _print_result(result: TaskResult, as_json: bool, demo: bool) -> None:
    if as_json:
        _print_json(result.to_json())
        return
    if result.task == "classify":
        for row in result.extra["labels"]:
            print(f"{row['probability']:7.2%}  {row['label']}")
    elif result.task == "extract":
        print(result.text, end="")
        for name, guess in (result.extra.get("unverified") or {}).items():
            print(f"[{name}: the model wrote {guess!r}, which is in no document, so it is null]", file=sys.stderr)
        for name in result.extra.get("capped") or []:
            print(f"[{name}: the value reached the length limit and may go on]", file=sys.stderr)
    print()
    for source in result.extra.get("sources", []):
        print(f"[source: {source['label']}]", file=sys.stderr)
    print(
        f"[{result.finish_reason} · strategy {result.strategy} · {result.usage.get('prompt_tokens', 0):,} prompt "
        f"tokens · {result.usage.get('generated_tokens', 0):,} new tokens · "
        f"{result.timings.get('total_seconds', 0):.1f} s]",
        file=sys.stderr,
    )
    if demo:
        print("[tiny-random is a random demo model: its text is meaningless]", file=sys.stderr)


def _print_json(data: dict[str, Any]) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def run_check_context(args: argparse.Namespace) -> int:
    from tasks import needle

    lengths, depths = needle.parse_lengths(args.lengths), needle.parse_depths(args.depths)
    if args.trials < 1:
        raise InvalidRequest("--trials must be at least 1")
    if args.plot:
        check_plot(args.plot)  # before the run, which can take hours
    workbench = build_workbench(args)
    if workbench.engine is None:
        raise InvalidRequest(f"check-context needs a model: {workbench.unavailable_reason}")
    trials, skipped = [], []
    for item in needle.check_context(workbench.engine, lengths, depths, args.trials):
        if isinstance(item, str):
            skipped.append(item)
            print(f"[skipped {item}]", file=sys.stderr, flush=True)
        else:
            trials.append(item)
            mark = "found" if item.correct else "missed"
            print(f"[{item.tokens:,} tokens, depth {item.depth}%: {mark}]", file=sys.stderr, flush=True)
    report = needle.Report(trials, skipped)
    if args.plot and trials:
        needle.heatmap_png(report, args.plot)
    if args.json:
        _print_json({"task": "check-context", "model": workbench.model_status, **report.to_json()})
    else:
        print(needle.table(report))
        if workbench.demo_model:
            print("[tiny-random is a random demo model: expect chance-level results]", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    handlers = {"info": run_info, "text": run_text, "check-context": run_check_context, None: serve,
                **dict.fromkeys(TASK_COMMANDS, run_task)}  # fmt: skip
    try:
        args = build_parser().parse_args(argv)  # in the try: a wrong argument is an InvalidRequest (_Parser)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
        return handlers[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ncancelled", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
