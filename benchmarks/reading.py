"""PDF text: the old reader (pypdf's `extract_text`) against the app's, on PDFs with known text.

    python benchmarks/reading.py [--scale 5] [--smoke] [--json PATH] [--keep FOLDER]
    python benchmarks/reading.py --real FOLDER [--json PATH]   # real PDFs, against poppler's pdftotext

Writes the corpus of benchmarks/pdf_corpus.py (--scale multiplies its page counts; --smoke is
scale 1, every document still in), then reads each PDF with a text layer twice, each read in a
fresh process: the old reader (pypdf, page by page, then tasks.cleaning as the app cleaned it)
and the new one (`tasks.documents.load_document`, what the app reads with now). Both detect the
language, as load_document did and does. Prints a markdown table: word recall and precision over
the whole document, character accuracy (in reading order: two columns read across score low),
pages per second (the read alone: imports and the language detector are loaded first), and the
peak memory the read added to its process. Then the scanned PDFs, new reader only (the old one
reads nothing there): OCR pages per second, character accuracy of each page against its known
text, and whether every page was marked as read by OCR. A reader that raises gives an error row.

With --real, the PDFs under FOLDER (e.g. the manuals in Debian's texlive-lang-* packages) have no
known text: poppler's `pdftotext` is the reference, and the table gives each reader's word recall
and precision against it, and its speed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import import_module, metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.memory import PeakSampler, rss_bytes
from benchmarks.pdf_corpus import CorpusPdf, char_accuracy, word_scores, write_corpus

ROOT = Path(__file__).resolve().parent.parent
READ_TIMEOUT_S = 900
_WARM_TEXT = "The committee reviewed the annual report and approved the budget for the coming year. " * 3


def read_old(path: Path) -> tuple[list[str], list[bool | None]]:
    """What the app did before PDFium: pypdf's text of each page, tidied and cleaned."""
    from pypdf import PdfReader

    from tasks.cleaning import clean_pages
    from tasks.documents import _tidy
    from tasks.language import detect_language

    texts = clean_pages([_tidy(page.extract_text() or "") for page in PdfReader(path).pages], from_pdf=True)
    detect_language("\n".join(texts))
    return texts, [None] * len(texts)


def read_new(path: Path) -> tuple[list[str], list[bool | None]]:
    from tasks.documents import load_document

    pages = load_document(path).pages
    return [page.text for page in pages], [getattr(page, "ocr", None) for page in pages]


READERS = {"old": read_old, "new": read_new}
# Imported before a read is measured
PRELOADED = {
    "old": ("pypdf", "tasks.cleaning", "tasks.documents", "tasks.language"),
    "new": ("pypdf", "pypdfium2", "tasks.documents", "tasks.language"),
}


def max_rss_bytes(who: int = resource.RUSAGE_SELF) -> int:
    return resource.getrusage(who).ru_maxrss * 1024  # KiB on Linux


def measure(reader: str, path: str) -> dict:
    """In a fresh process: one read of `path`, its seconds and the peak memory it added (the
    process's own; `ocr_process_peak_mib`: the largest child process's, e.g. tesseract)."""
    for module in PRELOADED[reader]:
        with contextlib.suppress(Exception):  # a reader that needs a missing module fails below, with its error
            import_module(module)
    with contextlib.suppress(Exception):  # the read reports it
        from tasks.language import detect_language

        detect_language(_WARM_TEXT)  # loads the detector outside the measured read
    before, lifetime_peak = rss_bytes(), max_rss_bytes()
    result: dict = {"reader": reader, "error": None}
    with PeakSampler(interval=0.002) as sampler:
        started = time.perf_counter()
        try:
            result["pages"], result["ocr"] = READERS[reader](Path(path))
        except Exception as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"
        result["seconds"] = time.perf_counter() - started
    peak = max_rss_bytes() if max_rss_bytes() > lifetime_peak else sampler.peak  # ru_maxrss: exact, if it grew
    result["peak_added_mib"] = round((peak - before) / 2**20, 1)
    result["ocr_process_peak_mib"] = round(max_rss_bytes(resource.RUSAGE_CHILDREN) / 2**20, 1)
    return result


def in_subprocess(reader: str, path: Path) -> dict:
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from benchmarks.reading import measure; "
        "print(json.dumps(measure(sys.argv[2], sys.argv[3])))"
    )
    command = [sys.executable, "-c", code, str(ROOT), reader, str(path)]
    try:
        out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=READ_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"reader": reader, "error": f"no answer within {READ_TIMEOUT_S} s"}
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        last = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
        return {"reader": reader, "error": f"the measuring process failed: {last}"}
    return json.loads(lines[-1])


def score(document: CorpusPdf, read: dict) -> dict:
    """The figures of one read of `document` (the page texts themselves are left out)."""
    row = {key: value for key, value in read.items() if key not in ("pages", "ocr")}
    if read["error"]:
        return row
    found, known = "\n\n".join(read["pages"]), "\n\n".join(document.pages)
    recall, precision = word_scores(found, known)
    row |= {
        "pages_read": len(read["pages"]),
        "recall": round(recall, 4),
        "precision": round(precision, 4),
        "char_accuracy": round(char_accuracy(found, known), 4),
        "pages_per_second": round(len(read["pages"]) / max(read["seconds"], 1e-9), 2),
    }
    if document.scanned:
        pairs = zip(read["pages"], document.pages, strict=False)  # a page count that differs shows in pages_read
        row["page_char_accuracy"] = [round(char_accuracy(text, page), 4) for text, page in pairs]
        row["all_pages_ocr"] = len(read["ocr"]) == len(document.pages) and all(flag is True for flag in read["ocr"])
    return row


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def _scores(row: dict) -> list[str]:
    """Recall, precision and character accuracy, or an error and dashes."""
    if row["error"]:
        return ["error", "–", "–"]
    return [f"{row['recall']:.3f}", f"{row['precision']:.3f}", f"{row['char_accuracy']:.3f}"]


def _costs(row: dict) -> list[str]:
    """Pages per second and the peak memory added, where the read succeeded."""
    return ["–", "–"] if row["error"] else [f"{row['pages_per_second']:.1f}", f"{row['peak_added_mib']:.1f}"]


def text_table(results: list[dict]) -> str:
    header = ["document", "feature", "pages", "old recall", "old precision", "new recall", "new precision",
              "old chars", "new chars", "old pages/s", "new pages/s", "old peak MiB", "new peak MiB"]  # fmt: skip
    rows = []
    for result in results:
        (old_recall, old_precision, old_chars), (new_recall, new_precision, new_chars) = map(
            _scores, (result["old"], result["new"])
        )
        (old_speed, old_memory), (new_speed, new_memory) = map(_costs, (result["old"], result["new"]))
        rows.append([result["document"], result["feature"], str(result["pages"]), old_recall, old_precision,
                     new_recall, new_precision, old_chars, new_chars, old_speed, new_speed, old_memory,
                     new_memory])  # fmt: skip
    return markdown(header, rows)


def scan_table(results: list[dict]) -> str:
    header = ["document", "language", "pages", "OCR pages/s", "char accuracy (mean)", "char accuracy (worst page)",
              "word recall", "every page marked ocr", "peak MiB", "tesseract peak MiB"]  # fmt: skip
    rows = []
    for result in results:
        new = result["new"]
        if new["error"]:
            cells = ["error"] + ["–"] * 6
        else:
            accuracy = new["page_char_accuracy"] or [0.0]
            cells = [f"{new['pages_per_second']:.2f}", f"{statistics.mean(accuracy):.3f}", f"{min(accuracy):.3f}",
                     f"{new['recall']:.3f}", "yes" if new["all_pages_ocr"] else "no", f"{new['peak_added_mib']:.1f}",
                     f"{new['ocr_process_peak_mib']:.1f}"]  # fmt: skip
        rows.append([result["document"], result["language"], str(result["pages"]), *cells])
    return markdown(header, rows)


def errors(results: list[dict]) -> list[str]:
    return [
        f"- {name} reader, {result['document']}: {result[name]['error']}"
        for result in results
        for name in ("old", "new")
        if name in result and result[name]["error"]
    ]


def machine() -> dict:
    """What the figures were measured on: the CPU, the cores this process may use, the versions."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    versions = {}
    for package in ("pypdf", "pypdfium2"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    try:
        tesseract = subprocess.run(["tesseract", "--version"], capture_output=True, text=True, timeout=30)
        versions["tesseract"] = (tesseract.stdout or tesseract.stderr).split("\n", 1)[0].removeprefix("tesseract ")
    except (OSError, subprocess.TimeoutExpired):
        versions["tesseract"] = None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "flags": _vector_flags(), "cores": cores, "python": platform.python_version(), **versions}


def _vector_flags() -> str:
    """The CPU's vector extensions (AVX2, AVX-512, AMX): what 'fast' means differs between them."""
    with contextlib.suppress(OSError, StopIteration):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        flags = next(line.split(":", 1)[1].split() for line in lines if line.startswith("flags"))
        wanted = ("avx2", "avx512f", "avx512_bf16", "amx_tile")
        return "+".join(flag for flag in wanted if flag in flags) or "no AVX2"
    return "unknown"


def pdftotext(path: Path) -> str | None:
    """poppler's text of `path` (the reference for real PDFs), or None without poppler-utils."""
    try:
        done = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode("utf-8", "replace") if done.returncode == 0 else None


def run_real(folder: Path) -> list[dict]:
    """Each PDF under `folder`, read by both readers, scored against pdftotext."""
    results = []
    for path in sorted(folder.rglob("*.pdf")):
        reference = pdftotext(path)
        if not reference or len(reference.split()) < 50:  # no reference to score against
            continue
        result = {"document": path.name, "pages": None}
        for reader in ("old", "new"):
            read = in_subprocess(reader, path)
            row = {key: value for key, value in read.items() if key not in ("pages", "ocr")}
            if not read["error"]:
                recall, precision = word_scores("\n".join(read["pages"]), reference)
                row |= {"recall": round(recall, 4), "precision": round(precision, 4),
                        "pages_per_second": round(len(read["pages"]) / max(read["seconds"], 1e-9), 1)}  # fmt: skip
                result["pages"] = len(read["pages"])
            result[reader] = row
        results.append(result)
    return results


def real_table(results: list[dict]) -> str:
    header = ["document", "pages", "old recall", "new recall", "old precision", "new precision", "old pages/s",
              "new pages/s"]  # fmt: skip
    rows = []
    for result in results:
        old, new = result["old"], result["new"]
        cells = []
        for key, form in (("recall", ".3f"), ("precision", ".3f"), ("pages_per_second", ".1f")):
            cells += [format(row[key], form) if not row["error"] else "error" for row in (old, new)]
        rows.append([result["document"], str(result["pages"] or "–"), *cells])
    return markdown(header, rows)


def run(folder: Path, scale: int) -> dict:
    documents = write_corpus(folder, scale=scale)
    results = []
    for document in documents:
        readers = ("new",) if document.scanned else ("old", "new")
        result = {"document": document.name, "feature": document.feature, "language": document.language,
                  "pages": len(document.pages), "scanned": document.scanned}  # fmt: skip
        for reader in readers:
            result[reader] = score(document, in_subprocess(reader, document.path))
        results.append(result)
    return {"text": [row for row in results if not row["scanned"]], "scans": [row for row in results if row["scanned"]]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=5, help="multiplies the corpus's page counts (1: 27 pages)")
    parser.add_argument("--smoke", action="store_true", help="scale 1: every document, in seconds")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every figure to PATH")
    parser.add_argument("--keep", type=Path, metavar="FOLDER", help="write the corpus here and keep it")
    parser.add_argument("--real", type=Path, metavar="FOLDER", help="the PDFs under FOLDER, against pdftotext")
    args = parser.parse_args(argv)
    if args.real:
        results = run_real(args.real)
        print(f"machine: {', '.join(f'{key} {value}' for key, value in machine().items())}\n")
        print(real_table(results))
        worse = [row["document"] for row in results if not row["old"]["error"] and
                 (row["new"]["error"] or row["new"]["recall"] < row["old"]["recall"] - 0.001)]  # fmt: skip
        listed = f": {', '.join(worse)}" if worse else ""
        print(f"\nNew recall below the old one on {len(worse)} of {len(results)} PDFs{listed}")
        if problems := errors(results):
            print("\nErrors:\n" + "\n".join(problems))
        if args.json:
            args.json.write_text(json.dumps({"machine": machine(), "real": results}, indent=2) + "\n")
        return 0
    scale = 1 if args.smoke else args.scale
    if scale < 1:
        parser.error("--scale must be 1 or more")
    with tempfile.TemporaryDirectory(prefix="pdf-corpus-") as temporary:
        report = {"machine": machine(), "scale": scale, **run(args.keep or Path(temporary), scale)}
    print(f"machine: {', '.join(f'{key} {value}' for key, value in report['machine'].items())}; scale {scale}\n")
    print(text_table(report["text"]) + "\n")
    print("Scanned PDFs (new reader only):\n\n" + scan_table(report["scans"]))
    if problems := errors(report["text"] + report["scans"]):
        print("\nErrors:\n" + "\n".join(problems))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
