"""The command line: `main(argv)` runs one command of `python app.py` (arguments: app.cli_parser).

    python app.py [model options] [serve options]      serve the web UI (what Spaces runs)
    python app.py info FILE...                         pages, tokens, language, budget, strategies, wait
    python app.py text FILE...                         the normalized text, with page markers
    python app.py summarize FILE...                    stream a summary
    python app.py ask FILE... "QUESTION"               stream an answer, with sources
    python app.py custom FILE... "INSTRUCTION"         run your own instruction, with sources (alias: prompt)
    python app.py extract FILE... --fields title,author,date | --schema SCHEMA.json
    python app.py classify FILE... --labels invoice,contract,report
    python app.py check-context [--lengths 4k,16k,64k,128k] [--plot FILE.png]   needle-in-a-haystack

Without `--json`, a task's text streams to stdout, and progress, sources and the status line go to
stderr; with `--json` one JSON object is printed (app.results formats both). Everything that can be
checked before the model loads is checked first. Errors print `error: <message>` and exit with
status 2; Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from app.cli_inputs import check_documents, check_plot, read_schema
from app.cli_parser import DEFAULT_TIME_LIMIT, TASK_COMMANDS, build_parser, model_settings, time_limit
from app.results import DEMO_NOTE, ResultView, body_text, json_text, sources_text, status_line
from app.setup import build_workbench
from tasks.errors import InvalidRequest, UserError
from tasks.events import Progress, TaskResult, TextDelta
from tasks.extract import spec_from_fields, spec_from_schema
from tasks.options import TaskOptions
from tasks.workbench import DocumentCard, Workbench

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    """Run `python app.py ARGV`; return the exit status."""
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
        return EXIT_INTERRUPTED


def serve(args: argparse.Namespace) -> int:
    from app.launch import serve_options
    from app.ui import build_ui, launch_options

    # Checked before the model loads, so a wrong option (or --share without network) fails at once.
    options = serve_options(
        args.host, args.port, args.share, args.auth, args.max_file_mb, args.max_queue, args.keep_files_minutes
    )
    workbench = build_workbench(model_settings(args), time_limit(args, DEFAULT_TIME_LIMIT))
    demo = build_ui(workbench, keep_seconds=options.keep_seconds)
    demo.queue(**options.queue_kwargs())
    try:
        demo.launch(**options.launch_kwargs(), **launch_options())
    except OSError as exc:  # the port was taken after the check above, or no default port was free
        raise InvalidRequest(f"the web server could not start: {exc}") from exc
    return 0


def run_info(args: argparse.Namespace) -> int:
    check_documents(args.files)  # before the model loads
    workbench = build_workbench(model_settings(args))
    documents = workbench.read(args.files, args.password, progress=_say)  # "OCR page 3 of 40" on stderr
    card = workbench.card(documents, workbench.options(strategy=args.strategy))
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
        print("strategies: " + ", ".join(_planned(task, card) for task in card.strategies))
    for task, reason in card.refused.items():
        print(f"{task} would be refused: {reason}")
    if card.expected_wait:
        print(f"expected wait for a summary: {card.expected_wait}")
    return 0


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _planned(task: str, card: DocumentCard) -> str:
    parts = card.parts[task]
    return f"{task} {card.strategies[task]}" + (f" ({parts} parts)" if parts > 1 else "")


def run_text(args: argparse.Namespace) -> int:
    workbench = Workbench()
    if args.json:
        documents = workbench.read(args.files, args.password, progress=_say)
        _print_json({"task": "text", "documents": [
            {"name": d.name, "language": d.language, "meta": d.meta,
             "pages": [{"number": p.number, "text": p.text, "ocr": p.ocr} for p in d.pages]} for d in documents
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
    workbench = build_workbench(model_settings(args))
    options = workbench.options(**settings)
    files, password = args.files, args.password
    if args.command == "summarize":
        events = workbench.summarize(files, options, password=password)
    elif args.command == "ask":
        events = workbench.ask(files, args.question, options, password=password)
    elif args.command == "custom":
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
    """The result at the end of a task: with `as_json` its JSON object; else the text that did not
    stream (extraction's checked JSON, classification's labels), then the sources and the status
    line on stderr."""
    if as_json:
        _print_json(result.to_json())
        return
    view = ResultView.from_result(result)
    if view.task in ("extract", "classify"):
        print(body_text(view), end="")
    print()
    for line in sources_text(view):
        print(line, file=sys.stderr)
    print(f"[{status_line(view)}]", file=sys.stderr)
    if demo:
        print(f"[{DEMO_NOTE.removesuffix('.')}]", file=sys.stderr)


def _print_json(data: dict[str, Any]) -> None:
    print(json_text(data))


def run_check_context(args: argparse.Namespace) -> int:
    from tasks import needle

    lengths, depths = needle.parse_lengths(args.lengths), needle.parse_depths(args.depths)
    if args.trials < 1:
        raise InvalidRequest("--trials must be at least 1")
    if args.plot:
        check_plot(args.plot)  # before the run, which can take hours
    workbench = build_workbench(model_settings(args))
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
    report = needle.ContextCheck(trials, skipped)
    if args.plot and trials:
        needle.heatmap_png(report, args.plot)
    if args.json:
        _print_json({"task": "check-context", "model": workbench.model_status, **report.to_json()})
    else:
        print(needle.table(report))
        if workbench.demo_model:
            print(f"[{DEMO_NOTE.removesuffix('.')}: expect chance-level results]", file=sys.stderr)
    return 0
