"""Turning a stream of token ids into a stream of text: incremental detokenization and stop strings.

Both are pure Python and know nothing about torch, so they are tested on their own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

_REPLACEMENT = "\ufffd"
_MAX_HELD_TOKENS = 4  # a UTF-8 character spans at most 4 byte-level tokens


class IncrementalDecoder:
    """Decode token ids one at a time into text deltas.

    Byte-level tokenizers can split one character over several tokens; decoding such a partial
    character gives U+FFFD. We hold those tokens back until the character completes. Decoding a
    short window (`prefix` ids as context) keeps each step cheap and keeps tokenizers that treat a
    leading space specially correct.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str]):
        self._decode = decode
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0

    def push(self, token_id: int) -> str:
        """Add one token; return the text that is now certain (possibly empty)."""
        self._ids.append(token_id)
        return self._emit(force=len(self._ids) - self._read_offset >= _MAX_HELD_TOKENS)

    def flush(self) -> str:
        """Return whatever is still held back (at the end of generation)."""
        return self._emit(force=True)

    def _emit(self, force: bool) -> str:
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        full_text = self._decode(self._ids[self._prefix_offset :])
        complete = not full_text.endswith(_REPLACEMENT)
        if len(full_text) <= len(prefix_text) or not (complete or force):
            return ""
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)
        return full_text[len(prefix_text) :]


class StopStringFilter:
    """Pass text through until a stop string appears; never emit any part of a stop string.

    Text that could be the beginning of a stop string is held back until it is clearly not.
    """

    def __init__(self, stop_strings: Sequence[str]):
        self._stops = [s for s in stop_strings if s]
        self._held = ""
        self.stopped = False

    def push(self, text: str) -> str:
        """Add generated text; return the part that is safe to show. Sets `stopped` on a match."""
        if self.stopped:
            return ""
        text = self._held + text
        cut = min((i for i in (text.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return text[:cut]
        keep = self._longest_stop_prefix_suffix(text)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """Return held-back text at the end of generation (it turned out not to be a stop string)."""
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _longest_stop_prefix_suffix(self, text: str) -> int:
        best = 0
        for stop in self._stops:
            for length in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:length]):
                    best = length
                    break
        return best
