"""The context budget: how many tokens one request may use, and whether a request fits.

The budget follows the device. On a GPU it is the model's whole context (128K tokens for
Granite 3.1). On a CPU a long prefill takes minutes (the real model prefills roughly 40-60 tokens
per second on two cores), so the default is smaller; `--context-budget` overrides either.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.errors import BudgetError, InvalidRequest

CPU_DEFAULT_BUDGET = 8192


def context_budget(device: str, context_limit: int, requested: int | None = None) -> int:
    """The number of tokens (prompt plus answer) one request may use."""
    if requested is not None:
        if requested < 256:
            raise InvalidRequest(f"the context budget must be at least 256 tokens (got {requested})")
        return min(requested, context_limit)
    return context_limit if device == "cuda" else min(CPU_DEFAULT_BUDGET, context_limit)


@dataclass(frozen=True)
class Fit:
    """How a request compares with the budget."""

    prompt_tokens: int
    answer_tokens: int
    budget: int

    @property
    def needed(self) -> int:
        return self.prompt_tokens + self.answer_tokens

    @property
    def fits(self) -> bool:
        return self.needed <= self.budget


def require_fit(fit: Fit, document_name: str) -> None:
    """Raise BudgetError, saying by how much, when the request does not fit. Nothing is cut."""
    if fit.fits:
        return
    raise BudgetError(
        f"{document_name} is longer than the context budget: the prompt is {fit.prompt_tokens:,} tokens "
        f"and the answer may use {fit.answer_tokens:,}, which needs {fit.needed:,} tokens, but the budget "
        f"is {fit.budget:,}. Nothing was cut: use a shorter document, fewer answer tokens or a larger "
        "context budget (--context-budget)."
    )
