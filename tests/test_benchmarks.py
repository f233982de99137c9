"""Smoke tests of the benchmark scripts on tiny-random, so that none breaks silently (their
figures are measured on the real-size architecture; here only that every path runs)."""

from __future__ import annotations

import json


def test_long_context_runs_and_keeps_each_sessions_cache_apart(tiny_checkpoint, capsys):
    from benchmarks.long_context import main

    assert main(["--model", "tiny-random", "--tokens", "600", "--chunk", "256", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["same_first_token"]
    cached = report["cached_question"]
    assert cached["cached_tokens"] > 500 and cached["other_session_cached_tokens"] == 0
