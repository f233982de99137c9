"""The options every task takes: answer length, sampling, budget, strategy, output language,
time limit, and the request's cancel event, deadline and cache boundary."""

from __future__ import annotations

import dataclasses
import math
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from tasks.budget import StrategySetting
from tasks.errors import InvalidRequest
from tasks.language import check_language

MAX_NEW_TOKENS_LIMIT = 4096


@dataclass(frozen=True)
class TaskOptions:
    max_new_tokens: int = 512
    temperature: float = 0.0
    context_budget: int | None = None  # None: the device's default
    strategy: StrategySetting = "auto"  # checked against the task by choose_strategy
    language: str | None = None  # output language; None: the documents' language
    time_limit: float | None = None  # seconds of wall-clock time per request; None: no limit
    cancel: threading.Event | None = field(default=None, compare=False)
    # The session's trust boundary for cached documents (None: the command line's single user).
    cache_salt: str | None = field(default=None, compare=False, repr=False)
    deadline: float | None = field(default=None, compare=False)  # time.monotonic() to stop at; see started()

    def validate(self) -> None:
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
            raise InvalidRequest(f"max new tokens must be between 1 and {MAX_NEW_TOKENS_LIMIT:,}")
        if not 0.0 <= self.temperature <= 2.0:  # also refuses nan, for which every comparison is False
            raise InvalidRequest(f"temperature must be between 0 and 2, not {self.temperature!r}")
        if self.time_limit is not None and not (math.isfinite(self.time_limit) and self.time_limit > 0):
            raise InvalidRequest("the time limit must be a positive number of seconds (or none)")
        if self.language is not None:
            try:
                check_language(self.language)
            except ValueError as exc:
                raise InvalidRequest(str(exc)) from exc

    def started(self) -> TaskOptions:
        """These options with the clock started: a task calls this as it begins, so that all its
        generations (the many of a map-reduce summary) share one deadline."""
        if self.time_limit is None or self.deadline is not None:
            return self
        return dataclasses.replace(self, deadline=time.monotonic() + self.time_limit)


# The comma of every keyboard the product serves: ASCII, Japanese and Chinese (、，), Arabic (،).
_COMMAS = re.compile("[,\u3001\uff0c\u060c]")


def comma_list(items: str | Sequence[str]) -> list[str]:
    """'invoice, contract,,invoice' or a list -> the unique, non-empty items in order, each with
    its runs of whitespace (line breaks too) as single spaces. Japanese, Chinese and Arabic commas
    separate items too."""
    parts = _COMMAS.split(items) if isinstance(items, str) else items
    return list(dict.fromkeys(" ".join(str(part).split()) for part in parts if str(part).strip()))
