"""One long-lived thread does all of the model's work: loading, every forward pass, sampling.

Why one thread: the CPU's parallel loops (OpenMP, inside torch and model/cpu_kernels.cpp) keep a
pool of worker threads for each thread that starts them. The web UI and the API call the engine
from many threads, and every one of them grew its own pool. Once a process holds more pool
threads than CPUs, OpenMP stops letting idle workers spin and puts them to sleep instead, so
every parallel loop, hundreds a token, first waits for its workers to wake: on two cores a
question's first token took 0.32 s instead of 0.21 and decode ran 19 instead of 22 tokens/s.
Work sent here from any thread runs on this one thread, so the process keeps a single pool.

`run(fn, *args)` runs `fn` here and returns its result or raises its exception in the caller;
called from this thread itself, it simply calls `fn` (no deadlock on nested calls). Grad and
inference mode are per thread in torch, so the caller's are applied around `fn`. One call runs
at a time: concurrent requests take turns at the granularity of the calls (the engine sends one
prefill chunk or one decode step per call).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

import torch

T = TypeVar("T")


class ComputeThread:
    """A daemon thread that runs the callables sent to it, one at a time, in order."""

    def __init__(self, name: str = "granite-compute"):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._name = name
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` on this thread, with the caller's grad and inference modes."""
        if threading.current_thread() is self._thread:
            return fn(*args, **kwargs)
        future: Future = Future()
        modes = (torch.is_grad_enabled(), torch.is_inference_mode_enabled())
        self._jobs.put((future, modes, fn, args, kwargs))
        self._ensure_started()
        return future.result()

    def _ensure_started(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
                self._thread.start()

    def _serve(self) -> None:
        while True:
            future, (grad, inference), fn, args, kwargs = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            result = None
            try:
                with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                    result = fn(*args, **kwargs)
            except BaseException as error:  # every error belongs to the caller
                future.set_exception(error)
            else:
                future.set_result(result)
            del future, fn, args, kwargs, result  # nothing of a finished job stays referenced here


_SHARED = ComputeThread()


def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` on the process's one compute thread (see the module's docstring)."""
    return _SHARED.run(fn, *args, **kwargs)


def steps(iterator: Iterator[T]) -> Iterator[T]:
    """Advance `iterator` one item at a time on the compute thread, yielding each item here; the
    iterator is closed there too when the caller stops early."""
    try:
        while True:
            try:
                item = run(next, iterator)
            except StopIteration:
                return
            yield item
    finally:
        if hasattr(iterator, "close"):
            run(iterator.close)
