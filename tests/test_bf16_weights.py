"""`--quant bf16-weights` on the CPU: the large matrices stored in bf16, the arithmetic in fp32."""

import copy

import pytest
import torch

from model import native
from model.bf16_weights import store_bf16_weights
from model.engine import Engine
from model.granitemoe import GraniteMoe
from model.loader import _applied_quantization, load_model, prepare_weights
from model.runtime import Hardware, Runtime, decide_runtime

PROMPT = "Der Bericht beschreibt den Umsatz. この文書は会社の売上"


def test_runtime_offers_bf16_weights_on_the_cpu_only():
    assert decide_runtime("cpu", "bf16-weights", Hardware(False)) == Runtime("cpu", "float32", "bf16-weights")
    with pytest.raises(ValueError, match="CPU mode"):
        decide_runtime("cuda", "bf16-weights", Hardware(True, True))


def _rounded(model: GraniteMoe) -> GraniteMoe:
    """The fp32 model whose large matrices hold their bf16-rounded values: what bf16 storage
    computes with fp32 arithmetic."""
    rounded = copy.deepcopy(model)
    with torch.no_grad():
        for tensor in [rounded.embed, rounded.head.weight] + [t for layer in rounded.layers for t in (
                layer.qkv.weight, layer.o.weight, layer.experts.gate_up, layer.experts.down)]:  # fmt: skip
            tensor.copy_(tensor.bfloat16().float())
    return rounded


def test_storage_is_bf16_and_the_arithmetic_fp32(tiny_stock):
    model = GraniteMoe.from_stock(copy.deepcopy(tiny_stock))
    reference, tied = _rounded(model), model.head.weight is model.embed
    store_bf16_weights(model)
    layer = model.layers[0]
    assert model.dtype == torch.float32 and model.new_cache().dtype == torch.float32
    assert {layer.qkv.weight.dtype, layer.o.weight.dtype, layer.experts.gate_up.dtype, model.embed.dtype} == {
        torch.bfloat16
    }
    assert layer.input_norm.dtype == layer.router.dtype == model.norm.dtype == torch.float32
    assert (model.head.weight is model.embed) == tied and model.head.weight.dtype == torch.bfloat16
    ids = torch.tensor([5, 17, 99, 311, 42, 7] * 4)  # more rows than the native kernels take: widened for oneDNN
    with torch.inference_mode():
        prefill, expected = model(ids, model.new_cache(), keep=0), reference(ids, reference.new_cache(), keep=0)
        step, expected_step = model(ids[:1], model.new_cache()), reference(ids[:1], reference.new_cache())
    assert prefill.dtype == torch.float32
    assert torch.allclose(prefill, expected, atol=1e-4, rtol=1e-4)  # the same values, fp32 sums
    # one token: the native kernels, which round x to bf16 where the CPU has AVX512-BF16
    rounds = native.kernels() is not None and native.kernels().rounds_bf16_states()
    assert (step - expected_step).abs().max() < (0.02 if rounds else 1e-4) * expected_step.abs().max()


def test_loader_and_engine_with_bf16_weights(tiny_checkpoint):
    loaded = load_model("tiny-random", Runtime("cpu", "float32", "bf16-weights"))
    fp32 = load_model("tiny-random", Runtime("cpu", "float32", "none"))
    assert loaded.report.quantization == "bf16-weights" and "bf16 weights" in loaded.report.summary()
    assert loaded.report.weight_bytes < 0.6 * fp32.report.weight_bytes
    engine = Engine(loaded)
    first = engine.generate("Question: what?", prefix=PROMPT * 4, max_new_tokens=6)
    follow_up = engine.generate("Question: who?", prefix=PROMPT * 4, max_new_tokens=6)
    assert first.generated_tokens == follow_up.generated_tokens == 6 and follow_up.cached_tokens > 0


def test_other_architectures_run_plain_fp32_where_bf16_weights_are_asked(caplog):
    """bf16 weights are the CPU default without fast bf16 arithmetic: an architecture our
    forward does not run (transformers' own) is widened back to fp32, and the report says so."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)  # fmt: skip
    llama = LlamaForCausalLM(config).to(torch.bfloat16)  # as the loader reads it for bf16 weights
    runtime = Runtime("cpu", "float32", "bf16-weights")
    prepared = prepare_weights(llama, runtime)
    assert all(parameter.dtype == torch.float32 for parameter in prepared.parameters())
    assert "runs in fp32" in caplog.text
    assert _applied_quantization(prepared, runtime) == "none"
