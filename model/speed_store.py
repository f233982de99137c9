"""Measured speeds kept between runs.

A wait is estimated from the engine's measured prefill and decode speeds. Measured anew in every
process, each command-line run would first spend a calibration generation (52 s of one run on
this CPU with the real-size model) and then estimate from a short prompt's speed. So the speeds
of each setup (model, device, dtype, quantization, the machine's processor, threads, kernels) are
kept in one small JSON file in the project's cache folder and read when an engine starts. The
file says nothing about anyone's documents; a damaged or unwritable file is ignored (the speeds
are measured again), never an error.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

from model.checkpoints import cache_root

logger = logging.getLogger(__name__)

STORE_NAME = "speeds.json"
KEPT_SETUPS = 64  # the most recently measured setups; older ones are dropped
SAVE_EVERY_SECONDS = 5.0  # a long answer records once; a busy server need not write on every request


class SpeedStore:
    """The speeds of one setup (`key`) in the file at `path`."""

    def __init__(self, path: Path, key: str):
        self.path = path
        self.key = key
        self._saved_at = 0.0

    def load(self) -> tuple[float, float] | None:
        entry = self._entries().get(self.key)
        try:
            prefill, decode = float(entry["prefill"]), float(entry["decode"])
        except (TypeError, KeyError, ValueError):
            return None
        return (prefill, decode) if prefill > 0 and decode > 0 else None

    def save(self, prefill: float, decode: float) -> None:
        now = time.monotonic()
        if self._saved_at and now - self._saved_at < SAVE_EVERY_SECONDS:
            return
        self._saved_at = now
        entries = self._entries()
        entries.pop(self.key, None)
        entries[self.key] = {"prefill": round(prefill, 3), "decode": round(decode, 3), "measured": int(time.time())}
        kept = dict(list(entries.items())[-KEPT_SETUPS:])
        temporary: Path | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=self.path.parent, suffix=".tmp", delete=False) as file:
                temporary = Path(file.name)
                json.dump(kept, file, indent=1)
            os.replace(temporary, self.path)  # whole or not at all, whoever else writes it
        except OSError as exc:
            logger.info("measured speeds not kept (%s): they are measured again next time", exc)
            if temporary is not None:
                temporary.unlink(missing_ok=True)

    def _entries(self) -> dict:
        try:
            entries = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return entries if isinstance(entries, dict) else {}


def store_for(*parts: object) -> SpeedStore:
    """The kept speeds of one setup, in the project's cache folder: `parts` (model, device, dtype,
    quantization; a server's address) and this machine (`setup_key`)."""
    return SpeedStore(cache_root() / STORE_NAME, setup_key(*parts))


def setup_key(*parts: object) -> str:
    """What the speed depends on, as one key: the caller's parts, then this machine's processor,
    the threads torch uses and whether the project's own CPU kernels are on."""
    import torch

    machine = f"{platform.machine()} {_processor_name()}"
    native = os.environ.get("GRANITE_LONGDOC_NATIVE", "1")
    return " | ".join(str(part) for part in (*parts, machine, f"threads={torch.get_num_threads()}", f"native={native}"))


def _processor_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown processor"
