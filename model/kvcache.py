"""The document prefix cache: a prefilled KV cache per (cache salt, prompt prefix), reused by later
requests on the same document, with a memory cap and least-recently-used eviction.

Every entry has a trust boundary, as vLLM's `cache_salt` has: the salt (one per browser session,
unguessable) is part of the key, so a request reuses only what requests with the same salt
prefilled. Another session asking about the same document prefills it again: its usage figures
and its timing cannot tell it that someone else read that document, or what they asked.

An entry is taken out while a request uses it (so two requests never extend the same cache),
then cropped back to the prefix and the request's prompt, and put back. The prompt is kept
because follow-up questions share most of it (the task's instructions before the question
itself): the next request prefills only from the first token where its prompt differs. Cropping
only moves the end: the kept positions are never copied or changed, later writes go after them.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

_MIN_CAPACITY = 256
PREFIX_SLACK = 1024  # positions kept free in a cached prefix: room for the next question and answer


@dataclass
class CachedPrefix:
    ids: list[int]  # the prefix's token ids
    cache: Any  # a KVCache (or StockCache) holding the prefix's positions, then the tail's
    nbytes: int
    tail: list[int] = field(default_factory=list)  # the last request's prompt ids after the prefix

    @property
    def length(self) -> int:
        """Positions the cache holds that are worth keeping: the prefix and the tail."""
        return len(self.ids) + len(self.tail)

    def reusable(self, rest: list[int]) -> int:
        """How many leading ids of `rest` (a prompt after this prefix) the tail already holds,
        leaving at least one to feed (its logits start the answer)."""
        shared = 0
        for cached, wanted in zip(self.tail, rest[:-1], strict=False):
            if cached != wanted:
                break
            shared += 1
        return shared


class PrefixCache:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, CachedPrefix] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(prefix: str, salt: str | None = None) -> str:
        """The entry of `prefix` within the trust boundary `salt` (None: the unsalted, single-user
        boundary of the command line and the benchmarks)."""
        boundary = "unsalted:" if salt is None else f"salted:{len(salt)}:{salt}:"  # the length keeps salts apart
        return hashlib.sha256((boundary + prefix).encode()).hexdigest()

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return sum(entry.nbytes for entry in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, key: str) -> CachedPrefix | None:
        """Remove and return the entry for `key` (the caller has it alone until it gives it back)."""
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is None:
                self.misses += 1
            else:
                self.hits += 1
            return entry

    def give_back(self, key: str, entry: CachedPrefix) -> None:
        """Crop `entry` to its prefix and tail and store it as the most recently used; evict to fit
        the cap."""
        entry.cache.crop(entry.length)
        entry.nbytes = entry.cache.compact()
        if entry.nbytes > self.max_bytes:
            return  # larger than the whole cache: not kept
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while sum(e.nbytes for e in self._entries.values()) > self.max_bytes:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class KVCache:
    """The keys and values of every layer of our GraniteMoE, in one buffer with room to grow:
    (layers, 2, kv_heads, capacity, head_dim). Writing a chunk fills the next positions in place;
    attention reads views of the filled part, so nothing is ever concatenated or copied per step.
    `length` moves only when a forward pass has written every layer, so a pass cut short (out of
    memory, an error) leaves the cache as it was. Sized up front from `reserve` (the engine knows
    prompt plus answer), it never grows during a request; past that it grows by a quarter.
    Writes happen in place: use it under `torch.inference_mode()` (as the engine does)."""

    def __init__(self, layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype, device: Any, reserve: int = 0):
        self.shape = (layers, 2, kv_heads, 0, head_dim)
        self.dtype, self.device, self.reserve_hint = dtype, device, reserve
        self.length = 0
        self.buffer: torch.Tensor | None = None

    @property
    def capacity(self) -> int:
        return 0 if self.buffer is None else self.buffer.shape[3]

    @property
    def nbytes(self) -> int:
        """Bytes held (the whole buffer, filled or not)."""
        return 0 if self.buffer is None else self.buffer.nbytes

    def make_room(self, total: int) -> None:
        """Room for `total` positions; grows (one copy of what is held) only when there is none."""
        if total > self.capacity:
            if self.buffer is None and self.reserve_hint:  # sized for the request ahead
                self._resize(max(total, self.reserve_hint))
            else:
                self._resize(max(total, self.length + self.length // 4 + _MIN_CAPACITY))

    def reserve(self, total: int) -> None:
        """Room for `total` positions and the slack of a next question, now (one copy at most),
        so the request ahead needs none."""
        self.reserve_hint = max(self.reserve_hint, total)
        if self.buffer is not None and total > self.capacity:
            self._resize(total + PREFIX_SLACK)

    def write(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store a chunk's keys and values (kv_heads, n, head_dim) of `layer` after the `length`
        positions held; return views of all of that layer's keys and values so far."""
        end = self.length + keys.shape[1]
        self.buffer[layer, 0, :, self.length : end] = keys
        self.buffer[layer, 1, :, self.length : end] = values
        return self.buffer[layer, 0, :, :end], self.buffer[layer, 1, :, :end]

    def crop(self, length: int) -> None:
        """Forget the positions from `length` on (the memory stays, for the next writes)."""
        self.length = min(self.length, max(length, 0))

    def holds(self, length: int) -> bool:
        return self.length >= length

    def compact(self, ratio: float = 1.25) -> int:
        """Give back the memory of a buffer much larger than what it holds (a long answer was cut
        off), keeping PREFIX_SLACK positions free; return the bytes held. A short answer is not
        worth a copy."""
        if self.capacity > ratio * self.length + PREFIX_SLACK:
            self._resize(self.length + PREFIX_SLACK)
        return self.nbytes

    def _resize(self, capacity: int) -> None:
        layers, _, kv_heads, _, head_dim = self.shape
        buffer = torch.empty((layers, 2, kv_heads, capacity, head_dim), dtype=self.dtype, device=self.device)
        if self.buffer is not None and self.length:
            buffer[:, :, :, : self.length] = self.buffer[:, :, :, : self.length]
        self.buffer = buffer


class StockCache:
    """A transformers DynamicCache behind KVCache's methods, for the architectures that run
    transformers' own forward (model/stock.py)."""

    def __init__(self, config: Any):
        from transformers import DynamicCache

        self.dynamic = DynamicCache(config=config)

    @property
    def length(self) -> int:
        """Positions every layer holds (a pass cut short may have written only some layers)."""
        return min((layer.get_seq_length() for layer in self.dynamic.layers), default=0)

    @property
    def nbytes(self) -> int:
        total = 0
        for layer in self.dynamic.layers:
            for tensor in (getattr(layer, "keys", None), getattr(layer, "values", None)):
                if tensor is not None:
                    total += tensor.untyped_storage().nbytes()  # a cropped tensor keeps what was cut
        return total

    def make_room(self, total: int) -> None:
        """Nothing to do: each layer grows as it is written."""

    def reserve(self, total: int) -> None:
        """Nothing to do: each layer grows as it is written."""

    def crop(self, length: int) -> None:
        """Cut every layer back to `length` positions (layer by layer, so a cache left uneven by
        an interrupted forward pass is mended too)."""
        for layer in self.dynamic.layers:
            extra = layer.get_seq_length() - length
            if extra > 0:
                layer.crop(-extra)

    def holds(self, length: int) -> bool:
        return bool(self.dynamic.layers) and self.length >= length

    def compact(self, ratio: float = 1.25) -> int:
        for layer in self.dynamic.layers:
            keys = getattr(layer, "keys", None)
            if keys is not None and keys.numel() and keys.untyped_storage().nbytes() > ratio * keys.nbytes:
                layer.keys, layer.values = keys.clone(), layer.values.clone()
        return self.nbytes


def kv_bytes_per_token(config: Any, dtype: torch.dtype) -> int:
    """The bytes one token takes in the KV cache of a model of `config` in `dtype`."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return 2 * config.num_hidden_layers * kv_heads * head_dim * dtype.itemsize
