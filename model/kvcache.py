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
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

_MIN_CAPACITY = 256
PREFIX_SLACK = 1024  # positions kept free in a cached prefix: room for the next question and answer


@dataclass
class CachedPrefix:
    ids: list[int]  # the prefix's token ids
    cache: Any  # a transformers DynamicCache holding the prefix's positions, then the tail's
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
        crop_to(entry.cache, entry.length)
        entry.nbytes = compact(entry.cache)
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


def cache_nbytes(cache: Any) -> int:
    """Bytes of memory held by the keys and values of a DynamicCache (whole storages: a cropped
    cache's tensors are views that keep the memory of what was cut)."""
    total = 0
    for layer in cache.layers:
        for tensor in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if tensor is not None:
                total += tensor.untyped_storage().nbytes()
    return total


def compact(cache: Any, ratio: float = 1.25) -> int:
    """Give back the memory of layers whose storage is much larger than what they hold (a long
    answer was cut off); return the bytes held. A short answer is not worth a copy."""
    for layer in cache.layers:
        keys = getattr(layer, "keys", None)
        if keys is None or not keys.numel():
            continue
        used = keys.numel() * keys.element_size()
        if keys.untyped_storage().nbytes() > ratio * used + PREFIX_SLACK * used // max(1, keys.shape[-2]):
            if isinstance(layer, GrowingLayer):
                layer.shrink(PREFIX_SLACK)
            else:
                layer.keys, layer.values = keys.clone(), layer.values.clone()
    return cache_nbytes(cache)


class GrowingLayer(DynamicLayer):
    """A KV cache layer whose keys and values live in a buffer with room to grow, so appending a
    token writes in place instead of copying the whole cache with `torch.cat` at every step.
    `keys` / `values` are views of the filled part. Sized up front from `reserve` (the engine
    knows prompt plus answer), it never grows during a request; past that it grows by a quarter.
    Writes happen in place, so use it under `torch.inference_mode()` (as the engine does)."""

    def __init__(self, reserve: int = 0):
        super().__init__()
        self.reserve = reserve

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start = self.get_seq_length()
        end = start + key_states.shape[-2]  # states: (batch, kv_heads, new positions, head_dim)
        if self._key_buffer is None or end > self._key_buffer.shape[-2]:
            capacity = max(end, self.reserve, start + start // 4 + _MIN_CAPACITY)
            self._resize(start, capacity, key_states, value_states)
        self._key_buffer[..., start:end, :] = key_states
        self._value_buffer[..., start:end, :] = value_states
        self.keys = self._key_buffer[..., :end, :]
        self.values = self._value_buffer[..., :end, :]
        return self.keys, self.values

    def reserve_room(self, total: int) -> None:
        """Make room for `total` positions now (one copy), so the request ahead needs none."""
        if self.is_initialized and self._key_buffer is not None and total > self._key_buffer.shape[-2]:
            length = self.get_seq_length()
            self._resize(length, total + PREFIX_SLACK, self.keys, self.values)
            self.keys = self._key_buffer[..., :length, :]
            self.values = self._value_buffer[..., :length, :]

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        self._adopt()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(indices)
        self._adopt()

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        super().reorder_cache(beam_idx)
        self._adopt()

    def _adopt(self) -> None:
        """After an operation that replaced `keys`/`values` (beam search), buffer the new ones."""
        if self.is_initialized and self.keys is not None and self.keys.numel():
            length = self.get_seq_length()
            keys, values = self.keys, self.values
            self._key_buffer = self._value_buffer = None
            self._resize(0, length + _MIN_CAPACITY, keys, values)
            self._key_buffer[..., :length, :] = keys
            self._value_buffer[..., :length, :] = values
            self.keys = self._key_buffer[..., :length, :]
            self.values = self._value_buffer[..., :length, :]

    def shrink(self, slack: int) -> None:
        """Reallocate to what is held plus `slack` positions, freeing the rest."""
        length = self.get_seq_length()
        self._resize(length, length + slack, self.keys, self.values)
        self.keys = self._key_buffer[..., :length, :]
        self.values = self._value_buffer[..., :length, :]

    def _resize(self, keep: int, capacity: int, keys_like: torch.Tensor, values_like: torch.Tensor) -> None:
        key_buffer = keys_like.new_empty((*keys_like.shape[:-2], capacity, keys_like.shape[-1]))
        value_buffer = values_like.new_empty((*values_like.shape[:-2], capacity, values_like.shape[-1]))
        if keep:
            key_buffer[..., :keep, :] = self.keys[..., :keep, :]
            value_buffer[..., :keep, :] = self.values[..., :keep, :]
        self._key_buffer, self._value_buffer = key_buffer, value_buffer


def kv_bytes_per_token(config: Any, dtype: torch.dtype) -> int:
    """The bytes one token takes in the KV cache of a model of `config` in `dtype`."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return 2 * config.num_hidden_layers * kv_heads * head_dim * dtype.itemsize


def new_cache(config: Any, reserve: int = 0) -> DynamicCache:
    """A DynamicCache for `config` whose layers grow in place, sized for `reserve` positions."""
    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer(reserve) for _ in range(config.num_hidden_layers)]
    return cache


def reserve_room(cache: Any, total: int) -> None:
    for layer in cache.layers:
        if isinstance(layer, GrowingLayer):
            layer.reserve_room(total)


def crop_to(cache: Any, length: int) -> None:
    """Cut every layer of a DynamicCache back to `length` positions (layer by layer, so a cache
    left uneven by an interrupted forward pass is mended too)."""
    for layer in cache.layers:
        extra = layer.get_seq_length() - length
        if extra > 0:
            layer.crop(-extra)


def holds_prefix(cache: Any, length: int) -> bool:
    """Whether every layer holds at least `length` positions (the prefix was prefilled whole)."""
    return bool(cache.layers) and all(layer.get_seq_length() >= length for layer in cache.layers)
