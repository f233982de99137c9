"""`--quant int8` on the CPU: int8 decode weights beside the fp32 prefill weights."""

import copy

import pytest
import torch

from model import native
from model.engine import Engine
from model.granitemoe import GraniteMoe
from model.layers import Matrix
from model.loader import load_model
from model.quant8 import Int8Experts, Int8Matrix, int8_product, quantize_int8, quantize_rows
from model.runtime import Hardware, Runtime, decide_runtime

PROMPT = "Der Bericht beschreibt den Umsatz. この文書は会社の売上"


def test_int8_matrix_multiplies_like_fp32():
    matrix = torch.randn(384, 256)
    states = torch.randn(1, 256)
    int8 = Int8Matrix(Matrix(matrix))
    got = int8(states)
    want = states @ matrix.T
    assert got.dtype == torch.float32
    assert (got - want).abs().max() < 0.02 * want.abs().max()


def test_the_native_int8_kernel_and_torchs_agree():
    """Our kernel (fp32 activations) and torch's (bf16 activations: its fallback) compute the same
    product up to the bf16 rounding of the activations."""
    data, scale = quantize_rows(torch.randn(96, 128))
    states = torch.randn(3, 128)
    exact = states @ (data.float() * scale[:, None]).T
    ours = native.kernels().small_linear(states, data, scale)
    theirs = torch.ops.aten._weight_int8pack_mm(states.bfloat16(), data, scale.bfloat16()).float()
    assert torch.allclose(ours, exact, atol=1e-4, rtol=1e-4)
    assert (theirs - exact).abs().max() < 0.02 * exact.abs().max()
    with torch.inference_mode():
        assert torch.allclose(int8_product(states, data, scale), exact, atol=1e-4, rtol=1e-4)


def test_runtime_offers_int8_on_the_cpu_only():
    assert decide_runtime("cpu", "int8", Hardware(False)) == Runtime("cpu", "float32", "int8")
    with pytest.raises(ValueError, match="CPU's decode path"):
        decide_runtime("cuda", "int8", Hardware(True, True))


def test_int8_decode_stays_close_and_prefill_stays_fp32(tiny_stock):
    reference = GraniteMoe.from_stock(tiny_stock)
    model = GraniteMoe.from_stock(copy.deepcopy(tiny_stock))
    assert quantize_int8(model) == 2 * (2 + 2 * 4) + 1  # per layer: qkv, o, 4 experts x 2; and the head
    assert sum(isinstance(m, Int8Experts) for m in model.modules()) == 2
    assert isinstance(model.head, Int8Matrix)
    ids = torch.tensor([5, 17, 99, 311, 42, 7] * 4)  # more rows than the native kernels take: fp32
    with torch.inference_mode():
        full_prefill = reference(ids, reference.new_cache(), keep=0)
        dual_prefill = model(ids, model.new_cache(), keep=0)
        full_step = reference(ids[:1], reference.new_cache())
        int8_step = model(ids[:1], model.new_cache())  # one token: the int8 weights
    assert torch.allclose(dual_prefill, full_prefill, atol=1e-5)
    assert (int8_step - full_step).abs().max() < 0.05 * full_step.abs().max()
    assert not torch.equal(int8_step, full_step)


def test_loader_and_engine_with_int8(tiny_checkpoint):
    loaded = load_model("tiny-random", Runtime("cpu", "float32", "int8"))
    fp32 = load_model("tiny-random", Runtime("cpu", "float32", "none"))
    assert loaded.report.quantization == "int8"
    assert loaded.report.weight_bytes > fp32.report.weight_bytes  # both copies are kept
    assert Engine(loaded).generate(PROMPT, max_new_tokens=12).generated_tokens == 12


def test_prefill_uses_fp32_even_for_an_expert_with_one_token(tiny_loaded):
    experts = tiny_loaded.model.layers[0].experts
    dual = Int8Experts(experts)
    states = torch.randn(20, experts.hidden)  # more rows than int8 serves (native.MAX_ROWS)
    index = torch.tensor([[0, 1]] * 19 + [[2, 3]])  # experts 2 and 3 get a single token each
    weights = torch.full((20, 2), 0.5)
    with torch.inference_mode():
        assert torch.allclose(dual(states, index, weights), experts(states, index, weights), atol=1e-5)


def test_without_native_kernels_int8_decode_uses_torchs_kernel(tiny_loaded, monkeypatch):
    dual = Int8Experts(tiny_loaded.model.layers[0].experts)
    state, chosen, weights = torch.randn(1, dual.hidden), torch.tensor([1, 3]), torch.tensor([0.6, 0.4])
    with torch.inference_mode():
        native_out = dual.one_token(state, chosen, weights)
        monkeypatch.setenv(native.SWITCH, "0")
        fallback = dual.one_token(state, chosen, weights)
    assert (native_out - fallback).abs().max() < 0.02 * native_out.abs().max()


def test_matrices_the_int8_kernel_cannot_take_stay_fp32():
    assert isinstance(Int8Matrix(Matrix(torch.randn(8, 48))), Int8Matrix)
    model = torch.nn.Module()
    model.layers, model.head = [], Matrix(torch.randn(8, 30))
    odd = model.head
    assert quantize_int8(model) == 0
    assert model.head is odd
