"""Bytes -> text for the text formats (TXT, Markdown, HTML): BOMs, UTF-8, legacy encodings, and a
clear refusal of files that are not text at all.

Legacy encodings are detected with charset-normalizer, limited to the encodings documents really
use: its own first choice on a short text is often a rare code page (French `déjà` read as Baltic
cp1257 `déją`, short Chinese read as Korean). A file that mixes UTF-8 lines with legacy lines
(text pasted together from two sources) is decoded line by line.
"""

from __future__ import annotations

import logging

from tasks.errors import DocumentError

logger = logging.getLogger(__name__)

# The legacy encodings considered, most common first (the order breaks ties). Left out on
# purpose: cp1257, the Mac and ISO-8859 code pages, which win ties on Western text and misread it.
LEGACY_ENCODINGS = ("cp1252", "gb18030", "cp932", "euc_jp", "cp949", "big5", "cp1250", "cp1251", "cp1253",
                    "cp1254", "cp1255", "cp1256", "koi8_r")  # fmt: skip
_CHAOS_MARGIN = 0.05  # candidates this close to the least garbled decoding compete on language fit
# Valid UTF-8 lines must hold this many bytes beyond ASCII (a few accented letters) before lines are
# decoded one by one: a short legacy line can be valid UTF-8 by chance, a few such lines cannot.
_MIXED_EVIDENCE = 4
_BOMS = ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe", "utf-16"),
         (b"\xfe\xff", "utf-16"))  # fmt: skip
# C0 control bytes that text never needs (tab, line feed, vertical tab, form feed, carriage return
# and escape are allowed); a few stray NULs in text are dropped later, binary data is full of them.
_CONTROL_BYTES = bytes([*range(0, 9), *range(14, 27), *range(28, 32)])
_SAMPLE_BYTES = 8192
# The first bytes of files that arrive under the wrong name, to say what the file really is.
SIGNATURES = {
    b"%PDF": "a PDF",
    b"PK\x03\x04": "a ZIP archive (such as .docx, .xlsx or .zip)",
    b"\xd0\xcf\x11\xe0": "an old Office file (.doc, .xls or .ppt)",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"{\\rtf": "an RTF file",
    b"\x7fELF": "a program",
    b"MZ\x90\x00": "a Windows program",
}


def sniff(data: bytes) -> str | None:
    """What a file is, going by its first bytes (`a PNG image`), or None when unknown."""
    return next((kind for magic, kind in SIGNATURES.items() if data.startswith(magic)), None)


def decode_text(data: bytes, name: str) -> tuple[str, str]:
    """(text, encoding): UTF-16/32 by their BOM, else UTF-8 (with or without BOM), else the legacy
    encoding detected. Raises DocumentError for binary files."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding), encoding
            except UnicodeDecodeError as exc:
                raise DocumentError(f"{name}: this {encoding.upper()} text file is damaged ({exc.reason})") from exc
    kind = sniff(data)
    if kind:
        raise DocumentError(f"{name}: this is {kind}, not a text file")
    if looks_binary(data[:_SAMPLE_BYTES]):
        raise DocumentError(f"{name}: this looks like a binary file, not text")
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        return _decode_legacy(data, name)


def looks_binary(sample: bytes) -> bool:
    """More than 5% control bytes: no text has that many."""
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    return controls > max(2, len(sample) // 20)


def _decode_legacy(data: bytes, name: str) -> tuple[str, str]:
    """The whole file in the detected encoding; or, when some lines are real UTF-8 (with accents,
    not only ASCII), those lines as UTF-8 and the others in the encoding detected for them."""
    lines = data.splitlines(keepends=True)
    as_utf8 = [_utf8(line) for line in lines]
    evidence = sum(len(line) - len(text) for line, text in zip(lines, as_utf8, strict=True) if text is not None)
    if evidence < _MIXED_EVIDENCE:
        encoding = detect_encoding(data, name)
        return data.decode(encoding, errors="replace"), encoding
    legacy = b"".join(line for line, text in zip(lines, as_utf8, strict=True) if text is None)
    encoding = detect_encoding(legacy, name)
    decoded = (text if text is not None else line.decode(encoding, errors="replace")
               for line, text in zip(lines, as_utf8, strict=True))  # fmt: skip
    logger.info("%s mixes UTF-8 lines with %s lines", name, encoding)
    return "".join(decoded), f"utf-8 + {encoding}"


def _utf8(line: bytes) -> str | None:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return None


def detect_encoding(data: bytes, name: str) -> str:
    """The legacy encoding of `data`: among the decodings that are least garbled, the one whose
    letters best fit a language, ties going to the more common encoding."""
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data, cp_isolation=list(LEGACY_ENCODINGS)))
    if not matches:
        raise DocumentError(f"{name}: could not tell which text encoding this file uses")
    least = min(match.chaos for match in matches)
    plausible = [match for match in matches if match.chaos <= least + _CHAOS_MARGIN]
    best = max(plausible, key=lambda match: (round(match.coherence, 2), -_rank(match.encoding)))
    logger.info("%s is not UTF-8; decoded as %s", name, best.encoding)
    return best.encoding


def _rank(encoding: str) -> int:
    return LEGACY_ENCODINGS.index(encoding) if encoding in LEGACY_ENCODINGS else len(LEGACY_ENCODINGS)
