"""The twelve languages Granite 3.1 supports, and detecting which one a document is written in.

Detection uses lingua (restricted to those twelve languages, in its low-accuracy mode: documents
are long, so trigram statistics suffice, and it needs a few MB instead of hundreds).
"""

from __future__ import annotations

from functools import cache

# ISO 639-1 code -> (English name, native name), in the order Granite's model card lists them.
LANGUAGES: dict[str, tuple[str, str]] = {
    "en": ("English", "English"),
    "de": ("German", "Deutsch"),
    "es": ("Spanish", "Español"),
    "fr": ("French", "Français"),
    "ja": ("Japanese", "日本語"),
    "pt": ("Portuguese", "Português"),
    "ar": ("Arabic", "العربية"),
    "cs": ("Czech", "Čeština"),
    "it": ("Italian", "Italiano"),
    "ko": ("Korean", "한국어"),
    "nl": ("Dutch", "Nederlands"),
    "zh": ("Chinese", "中文"),
}
_SAMPLE_CHARS = 20_000  # plenty for a confident answer; keeps detection instant on long documents


@cache
def _detector():
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    codes = [getattr(IsoCode639_1, code.upper()) for code in LANGUAGES]
    return LanguageDetectorBuilder.from_iso_codes_639_1(*codes).with_low_accuracy_mode().build()


def detect_language(text: str) -> str | None:
    """The ISO 639-1 code of the main language of `text`, or None when there is too little text."""
    sample = _sample(text)
    if sum(ch.isalpha() for ch in sample) < 20:
        return None
    language = _detector().detect_language_of(sample)
    return language.iso_code_639_1.name.lower() if language else None


def check_language(code: str) -> str:
    """Validate a --lang value; raises ValueError listing the supported codes."""
    code = code.strip().lower()
    if code not in LANGUAGES:
        raise ValueError(f"unsupported language {code!r}; choose one of {', '.join(LANGUAGES)}")
    return code


def _sample(text: str) -> str:
    if len(text) <= _SAMPLE_CHARS:
        return text
    third = _SAMPLE_CHARS // 3  # beginning, middle and end, so a foreign-language preface cannot decide
    middle = len(text) // 2
    return text[:third] + "\n" + text[middle - third // 2 : middle + third // 2] + "\n" + text[-third:]
