"""The engine on a CUDA GPU (marked `gpu`: excluded by default, run with `pytest -m gpu` on a GPU)."""

import pytest
import torch

from model.engine import Engine
from model.loader import load_model
from model.runtime import Runtime, decide_runtime, detect_hardware
from tests.test_engine import cancel_after_first_chunk

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

PROMPT = "Der Bericht beschreibt den Umsatz. この文書は会社の売上"


def test_auto_runtime_picks_the_gpu():
    runtime = decide_runtime("auto", "auto", detect_hardware())
    assert runtime.device == "cuda" and runtime.dtype in ("bfloat16", "float16")


def test_tiny_random_streams_on_the_gpu_like_on_the_cpu(tiny_checkpoint, tiny_engine):
    gpu = Engine(load_model("tiny-random", Runtime("cuda", "float32", "none")))
    assert next(gpu.model.parameters()).is_cuda
    assert gpu.generate(PROMPT, max_new_tokens=32).text == tiny_engine.generate(PROMPT, max_new_tokens=32).text


def test_cancel_on_the_gpu(tiny_checkpoint):
    engine = Engine(load_model("tiny-random", decide_runtime("cuda", "auto", detect_hardware())))
    assert cancel_after_first_chunk(engine, PROMPT)[-1].finish_reason == "cancelled"
