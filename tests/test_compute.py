"""The one compute thread (model/compute.py) that runs all model work."""

from __future__ import annotations

import threading

import pytest
import torch

from model import compute
from model.compute import ComputeThread


def test_work_from_many_threads_runs_on_one_thread():
    worker = ComputeThread(name="test-compute")
    seen, results = [], []

    def job(value: int) -> int:
        seen.append(threading.current_thread().name)
        return value * 2

    threads = [threading.Thread(target=lambda v=v: results.append(worker.run(job, v))) for v in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [v * 2 for v in range(8)]
    assert set(seen) == {"test-compute"}


def test_errors_reach_the_caller_and_the_thread_goes_on():
    worker = ComputeThread(name="test-errors")
    with pytest.raises(ZeroDivisionError):
        worker.run(lambda: 1 / 0)
    assert worker.run(lambda: "still here") == "still here"


def test_a_nested_call_runs_in_place_instead_of_waiting_for_itself():
    worker = ComputeThread(name="test-nested")
    assert worker.run(lambda: worker.run(lambda: threading.current_thread().name)) == "test-nested"


def test_the_callers_grad_and_inference_modes_apply():
    worker = ComputeThread(name="test-modes")
    modes = lambda: (torch.is_grad_enabled(), torch.is_inference_mode_enabled())  # noqa: E731
    with torch.inference_mode():
        assert worker.run(modes) == (False, True)
    with torch.no_grad():
        assert worker.run(modes) == (False, False)
    assert worker.run(modes) == (True, False)


def test_steps_advance_there_and_close_the_iterator_there_when_the_caller_stops():
    where, closed = [], []

    def numbers():
        try:
            for value in range(100):
                where.append(threading.current_thread().name)
                yield value
        finally:
            closed.append(threading.current_thread().name)

    taken = []
    for value in compute.steps(numbers()):
        taken.append(value)
        if value == 2:
            break
    assert taken == [0, 1, 2]
    assert set(where) == {"granite-compute"} and closed == ["granite-compute"]


def test_the_engine_runs_its_model_on_the_compute_thread(tiny_engine):
    names = []
    layer = tiny_engine.model.layers[0]
    handle = layer.register_forward_hook(lambda *_: names.append(threading.current_thread().name))
    try:
        outcome = []
        client = threading.Thread(target=lambda: outcome.append(tiny_engine.generate("Hello there", max_new_tokens=3)))
        client.start()
        client.join()
    finally:
        handle.remove()
    assert outcome and outcome[0].generated_tokens == 3
    assert names and set(names) == {"granite-compute"}
