"""The engine's fast path (model.fastpath): oneDNN products, mask-free attention, the swap."""

import copy

import pytest
import torch
import torch.nn.functional as F
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from model import kernels
from model.attention import NAME, engine_attention
from model.fastpath import FastPath


class _Attention:
    num_key_value_groups = 2
    is_causal = True


@pytest.mark.parametrize(("past", "new"), [(0, 1), (0, 9), (7, 1), (37, 9), (100, 100), (5, 64)])
def test_attention_matches_transformers_sdpa_with_its_mask(past, new):
    torch.manual_seed(past + new)
    query = torch.randn(1, 4, new, 16)
    key, value = torch.randn(1, 2, past + new, 16), torch.randn(1, 2, past + new, 16)
    mask = torch.ones(new, past + new, dtype=torch.bool).tril(past)[None, None] if past else None
    expected, _ = sdpa_attention_forward(_Attention(), query, key, value, mask, scaling=0.3)
    with torch.inference_mode():
        ours, _ = engine_attention(_Attention(), query, key, value, None, scaling=0.3)
    assert ours.shape == expected.shape == (1, new, 4, 16)
    assert torch.allclose(ours, expected, atol=1e-5)


@pytest.mark.parametrize("rows", [1, 3, kernels.ONEDNN_MAX_ROWS, kernels.ONEDNN_MAX_ROWS + 1])
def test_linear_matches_f_linear(rows):
    torch.manual_seed(rows)
    states, weight, bias = torch.randn(1, rows, 64), torch.randn(48, 64), torch.randn(48)
    with torch.inference_mode():
        assert torch.allclose(kernels.linear(states, weight), F.linear(states, weight), atol=1e-5)
        assert torch.allclose(kernels.linear(states, weight, bias), F.linear(states, weight, bias), atol=1e-5)
        transposed = torch.randn(64, 48).t()  # a non-contiguous weight
        assert torch.allclose(kernels.linear(states[0], transposed), F.linear(states[0], transposed), atol=1e-5)


def test_the_fast_path_swaps_in_and_restores_everything(tiny_stock):
    model = tiny_stock
    fast = FastPath(model)
    linears = [module for module in model.modules() if type(module) is torch.nn.Linear]
    assert fast.attention == NAME  # fp32 on the CPU
    swapped = {id(module) for module, _ in fast.swaps}
    if kernels.ONEDNN:
        assert all(id(module) in swapped for module in linears)
    with fast:
        with fast:  # re-entered by a second stream
            assert model.config._attn_implementation == NAME
        assert model.config._attn_implementation == NAME  # still inside the first
        assert all("forward" in vars(module) for module, _ in fast.swaps)
    assert model.config._attn_implementation == "sdpa"
    assert not any("forward" in vars(module) for module, _ in fast.swaps)


def test_bf16_models_keep_the_stock_attention(tiny_stock):
    model = copy.deepcopy(tiny_stock).to(torch.bfloat16)
    fast = FastPath(model)
    assert fast.attention is None
    assert not any(type(module) is torch.nn.Linear for module, _ in fast.swaps)  # oneDNN path is fp32 only


def test_the_loaded_model_has_packed_weights_that_compute_what_stock_computes(tiny_loaded, tiny_stock):
    from model.loader import weight_bytes
    from model.packed import PackedExperts, PackedLinear

    if not kernels.ONEDNN:
        pytest.skip("this torch build has no oneDNN")
    model = tiny_loaded.model
    assert sum(isinstance(module, PackedExperts) for module in model.modules()) == 2
    assert sum(isinstance(module, PackedLinear) for module in model.modules()) == 2 * 4  # q, k, v, o
    assert weight_bytes(model) == weight_bytes(tiny_stock)  # packing replaces, it does not add
    ids = torch.tensor([[5, 17, 99, 311, 42, 7, 1000, 3]])
    with torch.inference_mode():
        expected = tiny_stock(input_ids=ids).logits
        assert torch.allclose(model(input_ids=ids).logits, expected, atol=1e-4)
        assert torch.allclose(copy.deepcopy(model)(input_ids=ids).logits, expected, atol=1e-4)


def test_packed_linears_compute_what_nn_linear_computes():
    from model.packed import PackedLinear

    if not kernels.ONEDNN:
        pytest.skip("this torch build has no oneDNN")
    linear = torch.nn.Linear(64, 48)
    packed = PackedLinear(linear)
    states = torch.randn(2, 5, 64)
    with torch.inference_mode():
        assert torch.allclose(packed(states), linear(states), atol=1e-5)
