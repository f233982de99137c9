"""Prompt templates as data: `tasks/templates/<task>.toml`, one table per language.

A template has a `prefix` (everything up to and including the document, so its prefill can be
reused across questions), an `instruction` (the task, repeated after the document, ending in an
answer cue) and the `stop` strings that end the answer.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tasks.documents import Document

TEMPLATE_DIR = Path(__file__).parent / "templates"
DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class Template:
    task: str
    language: str
    prefix: str
    instruction: str
    stop: tuple[str, ...]


@dataclass(frozen=True)
class Prompt:
    prefix: str  # the document part: identical for every task on the same document
    instruction: str
    stop: tuple[str, ...]

    @property
    def text(self) -> str:
        return self.prefix + self.instruction


@cache
def load_template(task: str, language: str = DEFAULT_LANGUAGE) -> Template:
    """Read the template of `task` in `language` (falls back to English when there is none)."""
    path = TEMPLATE_DIR / f"{task}.toml"
    if not path.exists():
        raise ValueError(f"no prompt template for task {task!r}")
    tables = tomllib.loads(path.read_text(encoding="utf-8"))
    chosen = language if language in tables else DEFAULT_LANGUAGE
    table = tables[chosen]
    return Template(task, chosen, table["prefix"], table["instruction"], tuple(table["stop"]))


def render_document(document: Document) -> str:
    """The document as the model sees it: every page under a marker with its page number."""
    return "\n\n".join(f"[Page {page.number}]\n{page.text}" for page in document.pages)


def build_prompt(template: Template, document: Document, **fields: str) -> Prompt:
    """Fill the template for `document`; `fields` fill the instruction (e.g. question=...)."""
    prefix = template.prefix.format(name=document.name, pages=len(document.pages), document=render_document(document))
    return Prompt(prefix, template.instruction.format(**fields), template.stop)
