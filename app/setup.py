"""Model set-up: from the model settings to one fully configured Workbench.

In process (`transformers`), the model is loaded once; a model that fails to load leaves a
Workbench without an engine (the document tools still work) that says why. With `openai`, every
task goes to an OpenAI-compatible server (only the tokenizer is loaded here): `_connect` is the one
place that connects to it, at start (waiting `wait_for_server` seconds for a server that is still
loading) and, when it did not answer, again from requests (`Workbench.reconnect`). Nothing is set
on the Workbench after it is built. No gradio: the command line uses this too.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from model.checkpoints import DEFAULT_MODEL_ID, TINY_RANDOM
from model.errors import EngineError
from model.runtime import DeviceSetting, QuantSetting, decide_runtime, detect_hardware
from tasks.errors import InvalidRequest, ModelUnavailable, UserError
from tasks.interfaces import TextEngine
from tasks.options import TaskOptions
from tasks.planning import budget_for
from tasks.workbench import ModelConnection, Workbench

logger = logging.getLogger("granite_longdoc")
Backend = Literal["transformers", "openai"]
DEFAULT_BASE_URL = "http://localhost:8000/v1"  # vLLM's default port
DEFAULT_MAX_CONCURRENT = 16
T = TypeVar("T")


@dataclass(frozen=True)
class ModelSettings:
    """Which model runs where: the command line's model options, typed."""

    model: str | None = None  # hub id, local folder or tiny-random; None: the default (openai: the served model's)
    quant: QuantSetting = "auto"
    device: DeviceSetting = "auto"
    context_budget: int | None = None  # tokens per request; None: the device's default
    backend: Backend = "transformers"
    base_url: str = DEFAULT_BASE_URL  # openai: the server
    api_key: str | None = None  # openai: None reads $GRANITE_LONGDOC_API_KEY, then $OPENAI_API_KEY
    served_model: str | None = None  # openai: the model's name on the server; None: the only one it serves
    wait_for_server: float = 0.0  # openai: seconds to keep trying a server that does not answer at start
    max_concurrent: int = DEFAULT_MAX_CONCURRENT  # openai: tasks the web UI sends to the server at once


def build_workbench(settings: ModelSettings, time_limit: float | None = None) -> Workbench:
    """Load the model (or connect to its server) once; `time_limit` is each request's limit in
    seconds (None: none)."""
    if settings.backend == "openai":
        return _server_workbench(settings, time_limit)
    return _local_workbench(settings, time_limit)


def _local_workbench(settings: ModelSettings, time_limit: float | None) -> Workbench:
    from model.engine import Engine
    from model.loader import ModelLoadError, load_model

    model = settings.model or DEFAULT_MODEL_ID
    try:
        runtime = decide_runtime(settings.device, settings.quant, detect_hardware())
    except ValueError as exc:  # an impossible --device / --quant combination
        raise InvalidRequest(str(exc)) from exc
    common = {"context_budget": settings.context_budget, "time_limit": time_limit}
    try:
        engine = Engine(load_model(model, runtime))
    except ModelLoadError as exc:
        logger.warning("model not loaded: %s", exc)
        status = f"{model} (not loaded) · {runtime.describe()}"
        return Workbench(model_status=status, unavailable_reason=str(exc), **common)
    status = _with_budget(engine.report.summary(), engine, settings.context_budget)
    return Workbench(engine, model_status=status, demo_model=model == TINY_RANDOM, **common)


def _server_workbench(settings: ModelSettings, time_limit: float | None) -> Workbench:
    from model.openai_server import normalize_base_url

    for option in ("quant", "device"):
        if getattr(settings, option) != "auto":
            raise InvalidRequest(f"--{option} is for the in-process backend; with --backend openai the server decides")
    if settings.max_concurrent < 1:
        raise InvalidRequest("--max-concurrent must be at least 1")
    try:
        base_url = normalize_base_url(settings.base_url)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from exc
    connect = functools.partial(_connect, settings, base_url)
    common = {"context_budget": settings.context_budget, "time_limit": time_limit,
              "concurrency": settings.max_concurrent}  # fmt: skip
    try:
        connection = _connect_patiently(connect, base_url, settings.wait_for_server)
    except (EngineError, UserError) as exc:
        logger.warning("model server not connected: %s", exc)
        status = f"{settings.served_model or 'model'} on {base_url} (not connected) · openai backend"
        # Requests try `connect` again, so a server that comes up later is found.
        return Workbench(model_status=status, unavailable_reason=str(exc), reconnect=connect, **common)
    return Workbench(connection.engine, model_status=connection.model_status, demo_model=connection.demo_model,
                     **common)  # fmt: skip


def _connect(settings: ModelSettings, base_url: str) -> ModelConnection:
    """Connect to the model server and describe it; a failure is the user's message."""
    from model.loader import ModelLoadError
    from model.remote import connect

    try:
        engine = connect(
            base_url, served_model=settings.served_model, api_key=settings.api_key, tokenizer_model=settings.model
        )
    except ModelLoadError as exc:  # the tokenizer
        raise ModelUnavailable(str(exc)) from exc
    demo = settings.model == TINY_RANDOM or Path(engine.model_name).name.startswith(TINY_RANDOM)
    return ModelConnection(engine, _with_budget(engine.summary(), engine, settings.context_budget), demo)


def _connect_patiently(connect: Callable[[], T], base_url: str, wait_seconds: float) -> T:
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


def _with_budget(description: str, engine: TextEngine, context_budget: int | None) -> str:
    """The status line: the model, then the context budget it will be used with."""
    budget = budget_for(engine, TaskOptions(context_budget=context_budget))
    return f"{description} · context budget {budget:,} tokens"
