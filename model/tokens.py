"""Counting the tokens of any accepted text in bounded memory and linear time.

A tokenizer asked for the tokens of a whole 50 MB file holds every token's string, offsets and
alignment at once: gigabytes (README, "Measured limits"), and RSS stays high after. Long texts are therefore counted in
slices of about 32K characters, a few slices at a time. The slices are cut where the tokenizer's
own pre-tokenizer splits anyway (a single space between two non-space characters, or right after
a line break that follows a non-space character), so the sum is the exact count for the tokenizers
of this project (byte-level BPE, tested); only a slice with no such place (one endless "word") is
cut anywhere, and is then off by at most a token or two. Short texts take one call, as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

EXACT_CHARS = 200_000  # up to here one call (about 50K tokens, a few MB): cheap and trivially exact
SLICE_CHARS = 32_768
SLICES_AT_ONCE = 16  # about half a million characters in flight
_CLEAN_CUT = re.compile(r"(?<=\S)(?= \S)|(?<=\S\n)(?=\S)")


def count_tokens(tokenizer: Any, text: str, *, slice_chars: int = SLICE_CHARS, exact_chars: int = EXACT_CHARS) -> int:
    """The number of tokens `tokenizer.encode(text)` gives (special tokens included), counted in
    slices of `slice_chars` when `text` is longer than `exact_chars`."""
    if len(text) <= max(exact_chars, slice_chars):
        backend = getattr(tokenizer, "backend_tokenizer", None)  # the same ids, without transformers' overhead
        return len(backend.encode(text).ids) if backend is not None else len(tokenizer.encode(text))
    specials = tokenizer.num_special_tokens_to_add(pair=False)
    batch: list[str] = []
    total = 0
    for piece in slices(text, slice_chars):
        batch.append(piece)
        if len(batch) == SLICES_AT_ONCE:
            total += _count_batch(tokenizer, batch)
            batch = []
    return specials + total + (_count_batch(tokenizer, batch) if batch else 0)


def _count_batch(tokenizer: Any, pieces: list[str]) -> int:
    backend = getattr(tokenizer, "backend_tokenizer", None)  # a fast tokenizer encodes a batch on every core
    if backend is not None:
        return sum(len(encoding.ids) for encoding in backend.encode_batch(pieces, add_special_tokens=False))
    return sum(len(tokenizer.encode(piece, add_special_tokens=False)) for piece in pieces)


def slices(text: str, size: int) -> Iterator[str]:
    """`text` in consecutive pieces of at most `size` characters (at least half of it, where a
    clean cut exists), cut where a pre-tokenizer splits anyway."""
    start = 0
    while len(text) - start > size:
        end = clean_cut(text, start + size // 2, start + size)
        yield text[start:end]
        start = end
    yield text[start:]


def clean_cut(text: str, lowest: int, highest: int) -> int:
    """The last position in [lowest, highest] where no token can run across (before a space that
    stands alone between two non-space characters, or after a line break that follows a non-space
    character and precedes one); `highest` when there is none."""
    cut = highest
    for match in _CLEAN_CUT.finditer(text, lowest, min(len(text), highest + 2)):  # the lookahead needs 2 more
        if match.start() <= highest:
            cut = match.start()
    return cut


_SLOT = "\u2063MESSAGE\u2063"  # stands for the user's message while the chat template is rendered


def chat_frame(tokenizer: Any) -> tuple[str, str] | None:
    """The text a model's chat template puts before and after one user message, the assistant's
    turn opened: (before, after). None when the tokenizer has no chat template (a base model such
    as Granite-3.1-1B-A400M-Base, which reads completion prompts) or a template that cannot frame
    a lone user message. A leading BOS is left out: encoding adds it."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": _SLOT}], tokenize=False, add_generation_prompt=True
        )
    except Exception:  # a template of another shape (roles it insists on): use completion prompts
        return None
    if not isinstance(text, str) or text.count(_SLOT) != 1:
        return None
    before, after = text.split(_SLOT)
    bos = getattr(tokenizer, "bos_token", None)
    if bos and before.startswith(bos) and tokenizer.encode("x")[:1] == [tokenizer.bos_token_id]:
        before = before[len(bos) :]
    return before, after
