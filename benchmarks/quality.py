"""Answer quality, measured: the project's suite through the app's real task functions, with any model.

The suite (benchmarks/quality_suite.py) is generated: questions with gold answers and gold pages
(facts on known pages, near-duplicate distractors, a long document far over the budget, German
and French documents, HTML with headings), extraction items with gold fields, classification
items with gold labels, summaries checked for key facts. Each item runs through the Workbench
as the web page and the command line run it; `--baseline` also asks every question the plain
way (the whole document and the question in the model's own chat template, no retrieval, no
citations), so the table shows whether the pipeline helps.

    python -m benchmarks.quality --model "$(python -m tools.smollm2)" --baseline
    python -m benchmarks.quality --model tiny-random --size smoke      # the smoke test's run
    python -m benchmarks.quality --backend openai --base-url http://localhost:8000/v1 --model TOKENIZER

Metrics: answer accuracy (the answer contains a gold answer; normalized exact match; token F1),
gold page among the top 3 sources, sources per answer, citation precision (cited pages that hold
the answer), invented follow-up questions, empty and cut-off answers, field and label accuracy,
summary coverage and repeated sentences, seconds per item. A small model's scores are its own,
never Granite's.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.quality_suite import FieldItem, LabelItem, Question, SummaryItem, build_suite
from benchmarks.reading import machine
from tasks.errors import UserError
from tasks.events import Progress, TaskResult

# An answer that goes on into a question of its own: a later line asks something, or starts a
# new "Question:" / "Q:" / "A:" block, an instruction to answer, or a multiple-choice option.
INVENTED_QUESTION = re.compile(
    r"(?im)\n.*\?\s*$|^\s*(question\s*\d*\s*:|q\s*:|a\s*:|please answer|answer the following|[a-d]\)\s)"
)
_SENTENCE = re.compile(r"(?<=[.!?。])\s+|\n+")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-random", help="a model folder, a hub id or tiny-random "
                        "(with --backend openai: the served model's tokenizer)")  # fmt: skip
    parser.add_argument("--backend", choices=("transformers", "openai"), default="transformers")
    parser.add_argument("--base-url", default=None, help="openai: the server, e.g. http://localhost:8000/v1")
    parser.add_argument("--served-model", default=None, help="openai: the model's name on the server")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--size", choices=("smoke", "full"), default="full")
    parser.add_argument(
        "--budget", type=int, default=2048, help="context budget in tokens (small: the long document needs retrieval)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--baseline", action="store_true", help="also ask each question as a plain chat prompt")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--completion-prompts", action="store_true", help="ignore the model's chat template, as for a base model"
    )
    args = parser.parse_args(argv)
    workbench = _workbench(args)
    if args.completion_prompts:  # how a base model such as Granite-3.1-1B-A400M-Base is asked
        workbench.engine.chat_frame = None
    with tempfile.TemporaryDirectory() as folder:
        suite = build_suite(Path(folder), args.size)
        options = workbench.options(max_new_tokens=args.max_new_tokens)
        rows = {
            "questions": [ask(workbench, suite.folder, item, options) for item in suite.questions],
            "fields": [extract(workbench, suite.folder, item, options) for item in suite.fields],
            "labels": [classify(workbench, suite.folder, item, options) for item in suite.labels],
            "summaries": [summarize(workbench, suite.folder, item, options) for item in suite.summaries],
        }
        if args.baseline:
            rows["baseline"] = [plain_ask(workbench, suite.folder, item, args) for item in suite.questions]
    report = {"model": args.model, "size": args.size, "budget": args.budget, "machine": machine(),
              "scores": scores(rows), "items": rows}  # fmt: skip
    print(json.dumps(report, ensure_ascii=False, indent=None if args.json else 2))
    return 0


def _workbench(args: argparse.Namespace):
    from app.setup import DEFAULT_BASE_URL, ModelSettings, build_workbench

    settings = ModelSettings(model=args.model, context_budget=args.budget, backend=args.backend,
                             base_url=args.base_url or DEFAULT_BASE_URL, served_model=args.served_model,
                             api_key=args.api_key)  # fmt: skip
    workbench = build_workbench(settings)
    if workbench.engine is None:
        raise SystemExit(f"error: the model did not load: {workbench.unavailable_reason}")
    return workbench


@dataclass
class Run:
    result: TaskResult | None
    error: str | None
    seconds: float
    expected_seconds: float | None  # the wait the task announced first (the progress bar's)

    @property
    def wait_ratio(self) -> float | None:
        """How far the announced wait was off: announced / taken, or its inverse, whichever is
        larger (2.0: twice or half as long as it took)."""
        if not self.expected_seconds or not self.seconds:
            return None
        ratio = self.expected_seconds / self.seconds
        return round(max(ratio, 1 / ratio), 2)


def _run(events) -> Run:
    started, expected = time.perf_counter(), None
    try:
        for event in events:
            if isinstance(event, Progress) and event.expected_seconds and expected is None:
                expected = event.expected_seconds
            if isinstance(event, TaskResult):
                return Run(event, None, time.perf_counter() - started, expected)
        return Run(None, "no result", time.perf_counter() - started, expected)
    except UserError as exc:
        return Run(None, str(exc), time.perf_counter() - started, expected)


def _finish(run: Run) -> dict[str, Any]:
    """How the run ended, and whether an empty answer was passed off as a finished one."""
    result = run.result
    finish = result.finish_reason if result else None
    empty = result is not None and not result.text.strip()
    return {"finish": finish, "empty": empty, "empty_as_success": empty and finish == "stop",
            "cut_off": finish == "length", "wait_ratio": run.wait_ratio}  # fmt: skip


def ask(workbench, folder: Path, item: Question, options) -> dict[str, Any]:
    run = _run(workbench.ask([folder / item.document], item.question, options))
    result, error, seconds = run.result, run.error, run.seconds
    text = result.text if result else ""
    sources = (result.sources or []) if result else []
    cited = [citation["page"] for citation in (result.citations or [])] if result else []
    return {
        "kind": item.kind,
        "question": item.question,
        "answer": text,
        "error": error,
        **answer_scores(text, item.answers),
        "gold_page_top3": any(page in item.pages for source in sources[:3] for page in source["pages"]),
        "sources": len(sources),
        "citation_precision": (sum(page in item.pages for page in cited) / len(cited)) if cited else None,
        "invented_question": bool(INVENTED_QUESTION.search(text)),
        **_finish(run),
        "prompt_tokens": (result.usage or {}).get("prompt_tokens", 0) if result else 0,
        "seconds": round(seconds, 2),
    }


def plain_ask(workbench, folder: Path, item: Question, args) -> dict[str, Any]:
    """The question the plain way: the whole document (cut to the budget when longer) and the
    question in the model's chat template (a completion prompt without one); no app pipeline."""
    engine = workbench.engine
    document = workbench.text([folder / item.document])
    room = args.budget - args.max_new_tokens - 64
    cut = len(document)
    while cut and engine.count_tokens(document[:cut]) > room:
        cut = int(cut * 0.8)
    prompt = _chat_prompt(engine, f"{document[:cut]}\n\nAnswer from the document above: {item.question}")
    started = time.perf_counter()
    text = engine.generate(prompt, max_new_tokens=args.max_new_tokens).text
    seconds = time.perf_counter() - started
    return {"kind": item.kind, "question": item.question, "answer": text, "cut_document": cut < len(document),
            **answer_scores(text, item.answers), "invented_question": bool(INVENTED_QUESTION.search(text)),
            "empty": not text.strip(), "seconds": round(seconds, 2)}  # fmt: skip


def _chat_prompt(engine, message: str) -> str:
    tokenizer = getattr(engine, "tokenizer", None)
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": message}], tokenize=False,
                                             add_generation_prompt=True)  # fmt: skip
    return f"{message}\nAnswer:"


def extract(workbench, folder: Path, item: FieldItem, options) -> dict[str, Any]:
    from tasks.extract import spec_from_fields

    spec = spec_from_fields(", ".join(item.fields))
    run = _run(workbench.extract([folder / item.document], spec, options))
    result, error, seconds = run.result, run.error, run.seconds
    data = result.extraction.data if result and result.extraction else None
    values = {name: (data or {}).get(name) for name in spec.schema["properties"]} if isinstance(data, dict) else {}
    right = [name for name, gold in item.gold.items() if _contains(str(_field(values, name) or ""), [gold])]
    unfinished = (result.extraction.unfinished or {}) if result and result.extraction else {}
    return {"document": item.document, "values": values, "error": error, "valid_json": data is not None,
            "finish": result.finish_reason if result else None, "unfinished": list(unfinished),
            "field_accuracy": len(right) / len(item.gold), "seconds": round(seconds, 2)}  # fmt: skip


def _field(values: dict[str, Any], name: str) -> Any:
    """The value of field `name` (the schema's property names are the fields, maybe normalized)."""
    key = _normalize(name).replace(" ", "_")
    return next((value for field, value in values.items() if _normalize(field).replace(" ", "_") == key), None)


def classify(workbench, folder: Path, item: LabelItem, options) -> dict[str, Any]:
    run = _run(workbench.classify([folder / item.document], list(item.labels), options))
    result, error, seconds = run.result, run.error, run.seconds
    best = result.labels[0]["label"] if result and result.labels else None
    return {"document": item.document, "label": best, "gold": item.gold, "right": best == item.gold,
            "error": error, "seconds": round(seconds, 2)}  # fmt: skip


def summarize(workbench, folder: Path, item: SummaryItem, options) -> dict[str, Any]:
    run = _run(workbench.summarize([folder / item.document], options))
    result, error, seconds = run.result, run.error, run.seconds
    text = result.text if result else ""
    found = [fact for fact in item.facts if _normalize(fact) in _normalize(text)]
    usage = (result.usage or {}) if result else {}
    return {"document": item.document, "summary": text, "error": error, "coverage": len(found) / len(item.facts),
            **repetition(text), **_finish(run), "prompt_tokens": usage.get("prompt_tokens", 0),
            "generated_tokens": usage.get("generated_tokens", 0), "seconds": round(seconds, 2)}  # fmt: skip


def repetition(text: str) -> dict[str, Any]:
    """How much a text repeats itself: the share of its sentences that are repeats, and the most
    times one sentence occurs."""
    sentences = [_normalize(s) for s in _SENTENCE.split(text) if len(_normalize(s)) > 3]
    counts = Counter(sentences)
    repeats = sum(count - 1 for count in counts.values())
    return {"repeated_sentence_rate": repeats / len(sentences) if sentences else 0.0,
            "most_repeats": max(counts.values(), default=0)}  # fmt: skip


def answer_scores(text: str, answers: tuple[str, ...]) -> dict[str, Any]:
    normalized = _normalize(text)
    return {
        "contains": _contains(text, answers),
        "exact": any(normalized == _normalize(gold) for gold in answers),
        "f1": max((_f1(normalized, _normalize(gold)) for gold in answers), default=0.0),
    }


def _contains(text: str, answers) -> bool:
    normalized = f" {_normalize(text)} "
    return any(f" {_normalize(gold)} " in normalized for gold in answers if _normalize(gold))


def _normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.sub(r"[^\w.,%€$-]+|(?<!\d)[.,]|[.,](?!\d)", " ", text).split())


def _f1(answer: str, gold: str) -> float:
    predicted, expected = answer.split(), gold.split()
    common = sum((Counter(predicted) & Counter(expected)).values())
    if not common:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def scores(rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The suite's numbers: means (shares) and medians over its items."""
    questions = rows["questions"]
    summary: dict[str, Any] = {"questions": _answer_numbers(questions)}
    summary["questions"] |= {
        "gold_page_top3": _share(q["gold_page_top3"] for q in questions),
        "median_sources": statistics.median([q["sources"] for q in questions]) if questions else None,
        "citation_precision": _mean(q["citation_precision"] for q in questions if q["citation_precision"] is not None),
        "errors": sum(q["error"] is not None for q in questions),
        "empty_as_success": _share(q["empty_as_success"] for q in questions),
        "cut_off": _share(q["cut_off"] for q in questions),
        "worst_wait_ratio": max((q["wait_ratio"] for q in questions if q["wait_ratio"]), default=None),
    }
    summary["fields"] = {"field_accuracy": _mean(f["field_accuracy"] for f in rows["fields"]),
                         "valid_json": _share(f["valid_json"] for f in rows["fields"]),
                         "unfinished_runs": sum(f["finish"] == "length" for f in rows["fields"]),
                         "unfinished_runs_with_fields": sum(f["finish"] == "length" and f["valid_json"]
                                                            for f in rows["fields"])}  # fmt: skip
    summary["labels"] = {"label_accuracy": _share(item["right"] for item in rows["labels"])}
    summary["summaries"] = {
        "coverage": _mean(s["coverage"] for s in rows["summaries"]),
        "repeated_sentence_rate": _mean(s["repeated_sentence_rate"] for s in rows["summaries"]),
        "most_repeats": max((s["most_repeats"] for s in rows["summaries"]), default=0),
        "empty_as_success": _share(s["empty_as_success"] for s in rows["summaries"]),
        "worst_wait_ratio": max((s["wait_ratio"] for s in rows["summaries"] if s["wait_ratio"]), default=None),
        "seconds_per_item": _mean(s["seconds"] for s in rows["summaries"]),
    }
    if "baseline" in rows:
        summary["baseline"] = _answer_numbers(rows["baseline"])
    return summary


def _answer_numbers(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "items": len(items),
        "contains": _share(item["contains"] for item in items),
        "exact": _share(item["exact"] for item in items),
        "f1": _mean(item["f1"] for item in items),
        "invented_question": _share(item["invented_question"] for item in items),
        "empty": _share(item["empty"] for item in items),
        "seconds_per_item": _mean(item["seconds"] for item in items),
    }


def _share(values) -> float | None:
    values = list(values)
    return round(sum(bool(value) for value in values) / len(values), 3) if values else None


def _mean(values) -> float | None:
    values = list(values)
    return round(statistics.fmean(values), 3) if values else None


if __name__ == "__main__":
    sys.exit(main())
