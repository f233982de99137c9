"""The command line's arguments: the parser of `python app.py`, and the typed settings it gives.

Model options may come before or after the command. The choices of typed options come from their
`Literal` types (`--quant`, `--device`, `--backend`, `--strategy`), and `model_settings` passes
them on as those types. A wrong argument is an InvalidRequest, printed as one `error: ...` line.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, NoReturn, get_args

from app.launch import DEFAULT_KEEP_MINUTES, DEFAULT_MAX_FILE_MB, DEFAULT_MAX_QUEUE
from app.setup import DEFAULT_BASE_URL, DEFAULT_MAX_CONCURRENT, Backend, ModelSettings
from model.checkpoints import DEFAULT_MODEL_ID
from model.runtime import DeviceSetting, QuantSetting
from tasks.budget import StrategySetting
from tasks.errors import InvalidRequest
from tasks.language import LANGUAGES

# Task commands, named by their task id (`prompt` is the earlier name of `custom`, still accepted).
TASK_COMMANDS = ("summarize", "ask", "extract", "classify", "custom")
COMMAND_ALIASES = {"custom": ["prompt"]}
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
    _add_serve_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_check_context(commands)
    helps = {
        "info": "pages, tokens, language, budget and strategies of files",
        "text": "print the normalized text with page markers",
        "summarize": "summarize files",
        "ask": "answer a question about files",
        "extract": "extract fields as JSON",
        "classify": "classify files into one of several labels",
        "custom": "run your own instruction on files",
    }
    subs = {}
    for name, text in helps.items():
        subs[name] = commands.add_parser(name, help=text, aliases=COMMAND_ALIASES.get(name, []))
        subs[name].set_defaults(command=name)  # an alias runs the command of its name
        subs[name].add_argument("files", nargs="+", metavar="FILE", help="PDF, DOCX, HTML, TXT or Markdown files")
        subs[name].add_argument("--password", default=None, help="password of encrypted PDFs")
    subs["ask"].add_argument("question")
    subs["custom"].add_argument("instruction")
    fields = subs["extract"].add_mutually_exclusive_group(required=True)
    fields.add_argument("--fields", help="comma-separated field names, e.g. title,author,date")
    fields.add_argument("--schema", help="a JSON schema of an object: a file path or inline JSON")
    subs["classify"].add_argument("--labels", required=True, help="comma-separated labels, e.g. invoice,contract")
    for name in TASK_COMMANDS:
        _add_task_options(subs[name])
    subs["info"].add_argument("--strategy", choices=get_args(StrategySetting), default="auto")
    for sub in subs.values():
        sub.add_argument("--json", action="store_true", help="print one JSON object")
        _add_model_options(sub, suppress=True)
    return parser


def _add_serve_options(parser: argparse.ArgumentParser) -> None:
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


def _add_task_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 means greedy decoding")
    parser.add_argument(
        "--strategy", choices=get_args(StrategySetting), default="auto", help="how to handle long documents"
    )
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
    group.add_argument("--quant", choices=get_args(QuantSetting), default=default("auto"))
    group.add_argument("--device", choices=get_args(DeviceSetting), default=default("auto"))
    group.add_argument("--context-budget", type=int, default=default(None), help="tokens per request")
    group.add_argument("--verbose", action="store_true", default=default(False))
    server = parser.add_argument_group("model server (--backend openai)")
    server.add_argument(
        "--backend",
        choices=get_args(Backend),
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


def model_settings(args: argparse.Namespace) -> ModelSettings:
    """The parsed model options as the typed settings the set-up takes (their choices were checked
    against the same Literal types)."""
    quant: QuantSetting = args.quant
    device: DeviceSetting = args.device
    backend: Backend = args.backend
    return ModelSettings(
        model=args.model,
        quant=quant,
        device=device,
        context_budget=args.context_budget,
        backend=backend,
        base_url=args.base_url,
        api_key=args.api_key,
        served_model=args.served_model,
        wait_for_server=args.wait_for_server,
        max_concurrent=args.max_concurrent,
    )


def time_limit(args: argparse.Namespace, default: float | None) -> float | None:
    """The --time-limit as TaskOptions takes it: `default` when it was not given, None for 0."""
    return default if args.time_limit is None else (args.time_limit or None)
