"""Grammar-constrained decoding to a JSON schema, with xgrammar.

At each step the grammar masks every token that would break the JSON; generation ends when the
grammar has accepted a complete value. Compiled grammars are cached per schema within one cache
salt (a browser session): how fast a schema compiles never tells a session that another one used
it (xgrammar's own cache, which knows no sessions, is off).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from functools import cached_property
from typing import Any

import torch

from model.errors import RequestRefused

GRAMMARS_KEPT = 32  # compiled grammars kept (each a few MB at most)


class JsonSchemaConstraint:
    """One generation's grammar state: mask logits, accept tokens, say when the JSON is complete."""

    def __init__(self, compiled: Any, vocab_size: int, closes: bool):
        import xgrammar as xgr

        self._xgr = xgr
        self._matcher = xgr.GrammarMatcher(compiled)
        self._bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        self._closes = closes  # an object or array: complete at its closing bracket

    def mask(self, logits: torch.Tensor) -> None:
        """Set the logits of forbidden tokens to -inf, in place. `logits`: (1, vocab)."""
        self._matcher.fill_next_token_bitmask(self._bitmask)
        bitmask = self._bitmask.to(logits.device)
        self._xgr.apply_token_bitmask_inplace(logits, bitmask)

    def accept(self, token: int) -> None:
        if not self._matcher.accept_token(token):
            raise RuntimeError(f"token {token} was not allowed by the JSON grammar")

    @property
    def finished(self) -> bool:
        """The value is complete. An object or array is complete at its closing bracket, without
        waiting for the end-of-text token (which might not fit in the token limit)."""
        return self._matcher.is_terminated() or (self._closes and self._matcher.is_completed())


class JsonGrammars:
    """Compiles JSON schemas for one tokenizer (a compiler per engine; the last few compiled
    grammars are kept, each for the cache salt that compiled it)."""

    def __init__(self, tokenizer: Any, vocab_size: int, kept: int = GRAMMARS_KEPT):
        self._tokenizer = tokenizer
        self._vocab_size = vocab_size
        self._kept = kept
        self._compiled: OrderedDict[tuple[str | None, str], Any] = OrderedDict()

    @cached_property
    def _compiler(self) -> Any:
        import xgrammar as xgr

        info = xgr.TokenizerInfo.from_huggingface(self._tokenizer, vocab_size=self._vocab_size)
        return xgr.GrammarCompiler(info, max_threads=2, cache_enabled=False)

    def constraint(self, schema: dict, salt: str | None = None) -> JsonSchemaConstraint:
        """Raises RequestRefused when the schema cannot become a grammar (e.g. contradictory bounds)."""
        key = (salt, json.dumps(schema, sort_keys=True))
        compiled = self._compiled.pop(key, None) or self._compile(schema)
        self._compiled[key] = compiled  # the most recently used
        while len(self._compiled) > self._kept:
            self._compiled.popitem(last=False)
        closes = schema.get("type") in ("object", "array")
        return JsonSchemaConstraint(compiled, self._vocab_size, closes)

    def _compile(self, schema: dict) -> Any:
        try:
            # The user's property order is the output order. No free whitespace: a model (above
            # all a random one) could otherwise pad forever.
            return self._compiler.compile_json_schema(json.dumps(schema), any_whitespace=False, strict_mode=True)
        except RuntimeError as exc:
            raise RequestRefused(f"the schema cannot be turned into a grammar: {exc}") from exc
