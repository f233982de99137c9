"""Prompt templates as data, and the document text blocks that prompts are built from.

Templates live in `tasks/templates/<task>.toml`, one table per output language, each with named
parts (`instruction`, ...) and the `stop` strings that end the answer. The documents are
rendered here, the same way for every task and language, so that their prefill can be cached
and reused by every later request on them.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tasks.chunking import Chunk
from tasks.documents import Document
from tasks.interfaces import TextEngine

TEMPLATE_DIR = Path(__file__).parent / "templates"
TASKS = ("summarize", "ask", "extract", "classify", "custom")
DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class Template:
    task: str
    language: str
    parts: dict[str, str]
    stop: tuple[str, ...]

    def fill(self, part: str, **fields: object) -> str:
        return self.parts[part].format(**fields)


@cache
def template_languages(task: str) -> tuple[str, ...]:
    return tuple(_tables(task))


@cache
def load_template(task: str, language: str = DEFAULT_LANGUAGE, chat: bool = False) -> Template:
    """The template of `task` for output `language` (English when that language has none). `chat`:
    for an instruct model, whose `chat_*` parts replace the parts of the same name."""
    tables = _tables(task)
    chosen = language if language in tables else DEFAULT_LANGUAGE
    table = dict(tables[chosen])
    stop = tuple(table.pop("stop", ()))
    chat_parts = {name.removeprefix("chat_"): table.pop(name) for name in list(table) if name.startswith("chat_")}
    if chat:
        table |= chat_parts
    return Template(task, chosen, table, stop)


def engine_template(task: str, language: str, engine: TextEngine) -> Template:
    """The template of `task` in `language` for the prompts `engine`'s model reads: its chat
    parts when it has a chat template (`engine.chat_frame`), its completion parts otherwise."""
    return load_template(task, language, engine.chat_frame is not None)


def _tables(task: str) -> dict:
    path = TEMPLATE_DIR / f"{task}.toml"
    if not path.exists():
        raise ValueError(f"no prompt template for task {task!r}")
    return tomllib.loads(path.read_text(encoding="utf-8"))


def render_documents(documents: Sequence[Document]) -> str:
    """The documents as the model reads them: each page under a marker with its page number.
    This text is the cacheable prefix of every whole-document prompt."""
    return "\n\n".join(_document_block(document) for document in documents) + "\n"


def _document_block(document: Document) -> str:
    pages = "\n\n".join(f"[Page {page.number}]\n{page.text}" for page in document.pages)
    count = f"{len(document.pages)} page{'s' if len(document.pages) != 1 else ''}"
    return f"===== DOCUMENT: {document.name} ({count}) =====\n{pages}\n===== END OF DOCUMENT ====="


def render_chunks(chunks: Sequence[Chunk]) -> str:
    """Excerpts (chunks in document order), grouped by document, with [...] where text was left out."""
    blocks: list[str] = []
    for name in dict.fromkeys(chunk.document for chunk in chunks):
        own = [chunk for chunk in chunks if chunk.document == name]
        parts: list[str] = []
        for previous, chunk in zip([None, *own], own, strict=False):
            if previous is not None and chunk.index != previous.index + 1:
                parts.append("[...]")
            parts.append(f"[{chunk.page_label.capitalize()}]\n{chunk.text}")
        body = "\n\n".join(parts)
        blocks.append(f"===== EXCERPTS FROM DOCUMENT: {name} =====\n{body}\n===== END OF EXCERPTS =====")
    return "\n\n".join(blocks) + "\n"


def chat_framing(engine: TextEngine) -> str:
    """The text an instruct model's chat template adds around every prompt ("" for a base model):
    what budgets count on top of a prompt's own tokens."""
    return "".join(engine.chat_frame or ())


def in_chat_frame(frame: tuple[str, str] | None, prefix: str, prompt: str) -> tuple[str, str]:
    """(prefix, prompt) as the model reads them. With a chat frame (an instruct model's chat
    template) the documents open the user's message, so they stay the cacheable prefix, the request
    (a template's chat part: no answer cue) closes it, and the assistant's turn follows. Without one
    (a base model) they are completion prompts, as written."""
    if frame is None:
        return prefix, prompt
    before, after = frame
    return (before + prefix, prompt + after) if prefix else ("", before + prompt + after)
