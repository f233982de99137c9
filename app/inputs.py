"""What the browser sends, made into the plain-Python API's arguments (file paths, task options,
the session's cache boundary), and the domain's errors made into `gr.Error` toasts with the
message the CLI prints."""

from __future__ import annotations

import logging
import math
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gradio as gr

from app import untrusted
from tasks.documents import NO_DOCUMENTS
from tasks.errors import UserError
from tasks.options import TaskOptions
from tasks.workbench import Workbench

logger = logging.getLogger(__name__)


@contextmanager
def user_errors() -> Iterator[None]:
    """Show domain errors as a toast; never let an unexpected one take the server down silently."""
    try:
        yield
    except UserError as exc:  # toasts render HTML: a message can quote a file name or a schema
        raise gr.Error(untrusted.html(str(exc)), print_exception=False) from exc
    except gr.Error:
        raise
    except Exception as exc:
        logger.exception("task failed")
        raise gr.Error(untrusted.html(f"Something went wrong: {type(exc).__name__}: {exc}")) from exc


def file_list(documents: str | list[str] | None) -> list[str]:
    if not documents:
        raise UserError(NO_DOCUMENTS)
    return [documents] if isinstance(documents, str) else list(documents)


def make_options(
    workbench: Workbench,
    session: dict | None,
    language: str,
    max_new_tokens: Any,
    temperature: Any,
    strategy: str,
    budget: Any,
) -> TaskOptions:
    """Task options from the settings panel, with a fresh cancel switch kept in the session (the
    Stop button sets it) and the session's cache salt. The numbers come as an API caller sent
    them (the panel's number fields pass any JSON value through), so each is checked here, with
    a message that names it; the ranges are checked by TaskOptions.validate."""
    with user_errors():  # also for callers outside a task's own user_errors (the info endpoint)
        numbers = {
            "max_new_tokens": _setting(max_new_tokens, "max new tokens", whole=True),
            "temperature": _setting(temperature, "temperature"),
            "context_budget": _setting(budget, "context budget", whole=True) or workbench.requested_budget,
        }
    cancel = threading.Event()
    if session is not None:
        session["cancel"] = cancel
    return workbench.options(
        cache_salt=session_salt(session),
        strategy=strategy or "auto",
        language=None if language in (None, "", "auto") else language,
        cancel=cancel,
        **numbers,
    )


def _setting(value: Any, label: str, whole: bool = False) -> float | int:
    """A number setting from the API: not a string, null, true, NaN or Infinity (Python's JSON
    reader accepts the last two)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{label} must be a number, not {value!r}")
    if not math.isfinite(value):
        raise UserError(f"{label} must be a finite number, not {value!r}")
    if whole and value != int(value):
        raise UserError(f"{label} must be a whole number, not {value!r}")
    return int(value) if whole else float(value)


def session_salt(session: dict | None) -> str | None:
    """The trust boundary of this browser session's cached documents (as vLLM's `cache_salt`): a
    random secret made at its first task, kept in its server-side state, never sent to a browser.
    A session reuses only what it prefilled itself, so neither its usage figures nor its timing
    tell it what another session read or asked. Per session rather than per signed-in user: one
    account is often shared by a team, and a second tab pays only one more read of a document."""
    if session is None:
        return None
    return session.setdefault("cache_salt", secrets.token_urlsafe(32))
