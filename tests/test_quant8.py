"""`--quant int8` on the CPU: int8 decode weights beside the fp32 prefill weights."""

import copy

import pytest
import torch

from model.engine import Engine
from model.loader import load_model
from model.quant8 import DualExperts, DualLinear, Int8Matrix, quantize_int8
from model.runtime import Hardware, Runtime, decide_runtime

PROMPT = "Der Bericht beschreibt den Umsatz. この文書は会社の売上"


def test_int8_matrix_multiplies_like_fp32():
    matrix = torch.randn(384, 256)
    states = torch.randn(1, 256)
    got = Int8Matrix(matrix).mul(states)
    want = states @ matrix.T
    assert got.dtype == torch.float32
    assert (got - want).abs().max() < 0.02 * want.abs().max()


def test_runtime_offers_int8_on_the_cpu_only():
    assert decide_runtime("cpu", "int8", Hardware(False)) == Runtime("cpu", "float32", "int8")
    with pytest.raises(ValueError, match="CPU's decode path"):
        decide_runtime("cuda", "int8", Hardware(True, True))


def test_int8_decode_stays_close_and_prefill_stays_fp32(tiny_stock):
    model = copy.deepcopy(tiny_stock)
    assert quantize_int8(model) == 2 * (2 * 4 + 4) + 1  # per layer: 4 experts x 2, q/k/v/o; and the head
    assert sum(isinstance(m, DualExperts) for m in model.modules()) == 2
    assert isinstance(model.lm_head, DualLinear)
    ids = torch.tensor([[5, 17, 99, 311, 42, 7]])
    with torch.inference_mode():
        full_prefill = tiny_stock(input_ids=ids).logits
        dual_prefill = model(input_ids=ids).logits  # several tokens: the fp32 weights
        full_step = tiny_stock(input_ids=ids[:, :1]).logits
        int8_step = model(input_ids=ids[:, :1]).logits  # one token: the int8 weights
    assert torch.allclose(dual_prefill[:, :-1], full_prefill[:, :-1], atol=1e-5)
    assert (int8_step - full_step).abs().max() < 0.05 * full_step.abs().max()


def test_loader_and_engine_with_int8(tiny_checkpoint):
    loaded = load_model("tiny-random", Runtime("cpu", "float32", "int8"))
    fp32 = load_model("tiny-random", Runtime("cpu", "float32", "none"))
    assert loaded.report.quantization == "int8"
    assert loaded.report.weight_bytes > fp32.report.weight_bytes  # both copies are kept
    assert Engine(loaded).generate(PROMPT, max_new_tokens=12).generated_tokens == 12


def test_prefill_uses_fp32_even_for_an_expert_with_one_token(tiny_stock):
    experts = copy.deepcopy(tiny_stock.model.layers[0].block_sparse_moe.experts)
    dual = DualExperts(experts)
    states = torch.randn(3, 128)
    index = torch.tensor([[0, 1], [0, 1], [2, 3]])  # experts 2 and 3 get a single token each
    weights = torch.full((3, 2), 0.5)
    with torch.inference_mode():
        stock = experts(states, index, weights)
        ours = dual(states, index, weights)
    assert torch.allclose(ours, stock, atol=1e-5)


def test_matrices_the_int8_kernel_cannot_take_stay_fp32():
    from torch import nn

    model = nn.Module()
    model.q_proj, model.k_proj = nn.Linear(48, 8, bias=False), nn.Linear(30, 8, bias=False)
    odd = model.k_proj
    quantize_int8(model)
    assert isinstance(model.q_proj, DualLinear)
    assert model.k_proj is odd
