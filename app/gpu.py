"""Hugging Face ZeroGPU: run generation under `@spaces.GPU` when the `spaces` package is there.

On a ZeroGPU Space a GPU is attached only while a decorated function runs, for at most its
`duration` seconds, so the duration grows with the input. Without the package (everywhere else)
the handlers are returned unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

BASE_SECONDS = 60
SECONDS_PER_MB = 40  # reading, prefilling and possibly summarizing in parts
MAX_SECONDS = 600


def on_spaces_gpu(handler: Callable) -> Callable:
    """`handler` under `spaces.GPU(duration=gpu_seconds)` when `spaces` is importable."""
    try:
        import spaces
    except ImportError:
        return handler
    return spaces.GPU(duration=gpu_seconds)(handler)


def gpu_seconds(documents: Any = None, *args: Any, **kwargs: Any) -> int:
    """How long to hold the GPU for a task on `documents` (file paths): grows with their size."""
    paths = [documents] if isinstance(documents, str) else list(documents or [])
    megabytes = sum(_size(path) for path in paths) / 2**20
    return int(min(MAX_SECONDS, BASE_SECONDS + SECONDS_PER_MB * megabytes))


def _size(path: Any) -> int:
    try:
        return os.path.getsize(path if isinstance(path, str) else getattr(path, "name", str(path)))
    except OSError:
        return 0
