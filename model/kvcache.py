"""The document prefix cache: a prefilled KV cache per (model, prompt prefix), reused by later
requests on the same document, with a memory cap and least-recently-used eviction.

An entry is taken out while a request uses it (so two requests never extend the same cache),
then cropped back to the prefix and put back. Cropping only slices: the prefix's tensors are
never copied or changed, because the cache appends by concatenation.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass
class CachedPrefix:
    ids: list[int]  # the prefix's token ids
    cache: Any  # a transformers DynamicCache holding exactly len(ids) positions
    nbytes: int


class PrefixCache:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, CachedPrefix] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(prefix: str) -> str:
        return hashlib.sha256(prefix.encode()).hexdigest()

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
        """Crop `entry` to its prefix and store it as the most recently used; evict to fit the cap."""
        crop_to(entry.cache, len(entry.ids))
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


def compact(cache: Any, slack: float = 1.25) -> int:
    """Copy the layers whose storage is much larger than what they hold (a long answer was cut
    off), so the memory is given back; return the bytes held. A short answer is not worth a copy."""
    for layer in cache.layers:
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if keys is None or values is None:
            continue
        if keys.untyped_storage().nbytes() > slack * keys.numel() * keys.element_size():
            layer.keys, layer.values = keys.clone(), values.clone()
    return cache_nbytes(cache)


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
