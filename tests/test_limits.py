"""Load limits on the tiny-random model: a GPU out-of-memory error (simulated inside a layer) is
retried with smaller prefill chunks or ends in a clear message, and a request's time limit stops it
with the text so far; either way the engine serves the next request at once."""

import math
import threading
import time

import pytest
import torch

from app.cli_parser import build_parser, time_limit
from model.engine import Engine
from model.request_state import GpuOutOfMemory
from tasks.errors import CapacityError, InvalidRequest
from tasks.events import Progress, TaskResult
from tasks.options import TaskOptions
from tasks.workbench import Workbench

DOC = "[Page 1]\nThe Berlin office opened on 3 March 2024 with 45 employees. " * 12
QUESTION = "\nQuestion: When did the Berlin office open?\nAnswer:"
MEMORY_MESSAGE = r"the GPU ran out of memory for this request \(\d+ prompt tokens\); try a smaller context budget"


def _new_tokens(args, kwargs) -> int:
    hidden = args[0] if args else kwargs["hidden_states"]  # (new positions, hidden), for ours
    return hidden.shape[-2]


class Hook:
    """A forward pre-hook on one layer of the tiny model, removed on exit."""

    def __init__(self, model, hook, layer: int = 1):
        self.layer, self.hook, self.model = layer, hook, model

    def __enter__(self):
        self.handle = self.model.layers[self.layer].register_forward_pre_hook(self.hook, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def out_of_memory_above(tokens: int, times: int = 10**9):
    """Raise CUDA's out-of-memory error (it exists in CPU builds too) for inputs longer than
    `tokens`, the first `times` times. On layer 1, layer 0 has already written the chunk to the
    cache, as in a real failure halfway through the model."""
    calls = {"n": 0}

    def hook(module, args, kwargs):
        if _new_tokens(args, kwargs) > tokens and calls["n"] < times:
            calls["n"] += 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    return hook


class StoppedClock:
    """time.monotonic() stopped for the rest of the test; the model's forward passes move it on (a
    hook), so a deadline falls after a known amount of work however fast this machine is."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.now = time.monotonic()
        monkeypatch.setattr(time, "monotonic", lambda: self.now)

    def ticking(self, seconds: float, only_tokens: int | None = None):
        """A hook: every forward pass (of `only_tokens` new tokens, when given) takes `seconds`."""

        def hook(module, args, kwargs):
            if only_tokens is None or _new_tokens(args, kwargs) == only_tokens:
                self.now += seconds

        return hook


def forward_passes(model, run) -> int:
    """How many forward passes `run()` makes: its work, where seconds would measure this machine."""
    passes = []
    with Hook(model, lambda module, args, kwargs: passes.append(1)):
        run()
    return len(passes)


@pytest.fixture
def engine(tiny_loaded):
    return Engine(tiny_loaded, prefill_chunk=64, min_prefill_chunk=8)


@pytest.fixture(scope="module")
def reference(tiny_loaded):
    return Engine(tiny_loaded, prefix_cache_bytes=0)


def test_out_of_memory_in_the_prefill_is_retried_in_smaller_chunks(tiny_loaded, engine, reference):
    expected = reference.generate(QUESTION, prefix=DOC, max_new_tokens=20)
    with Hook(tiny_loaded.model, out_of_memory_above(16)):
        chunks = list(engine.stream(QUESTION, prefix=DOC, max_new_tokens=20))
    notes = tuple(f"Ran out of GPU memory; retrying with {n}-token chunks" for n in (32, 16))
    assert chunks[0].notes == notes and not chunks[0].text  # said before the answer
    assert chunks[-1].notes == notes and chunks[-1].finish_reason == "length"
    assert "".join(c.text for c in chunks) == expected.text
    # The prefix cache holds the document, correctly: the next question reuses it and matches.
    again = engine.generate(QUESTION, prefix=DOC, max_new_tokens=20)
    assert again.cached_tokens > 0 and again.text == expected.text and not again.notes


def test_out_of_memory_while_writing_is_retried_once(tiny_loaded, engine, reference):
    expected = reference.generate(QUESTION, prefix=DOC, max_new_tokens=20)
    calls = {"n": 0}

    def fail_third_step(module, args, kwargs):
        if _new_tokens(args, kwargs) == 1:
            calls["n"] += 1
            if calls["n"] == 3:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with Hook(tiny_loaded.model, fail_third_step):
        result = engine.generate(QUESTION, prefix=DOC, max_new_tokens=20)
    assert result.text == expected.text and result.generated_tokens == 20
    assert result.notes == ("Ran out of GPU memory while writing; freed memory and went on",)


def test_persistent_out_of_memory_is_a_clear_error_and_the_engine_lives_on(tiny_loaded, engine, reference):
    engine.generate(QUESTION, prefix=DOC.replace("Berlin", "Paris"), max_new_tokens=2)  # another cached document
    with Hook(tiny_loaded.model, out_of_memory_above(4)), pytest.raises(GpuOutOfMemory, match=MEMORY_MESSAGE):
        list(engine.stream(QUESTION, prefix=DOC, max_new_tokens=20))
    assert len(engine.prefix_cache) == 0  # the memory went back: no half-read or other document is kept
    expected = reference.generate(QUESTION, prefix=DOC, max_new_tokens=20)
    assert engine.generate(QUESTION, prefix=DOC, max_new_tokens=20).text == expected.text


def test_an_out_of_memory_message_from_another_backend_is_recognised(tiny_loaded, engine):
    def hook(module, args, kwargs):
        raise RuntimeError("MPS backend out of memory (MPS allocated: 8.00 GB)")

    with Hook(tiny_loaded.model, hook), pytest.raises(GpuOutOfMemory, match=MEMORY_MESSAGE):
        engine.score("The committee met on", [" Monday"], prefix=DOC)
    assert engine.score("The committee met on", [" Monday"], prefix=DOC)[0] < 0


def test_tasks_show_the_retry_and_turn_a_persistent_failure_into_a_user_error(tiny_loaded, engine, tmp_path):
    path = tmp_path / "office.txt"
    path.write_text(DOC.replace("[Page 1]\n", ""), encoding="utf-8")
    workbench = Workbench(engine)
    expected = list(Workbench(Engine(tiny_loaded)).ask(path, "When did it open?", TaskOptions(max_new_tokens=16)))
    with Hook(tiny_loaded.model, out_of_memory_above(16)):
        events = list(workbench.ask(path, "When did it open?", TaskOptions(max_new_tokens=16)))
    messages = [e.message for e in events if isinstance(e, Progress)]
    assert "Ran out of GPU memory; retrying with 16-token chunks" in messages
    result = events[-1]
    assert isinstance(result, TaskResult) and result.text == expected[-1].text
    assert result.notes == tuple(f"Ran out of GPU memory; retrying with {n}-token chunks" for n in (32, 16))
    with Hook(tiny_loaded.model, out_of_memory_above(0)), pytest.raises(CapacityError, match=MEMORY_MESSAGE):
        list(workbench.summarize(path, TaskOptions(max_new_tokens=16)))
    with Hook(tiny_loaded.model, out_of_memory_above(0)), pytest.raises(CapacityError, match=MEMORY_MESSAGE):
        list(workbench.classify(path, "memo,invoice", TaskOptions()))
    assert list(workbench.ask(path, "When did it open?", TaskOptions(max_new_tokens=16)))[-1].text == result.text


def test_a_time_limit_stops_the_answer_and_keeps_the_text_so_far(tiny_loaded, reference, monkeypatch):
    model, engine = tiny_loaded.model, Engine(tiny_loaded)
    engine.generate(QUESTION, prefix=DOC, max_new_tokens=1)  # the document is read before the clock starts
    usual = forward_passes(model, lambda: next(engine.stream(QUESTION, prefix=DOC, max_new_tokens=5)))
    clock = StoppedClock(monkeypatch)
    with Hook(model, clock.ticking(1.0, only_tokens=1)):  # each new token takes a second
        result = engine.generate(QUESTION, prefix=DOC, max_new_tokens=2000, deadline=clock.now + 10)
    assert result.finish_reason == "time_limit" and 0 < result.generated_tokens <= 12  # 10 s: 10 tokens, about
    assert result.text == reference.generate(QUESTION, prefix=DOC, max_new_tokens=result.generated_tokens).text
    # The next request starts at once (no more work than before), with the document still cached.
    assert forward_passes(model, lambda: next(engine.stream(QUESTION, prefix=DOC, max_new_tokens=5))) <= usual
    assert engine.generate(QUESTION, prefix=DOC, max_new_tokens=5).cached_tokens > 0


@pytest.mark.parametrize("stop", ["time_limit", "cancelled"])
def test_a_stop_during_the_prefill_leaves_the_engine_ready(tiny_loaded, reference, stop, monkeypatch):
    model = tiny_loaded.model
    expected = reference.generate(QUESTION, prefix=DOC, max_new_tokens=20).text
    engine = Engine(tiny_loaded, prefill_chunk=16)
    fresh = lambda: Engine(tiny_loaded, prefill_chunk=16).generate(QUESTION, prefix=DOC, max_new_tokens=1)  # noqa: E731
    usual = forward_passes(model, fresh)  # the document's 12 chunks, the question's and one token
    clock, cancel, chunks = StoppedClock(monkeypatch), threading.Event(), []
    deadline = clock.now + 2.5 if stop == "time_limit" else None

    def read_chunk(module, args, kwargs):  # each chunk takes a second; a user cancels during the third
        chunks.append(_new_tokens(args, kwargs))
        clock.now += 1.0
        if stop == "cancelled" and len(chunks) == 3:
            cancel.set()

    with Hook(model, read_chunk):
        result = engine.generate(QUESTION, prefix=DOC, max_new_tokens=50, deadline=deadline, cancel=cancel)
    assert result.finish_reason == stop and result.generated_tokens == 0 and result.text == ""
    assert chunks == [16, 16, 16] and usual > 12  # it stopped at the next chunk, not at the end of the document
    stream = engine.stream(QUESTION, prefix=DOC, max_new_tokens=20)
    first: list = []
    assert forward_passes(model, lambda: first.append(next(stream))) <= usual  # nothing left over to finish first
    assert first[0].text + "".join(chunk.text for chunk in stream) == expected  # no half-read document is kept


def test_map_reduce_shares_one_deadline_across_its_generations(tiny_engine, tmp_path, monkeypatch):
    deadlines, late = [], {"by": 0.0}
    now = time.monotonic()  # a stopped clock that jumps when told: the test does not depend on the CPU's speed
    monkeypatch.setattr(time, "monotonic", lambda: now + late["by"])

    class Recording:
        def __getattr__(self, name):
            return getattr(tiny_engine, name)

        def throughput(self):  # fast enough for the document: the summary is not refused up front
            return 1e6, 1e4

        def stream(self, prompt, **options):
            deadlines.append(options["deadline"])
            if len(deadlines) == 2:
                late["by"] = 60.0  # the first part took a minute: the second is past the deadline
            return tiny_engine.stream(prompt, **options)

    path = tmp_path / "ledger.txt"
    path.write_text("\n\n".join(f"Section {n}. The committee approved invoice {n * 101}." * 6 for n in range(40)))
    workbench = Workbench(Recording(), context_budget=1024)
    events = list(workbench.summarize(path, workbench.options(max_new_tokens=32, time_limit=30)))
    result = events[-1]
    parts = next(e.total for e in events if isinstance(e, Progress) and e.message.startswith("Summarizing part 1"))
    assert result.strategy == "map-reduce" and result.finish_reason == "time_limit"
    assert len(deadlines) == 2 < parts and len(set(deadlines)) == 1  # one deadline; no later part is read
    assert len(result.sections) == 1 and result.sections[0]["summary"]  # the part done is kept
    assert 0 < result.usage["generated_tokens"] <= 32  # the part done is counted; the stopped one wrote nothing
    assert any(isinstance(e, Progress) and e.message == "Stopped at the time limit of 30 seconds" for e in events)


@pytest.mark.parametrize("seconds", [0, -1, math.nan, math.inf])
def test_the_time_limit_is_checked(fake_engine, seconds):
    from tasks.summarize import summarize

    with pytest.raises(InvalidRequest, match="time limit"):
        list(summarize([], TaskOptions(time_limit=seconds), fake_engine))


def test_the_clock_starts_when_the_task_starts():
    options = TaskOptions(time_limit=30)
    assert options.deadline is None and TaskOptions().started().deadline is None
    started = options.started()
    assert started.deadline == pytest.approx(time.monotonic() + 30, abs=1)
    assert started.started() is started and started == options  # a running task keeps its deadline


def test_time_limit_flags():
    parse = build_parser().parse_args
    assert time_limit(parse([]), 600) == 600  # serving: the default
    assert time_limit(parse(["--time-limit", "0"]), 600) is None  # 0: no limit
    assert time_limit(parse(["summarize", "a.pdf"]), None) is None  # the commands: none by default
    assert parse(["summarize", "a.pdf", "--time-limit", "2.5"]).time_limit == 2.5
    assert parse(["--time-limit", "7", "ask", "a.pdf", "Why?"]).time_limit == 7
    for bad in ("-1", "soon", "nan", "inf"):
        with pytest.raises(InvalidRequest, match="--time-limit: expected a number of seconds"):
            parse(["--time-limit", bad])


def test_the_command_line_stops_at_its_time_limit(cli, tmp_path, tiny_checkpoint):
    path = tmp_path / "office.txt"
    path.write_text(DOC * 4, encoding="utf-8")
    done = cli("--model", "tiny-random", "summarize", str(path), "--time-limit", "0.01", "--json")
    assert done.returncode == 0, done.stderr
    assert '"finish_reason": "time_limit"' in done.stdout
