"""The engine's expert dispatch against the stock GraniteMoE layer."""

import pytest
import torch
from transformers import GraniteMoeConfig, GraniteMoeForCausalLM

from model.checkpoints import GRANITE_3_1_1B_A400M
from model.fastpath import FastPath


@pytest.fixture(scope="module")
def layer():
    """A mid-size random MoE block: 16 experts, top-4, so tokens really spread over experts."""
    sizes = {"hidden_size": 256, "intermediate_size": 128, "num_local_experts": 16, "num_experts_per_tok": 4,
             "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512}  # fmt: skip
    torch.manual_seed(0)
    model = GraniteMoeForCausalLM(GraniteMoeConfig(**{**GRANITE_3_1_1B_A400M, **sizes})).eval()
    return model, model.model.layers[0].block_sparse_moe


@pytest.mark.parametrize("tokens", [1, 2, 37, 300])
def test_fast_dispatch_matches_the_stock_layer(layer, tokens):
    model, moe = layer
    states = torch.randn(1, tokens, 256)
    with torch.inference_mode():
        stock = moe(states)
        with FastPath(model) as fast:
            ours = moe(states)
    assert any(module is moe.experts for module, _ in fast.swaps)
    assert torch.allclose(ours, stock, atol=1e-5, rtol=1e-4)


def test_the_swap_ends_with_the_context(layer):
    model, moe = layer
    with FastPath(model):
        assert "forward" in vars(moe.experts)
    assert "forward" not in vars(moe.experts)  # stock again for everyone else
