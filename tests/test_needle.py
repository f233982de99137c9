"""check-context: the needle-in-a-haystack long-context check (tasks/needle.py and the CLI)."""

import json
import re
from types import SimpleNamespace

import pytest

from tasks import needle
from tasks.errors import InvalidRequest


class _ReadingEngine:
    """Answers with the code it finds in the text, when it 'sees' that far (`reach` tokens)."""

    context_limit = 20_000
    is_remote = False
    on_cpu = True
    model_name = "reader"

    def __init__(self, reach: int = 10**9):
        self.reach = reach
        self.prompts: list[str] = []

    def count_tokens(self, text: str) -> int:
        return len(text) // 4

    def stream(self, prompt, *, prefix="", max_new_tokens, stop=(), **options):
        self.prompts.append(prefix)
        visible = prefix[: self.reach * 4]
        found = re.search(r"blue door of the lighthouse is (\d+)", visible)
        yield SimpleNamespace(text=f" {found.group(1)}." if found else " unknown.")


def test_sizes_and_depths_are_parsed_and_bad_ones_explained():
    assert needle.parse_lengths("4k, 16k,2048") == [4096, 16384, 2048]
    assert needle.parse_depths("0,50,100") == [0, 50, 100]
    for bad in ("", "4m", "0", "k"):
        with pytest.raises(InvalidRequest, match="--lengths"):
            needle.parse_lengths(bad)
    for bad in ("", "101", "-5", "half"):
        with pytest.raises(InvalidRequest, match="--depths"):
            needle.parse_depths(bad)


def test_a_reader_that_sees_everything_finds_every_needle_at_every_depth():
    engine = _ReadingEngine()
    report = needle.run(engine, [1000, 4000], [0, 50, 100], trials=2)
    assert len(report.trials) == 12 and all(trial.correct for trial in report.trials)
    assert report.to_json()["overall"] == 1.0
    assert all(abs(trial.tokens - trial.length) < 0.1 * trial.length + 60 for trial in report.trials)
    first, last = engine.prompts[0], engine.prompts[4]  # depth 0 and depth 100 of the first length
    assert first.startswith("The secret code") and last.rstrip().endswith(f"is {report.trials[4].code}.")


def test_a_reader_that_sees_only_the_start_misses_the_deep_needles_and_too_long_is_skipped():
    report = needle.run(_ReadingEngine(reach=500), [4000, 30_000], [0, 50, 100])
    assert [report.accuracy(4000, depth) for depth in (0, 50, 100)] == [1.0, 0.0, 0.0]
    assert report.skipped == ["30,000 tokens: longer than the model's context limit of 20,000"]
    assert "skipped 30,000 tokens" in needle.table(report)


def test_check_context_runs_on_tiny_random_with_a_table_and_a_heatmap(cli, tmp_path, tiny_checkpoint):
    plot = tmp_path / "needle.png"
    result = cli("check-context", "--model", "tiny-random", "--lengths", "1k,2k", "--depths", "0,100",
                 "--plot", str(plot), "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data["accuracy"]) == {"1024", "2048"} and set(data["accuracy"]["1024"]) == {"0", "100"}
    assert all(0 <= value <= 1 for row in data["accuracy"].values() for value in row.values())
    assert len(data["trials"]) == 4 and plot.read_bytes().startswith(b"\x89PNG")
    text = cli("check-context", "--model", "tiny-random", "--lengths", "1k", "--depths", "50")
    assert text.returncode == 0 and re.search(r"1,024\s+\d+%", text.stdout)
    bad = cli("check-context", "--model", "tiny-random", "--lengths", "huge")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --lengths")
