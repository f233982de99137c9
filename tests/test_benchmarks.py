"""Smoke tests of the benchmark scripts on tiny-random, so that none breaks silently (their
figures are measured on the real-size architecture; here only that every path runs)."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import REPO_ROOT

# Every script in benchmarks/ and the test that runs it (serving's vLLM backend: tests/test_vllm.py).
SMOKE_TESTED = {
    "attention.py": "test_attention_times_torchs_kernel_and_ours_where_the_cpu_has_tiles",
    "decode_profile.py": "test_decode_profile_names_the_operators_of_one_step",
    "generation.py": "test_generation_compares_stock_and_ours_and_int8",
    "gpu_check.py": "test_gpu_check_runs_every_part_on_the_cpu",
    "long_context.py": "test_long_context_runs_and_keeps_each_sessions_cache_apart",
    "quality.py": "test_quality_runs_every_kind_of_item_and_the_baseline",
    "quality_suite.py": "test_the_quality_suites_gold_answers_are_on_their_gold_pages",
    "reading.py": "test_reading_compares_the_old_and_new_pdf_readers",
    "serving.py": "test_serving_measures_the_in_process_backend",
    "ui_latency.py": "test_ui_latency_times_a_first_question_and_a_follow_up_in_chromium",
}
# serving.py's vLLM backend runs on tests/test_vllm.py's server: test_the_serving_benchmark_measures_a_running_server


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_every_benchmark_script_has_a_smoke_test():
    scripts = {path.name for path in (REPO_ROOT / "benchmarks").glob("*.py") if "__main__" in path.read_text()}
    assert scripts == set(SMOKE_TESTED)
    assert all(name in globals() for name in SMOKE_TESTED.values())


def test_generation_compares_stock_and_ours_and_int8(tiny_checkpoint, capsys):
    from benchmarks.generation import main

    assert main(["--quick", "--json", "--model", "tiny-random"]) == 0
    report = last_json(capsys.readouterr().out)
    assert report["model"] == "tiny-random" and report["outputs_match"]
    assert report["ours_decode_tps"] > 0 and report["ours_int8_decode_tps"] > 0
    assert report["cached_question_speedup"] > 1 and report["matmul_gflops"] > 0
    bound_over_stock = report["decode_bound_tps"] / report["stock_decode_tps"]
    assert report["decode_speedup_ceiling"] == pytest.approx(bound_over_stock, rel=0.01, abs=0.01)
    assert report["ours_bf16_weights_decode_tps"] > 0 and report["ours_bf16_weights_prefill_tps"] > 0
    assert 0 <= report["int8_max_logit_error"] < 0.1  # int8 decode weights change logits a little


def test_attention_times_torchs_kernel_and_ours_where_the_cpu_has_tiles(capsys):
    from benchmarks.attention import main
    from model import native

    assert main(["--smoke", "--json"]) == 0
    rows = last_json(capsys.readouterr().out)["rows"]
    assert [(row["past"], row["new"]) for row in rows] == [(0, 64), (64, native.MIN_ATTENTION_ROWS)]
    assert all(row["torch_ms"] > 0 and row["torch_gflops"] > 0 for row in rows)
    module = native.kernels()
    has_tiles = module is not None and module.amx_available()
    assert all(("ours_ms" in row) == has_tiles for row in rows)


def test_decode_profile_names_the_operators_of_one_step(tiny_checkpoint, capsys):
    from benchmarks.decode_profile import main

    assert main(["--json", "--model", "tiny-random", "--steps", "4", "--top", "5"]) == 0
    report = last_json(capsys.readouterr().out)
    assert report["step_ms"] > 0 and report["ops_per_step"] > 0 and report["operators_ms_per_step"] > 0
    assert len(report["top_ops"]) == 5 and all(row["op"] and row["ms_per_step"] >= 0 for row in report["top_ops"])


def test_gpu_check_runs_every_part_on_the_cpu(tiny_checkpoint, capsys):
    from benchmarks.gpu_check import main

    status = main(["--smoke"])
    out = capsys.readouterr().out
    report = json.loads(out[out.index("{\n") :])  # the closing summary, after one line per part
    failed = {name: part for name, part in report.items() if isinstance(part, dict) and not part["ok"]}
    assert status == 0 and not failed
    assert report["sizes"]["device"] == "cpu" and report["bf16"]["long_prefill_tokens"] >= 3600


def test_long_context_runs_and_keeps_each_sessions_cache_apart(tiny_checkpoint, capsys):
    from benchmarks.long_context import main

    assert main(["--model", "tiny-random", "--tokens", "600", "--chunk", "256", "--json"]) == 0
    report = last_json(capsys.readouterr().out)
    assert report["same_first_token"]
    cached = report["cached_question"]
    assert cached["cached_tokens"] > 500 and cached["other_session_cached_tokens"] == 0


SERVING_SMOKE = ["--model", "tiny-random", "--clients", "1,2", "--questions", "1", "--document-tokens", "128",
                 "--new-tokens", "4", "--json"]  # fmt: skip


def test_serving_measures_the_in_process_backend(tiny_checkpoint, capsys):
    from benchmarks.serving import main

    assert main([*SERVING_SMOKE, "--backends", "in-process"]) == 0
    rounds = json.loads(capsys.readouterr().out)["backends"]["in-process"]["rounds"]
    assert [row["clients"] for row in rounds] == [1, 2]
    assert [row["generated_tokens"] for row in rounds] == [4, 8]


def test_serving_refuses_an_unknown_backend(capsys):
    from benchmarks.serving import main

    with pytest.raises(SystemExit):
        main([*SERVING_SMOKE, "--backends", "in-process,tgi"])
    assert "unknown backend(s) tgi" in capsys.readouterr().err


def test_reading_compares_the_old_and_new_pdf_readers(tmp_path, capsys):
    from benchmarks.reading import main

    assert main(["--smoke", "--json", str(tmp_path / "reading.json")]) == 0
    out = capsys.readouterr().out
    assert "| document | feature | pages | old recall | old precision | new recall | new precision |" in out
    assert "| plain.pdf | plain | 3 |" in out and "| scan-de.pdf | de | 2 |" in out
    report = json.loads((tmp_path / "reading.json").read_text())
    rows = {row["document"]: row for row in report["text"]}
    assert len(rows) == 11 and [row["document"] for row in report["scans"]] == ["scan-en.pdf", "scan-de.pdf"]
    assert rows["plain.pdf"]["old"]["recall"] > 0.99 and rows["plain.pdf"]["new"]["recall"] > 0.99
    assert rows["two-columns.pdf"]["old"]["char_accuracy"] < 0.5  # pypdf reads across the two columns
    assert rows["two-columns.pdf"]["new"]["char_accuracy"] > 0.98  # PDFium with tasks.columns does not
    scans = {row["document"]: row["new"] for row in report["scans"]}
    assert all(scan["all_pages_ocr"] and min(scan["page_char_accuracy"]) >= 0.95 for scan in scans.values())


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils is not installed (.ci/run installs it)")
def test_reading_scores_real_pdfs_against_pdftotext(tmp_path, capsys):
    from benchmarks.pdf_corpus import write_corpus
    from benchmarks.reading import main

    folder = tmp_path / "real"
    folder.mkdir()
    plain = next(pdf for pdf in write_corpus(tmp_path) if pdf.name == "plain.pdf")
    plain.path.rename(folder / "plain.pdf")
    assert main(["--real", str(folder), "--json", str(tmp_path / "real.json")]) == 0
    out = capsys.readouterr().out
    assert "| plain.pdf | 3 |" in out and "New recall below the old one on 0 of 1 PDFs" in out
    [row] = json.loads((tmp_path / "real.json").read_text())["real"]
    assert row["old"]["recall"] > 0.98 and row["new"]["recall"] > 0.98


@pytest.mark.browser
def test_ui_latency_times_a_first_question_and_a_follow_up_in_chromium(tiny_checkpoint, capsys):
    from benchmarks.ui_latency import main
    from tests.browser import chromium_executable

    chromium_executable()  # skips (or fails where it is required) without Debian's chromium
    assert main(["--model", "tiny-random", "--words", "300", "--json"]) == 0
    report = last_json(capsys.readouterr().out)
    assert report["first_question_first_token_s"] > 0 and report["follow_up_first_token_s"] > 0
    assert "tokens" in report["document"] and report["machine"]["cores"] >= 1


def test_quality_runs_every_kind_of_item_and_the_baseline(tiny_checkpoint, capsys):
    from benchmarks.quality import main

    assert main(["--model", "tiny-random", "--size", "smoke", "--baseline", "--max-new-tokens", "16", "--json"]) == 0
    report = last_json(capsys.readouterr().out)
    scores = report["scores"]
    assert scores["questions"]["items"] == scores["baseline"]["items"] == 1
    assert scores["questions"]["gold_page_top3"] in (0.0, 1.0) and scores["questions"]["median_sources"] >= 1
    assert scores["fields"]["valid_json"] in (0.0, 1.0) and scores["labels"]["label_accuracy"] in (0.0, 1.0)
    assert 0.0 <= scores["summaries"]["coverage"] <= 1.0


def test_the_quality_suites_gold_answers_are_on_their_gold_pages(tmp_path):
    from benchmarks.quality import INVENTED_QUESTION, answer_scores, repetition
    from benchmarks.quality_suite import build_suite
    from tasks.documents import load_document

    suite = build_suite(tmp_path, "full")
    assert len(suite.questions) >= 12 and suite.fields and suite.labels and suite.summaries
    for question in suite.questions:
        document = load_document(suite.folder / question.document)
        pages = [page.number for page in document.pages if question.answers[0].casefold() in page.text.casefold()]
        assert pages and set(pages) <= set(question.pages), (question.question, pages)
    assert answer_scores("It opened in 2019.", ("2019",)) == {"contains": True, "exact": False, "f1": 0.4}
    assert repetition("It is about X. It is about X. It is about X. Then Y.")["most_repeats"] == 3
    invented = ("2,750 kilograms\n\nWhat is the answer to this question?\n\nA:", "Paris.\nQuestion 2: and Rome?")
    assert all(INVENTED_QUESTION.search(text) for text in invented)
    assert not any(
        INVENTED_QUESTION.search(text) for text in ("It opened in 2019.", "Is it Lisbon? No: Porto, in 2021.")
    )


def test_quality_runs_through_a_model_server_too(tiny_checkpoint, capsys):
    from benchmarks.quality import main
    from tests.fake_openai import FakeOpenAI, Script

    server = FakeOpenAI(Script(pieces=["The", " office", " is", " in", " Tallinn."], finish_reason="stop"))
    try:
        argv = ["--backend", "openai", "--base-url", server.base_url, "--model", str(tiny_checkpoint),
                "--size", "smoke", "--max-new-tokens", "16", "--json"]  # fmt: skip
        assert main(argv) == 0
    finally:
        server.close()
    report = last_json(capsys.readouterr().out)
    assert report["items"]["questions"][0]["answer"] == "The office is in Tallinn."
    assert report["scores"]["questions"]["contains"] == 1.0  # the smoke item asks where the company is based
