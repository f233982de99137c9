"""What ends a request early: its cancel event, its deadline, or the GPU running out of memory.

The engine carries one `RequestState` per request through prefill and decode. It says whether to
stop (and why), holds the prefill chunk size (halved after an out-of-memory error) and the cache
salt (whose cached documents the request may reuse), and collects notes for the user about what
happened.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, field

import torch

from model.errors import OutOfMemory
from model.generation import FinishReason

logger = logging.getLogger(__name__)


class Cancelled(Exception):
    """The request was stopped (cancel event or deadline) while the prompt was being read."""

    def __init__(self, reason: FinishReason = "cancelled"):
        super().__init__(reason)
        self.reason = reason


class GpuOutOfMemory(OutOfMemory):
    """The GPU ran out of memory even with the smallest prefill chunks; the message is for the user."""


@dataclass
class RequestState:
    cancel: threading.Event | None
    deadline: float | None  # a time.monotonic() value
    chunk: int  # prefill chunk size
    salt: str | None = None  # the trust boundary of cached prefixes (model/kvcache.py)
    tokens: int = 0  # the prompt's tokens, once known
    notes: list[str] = field(default_factory=list)

    def stop_reason(self) -> FinishReason | None:
        if self.cancel is not None and self.cancel.is_set():
            return "cancelled"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "time_limit"
        return None

    def out_of_memory(self) -> GpuOutOfMemory:
        size = f" ({self.tokens:,} prompt tokens)" if self.tokens else ""
        return GpuOutOfMemory(
            f"the GPU ran out of memory for this request{size}; try a smaller context budget or --quant 4bit"
        )


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA (or other accelerator) out-of-memory error, or our own report of one."""
    if isinstance(exc, (torch.cuda.OutOfMemoryError, GpuOutOfMemory)):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def reraise_unless_out_of_memory(exc: Exception, request: RequestState, doing: str) -> None:
    """Re-raise `exc` unless it is an out-of-memory error, which is logged. The caller then calls
    `release_memory()` and raises `request.out_of_memory()` after its `except` block (see there why)."""
    if not is_out_of_memory(exc):
        raise exc
    logger.warning("out of memory %s a %d-token prompt: %s", doing, request.tokens, exc)


def release_memory() -> None:
    """Collect what a failed request left (its traceback's frames form cycles) and hand the GPU
    blocks the allocator keeps back to the device. Call it outside the `except` block, once the
    error (which holds those frames) is gone."""
    gc.collect()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()
