"""The interface's own words in the twelve languages of the product.

The tables are data (`app/locales/<code>.toml`, English the reference). Labels, buttons and
placeholders are translated in the browser by Gradio's `gr.I18n` (it follows the browser's
language, and the language setting in the page's footer); what the server writes into HTML
(progress, sources, the viewer) is translated here, for the browser's `Accept-Language`.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path

import gradio as gr

LOCALES_DIR = Path(__file__).resolve().parent / "locales"
LANGUAGES = ("en", "de", "es", "fr", "ja", "pt", "ar", "cs", "it", "ko", "nl", "zh")
# Browsers say zh-CN, zh-TW, pt-BR ...: Gradio matches the full tag first, then its language.
_ALIASES = {"zh": ("zh-CN", "zh-Hans")}


@cache
def tables() -> dict[str, dict[str, str]]:
    """Every language's strings by key; a language without a file (or a key) falls back to English."""
    english = _load("en")
    found = {}
    for code in LANGUAGES:
        path = LOCALES_DIR / f"{code}.toml"
        found[code] = {**english, **(_load(code) if path.is_file() else {})}
    return found


def _load(code: str) -> dict[str, str]:
    return tomllib.loads((LOCALES_DIR / f"{code}.toml").read_text(encoding="utf-8"))["strings"]


def translations() -> gr.I18n:
    """The tables as Gradio's I18n (passed to `launch(i18n=...)` and used for every label)."""
    by_locale = {}
    for code, table in tables().items():
        by_locale[code] = table
        for alias in _ALIASES.get(code, ()):
            by_locale[alias] = table
    return gr.I18n(**by_locale)


def label(key: str) -> gr.i18n.I18nData:
    """A label translated in the browser (an unknown key is a bug: caught here, not shown raw)."""
    if key not in tables()["en"]:
        raise KeyError(f"no interface string {key!r} in app/locales/en.toml")
    return gr.i18n.I18nData(key)


def text(key: str, language: str = "en", /, **values: object) -> str:
    """A string for HTML that the server writes, in `language` (English where it has none)."""
    table = tables().get(language) or tables()["en"]
    return table[key].format(**values) if values else table[key]


def browser_language(request: gr.Request | None) -> str:
    """The first of the browser's preferred languages (Accept-Language) that the product speaks."""
    header = "" if request is None else (request.headers.get("accept-language") or "")
    weighted = []
    for position, part in enumerate(header.split(",")):
        tag, _, quality = part.strip().partition(";q=")
        try:
            weight = float(quality) if quality else 1.0
        except ValueError:
            continue
        weighted.append((-weight, position, tag.split("-")[0].lower()))
    for _weight, _position, code in sorted(weighted):
        if code in LANGUAGES:
            return code
    return "en"


def strategy_name(strategy: str | None, language: str = "en") -> str:
    """A task strategy (`full`, `map-reduce`, `retrieval`) in words."""
    key = f"strategy.{strategy}"
    return text(key, language) if key in tables()["en"] else str(strategy)
