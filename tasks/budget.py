"""The context budget: how many tokens one request may use, whether a request fits, how long it
will take, and which strategy each task uses.

The budget follows the device. On a GPU it is the model's whole context (128K tokens for
Granite 3.1) as far as the free memory holds the KV cache; on a model server (the openai backend)
it is the context the server was started with. On a CPU a long prefill takes minutes
(see the README's measured prefill speeds), so the default is
smaller. `--context-budget` overrides either, never past the model's context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from tasks.errors import BudgetError, InvalidRequest, TooLongToRun

CPU_DEFAULT_BUDGET = 8192
LONGEST_TASK_SECONDS = 6 * 3600  # without a time limit (the command line), longer work is refused up front
MIN_BUDGET = 512
Strategy = Literal["full", "map-reduce", "retrieval"]
StrategySetting = Literal["auto", "full", "map-reduce", "retrieval"]
STRATEGY_CHOICES: tuple[StrategySetting, ...] = get_args(StrategySetting)
# The strategies each task can use when the documents do not fit, and the one `auto` picks.
LONG_STRATEGY: dict[str, Strategy] = {"summarize": "map-reduce", "ask": "retrieval", "extract": "retrieval",
                                      "classify": "retrieval", "custom": "retrieval"}  # fmt: skip


def context_budget(
    on_cpu: bool, context_limit: int, requested: int | None = None, memory_tokens: int | None = None
) -> int:
    """The number of tokens (prompt plus answer) one request may use; `on_cpu`: the model runs on
    this machine's CPU (not a GPU, not a server)."""
    if requested is not None:
        if requested < MIN_BUDGET:
            raise InvalidRequest(f"the context budget must be at least {MIN_BUDGET} tokens (got {requested:,})")
        return min(requested, context_limit)
    if on_cpu:
        return min(CPU_DEFAULT_BUDGET, context_limit)
    return max(MIN_BUDGET, min(context_limit, memory_tokens or context_limit))


@dataclass(frozen=True)
class Fit:
    """How a request compares with the budget."""

    prompt_tokens: int
    answer_tokens: int
    budget: int
    request_tokens: int = 0  # room kept for a request (a question, labels) that is not known yet

    @property
    def needed(self) -> int:
        return self.prompt_tokens + self.request_tokens + self.answer_tokens

    @property
    def fits(self) -> bool:
        return self.needed <= self.budget


def choose_strategy(task: str, requested: str, fits: bool) -> Strategy:
    """`auto`: the whole document when it fits, else the task's long-document strategy.
    An explicit choice is checked: a task cannot use a strategy it has no meaning for."""
    if requested not in STRATEGY_CHOICES:
        raise InvalidRequest(f"unknown strategy {requested!r}; choose one of {', '.join(STRATEGY_CHOICES)}")
    if requested == "auto":
        return "full" if fits else LONG_STRATEGY[task]
    if requested not in ("full", LONG_STRATEGY[task]):
        raise InvalidRequest(f"{task} cannot use the {requested} strategy; use full or {LONG_STRATEGY[task]}")
    return requested  # type: ignore[return-value]


def require_fit(fit: Fit, what: str) -> None:
    """Raise BudgetError, saying by how much, when the request does not fit. Nothing is cut."""
    if fit.fits:
        return
    request = f" with room for a request of {fit.request_tokens:,}" if fit.request_tokens else ""
    raise BudgetError(
        f"{what} is longer than the context budget: the prompt is {fit.prompt_tokens:,} tokens{request} "
        f"and the answer may use {fit.answer_tokens:,}, which needs {fit.needed:,} tokens, but the budget "
        f"is {fit.budget:,}. Nothing was cut: use a long-document strategy (--strategy auto), a shorter "
        "document, fewer answer tokens or a larger context budget (--context-budget)."
    )


def estimate_seconds(prompt_tokens: int, answer_tokens: int, speeds: tuple[float, float]) -> float:
    """Expected time to read `prompt_tokens` and write `answer_tokens` at the measured speeds."""
    prefill, decode = speeds
    return prompt_tokens / max(prefill, 1e-6) + answer_tokens / max(decode, 1e-6)


def require_time(
    what: str,
    read_tokens: int,
    write_tokens: int,
    speeds: tuple[float, float],
    time_limit: float | None,
    *,
    at_least: bool = False,
) -> None:
    """Refuse (TooLongToRun), with the numbers, work expected to take longer than a request may
    run (the time limit, or LONGEST_TASK_SECONDS without one): a document of millions of tokens
    cannot be summarized in a useful time here, and starting would only hold the model until the
    limit. `at_least`: the tokens are the least the work reads and writes (said so)."""
    limit, seconds = time_limit or LONGEST_TASK_SECONDS, estimate_seconds(read_tokens, write_tokens, speeds)
    if seconds <= limit:
        return
    if time_limit:
        rule = f"a request may run for {describe_duration(limit)} here (--time-limit)"
    else:
        rule = f"the longest allowed without --time-limit is {describe_duration(limit)}"
    wait = f"at least {describe_wait(seconds).removeprefix('about ')}" if at_least else describe_wait(seconds)
    writing = "at least" if at_least else "about"
    raise TooLongToRun(
        f"{what} would take {wait} here: reading {read_tokens:,} tokens at {speeds[0]:,.0f} "
        f"tokens per second and writing {writing} {write_tokens:,} at {speeds[1]:,.1f} per second, and {rule}. "
        "Ask questions instead (they read only the best-matching passages), or summarize a part of the document."
    )


def describe_duration(seconds: float) -> str:
    """'10 minutes', '6 hours', '45 seconds': a limit, said plainly."""
    for unit, size in (("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds / size
            return f"{count:g} {unit}{'s' if count != 1 else ''}" if count == round(count) else f"{count:.1f} {unit}s"
    return f"{seconds:g} seconds"


def describe_wait(seconds: float) -> str:
    if seconds < 10:
        return "a few seconds"
    if seconds < 90:
        return f"about {round(seconds / 5) * 5:.0f} seconds"
    if seconds < 3600:
        return f"about {seconds / 60:.0f} minutes"
    return f"about {seconds / 3600:.1f} hours"
