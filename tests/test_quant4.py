"""4-bit (NF4) weights with the experts included, tested on the CPU (bitsandbytes runs here)."""

import pytest
import torch
from transformers import GraniteMoeConfig, GraniteMoeForCausalLM

from model.checkpoints import GRANITE_3_1_1B_A400M
from model.engine import Engine
from model.granitemoe import GraniteMoe
from model.loader import load_model, weight_bytes
from model.moe import Experts
from model.quant4 import Experts4bit, Packed, quantize_4bit
from model.runtime import Runtime

pytest.importorskip("bitsandbytes")


@pytest.fixture(scope="module")
def moe_model():
    """Experts dominate the weights, as in the real model (90%)."""
    sizes = {"hidden_size": 256, "intermediate_size": 256, "num_local_experts": 16, "num_experts_per_tok": 4,
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256}  # fmt: skip
    torch.manual_seed(0)
    stock = GraniteMoeForCausalLM(GraniteMoeConfig(**{**GRANITE_3_1_1B_A400M, **sizes})).to(torch.bfloat16).eval()
    return GraniteMoe.from_stock(stock)


def test_packed_matrix_round_trips_within_nf4_error():
    matrix = torch.randn(256, 512, dtype=torch.bfloat16)
    restored = Packed(matrix).weight()
    assert restored.shape == matrix.shape and restored.dtype == torch.bfloat16
    error = (restored.float() - matrix.float()).abs().max() / matrix.float().abs().max()
    assert error < 0.15


def test_4bit_experts_dispatch_like_the_stock_layer(moe_model):
    quantized = Experts4bit(moe_model.layers[0].experts)
    gate_up = torch.stack([p.weight() for p in quantized.gate_up_packed])  # the dequantized weights
    reference = Experts(gate_up, torch.stack([p.weight() for p in quantized.down_packed]))
    states = torch.randn(40, 256, dtype=torch.bfloat16)
    index = torch.stack([torch.randperm(16)[:4] for _ in range(40)])
    weights = torch.softmax(torch.randn(40, 4), dim=-1).to(torch.bfloat16)
    with torch.inference_mode():
        for rows in (slice(0, 1), slice(0, 40)):  # decode and prefill paths
            ours = quantized(states[rows], index[rows], weights[rows])
            stock = reference(states[rows], index[rows], weights[rows])
            assert torch.allclose(ours.float(), stock.float(), atol=2e-2, rtol=2e-2)


def test_quantizing_packs_experts_and_attention_and_shrinks_the_weights(moe_model):
    import copy

    model = copy.deepcopy(moe_model)
    before = weight_bytes(model)
    assert quantize_4bit(model) == 2 * (2 * 16 + 2)  # per layer: 16 experts x 2 matrices, qkv, o
    after = weight_bytes(model)
    assert after < 0.4 * before
    ids = torch.tensor([1, 2, 3, 4, 5])
    with torch.inference_mode():
        full = moe_model(ids, moe_model.new_cache(), keep=0).float()
        packed = model(ids, model.new_cache(), keep=0).float()
    assert torch.corrcoef(torch.stack([full.flatten(), packed.flatten()]))[0, 1] > 0.9


def test_loader_reports_the_true_4bit_weight_memory(tiny_checkpoint):
    bf16 = load_model("tiny-random", Runtime("cpu", "bfloat16", "none"))
    four = load_model("tiny-random", Runtime("cpu", "bfloat16", "4bit"))
    assert four.report.quantization == "4bit" and four.report.parameters == bf16.report.parameters
    assert four.report.weight_bytes < bf16.report.weight_bytes
    assert Engine(four).generate("Der Bericht beschreibt den Umsatz.", max_new_tokens=8).generated_tokens == 8
