"""The engine's kernels: native and oneDNN products, mask-free attention."""

import pytest
import torch
import torch.nn.functional as F
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from model import kernels, native
from model.attention import attend


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
        ours = attend(query[0], key[0], value[0], scaling=0.3)
    assert ours.shape == expected.shape[1:] == (new, 4, 16)
    assert torch.allclose(ours, expected[0], atol=1e-5)


needs_tiles = pytest.mark.skipif(
    native.kernels() is None or not native.kernels().amx_available(),
    reason="the bf16 attention kernel needs the native kernels on a CPU with AMX",
)


def _strided_attention_inputs(past: int, new: int, heads: int, kv_heads: int, dim: int):
    """bf16 queries as a view of a (new, heads + 2 kv_heads, dim) projection, and keys and values
    as views of a cache buffer with room to spare whose unwritten positions hold NaN, as the
    engine passes them."""
    generator = torch.Generator().manual_seed(past * 1000 + new + dim)
    projected = torch.randn(new, heads + 2 * kv_heads, dim, generator=generator).bfloat16()
    buffer = torch.full((2, kv_heads, past + new + 40, dim), float("nan"), dtype=torch.bfloat16)
    buffer[:, :, : past + new] = torch.randn(2, kv_heads, past + new, dim, generator=generator).bfloat16()
    return projected[:, :heads].transpose(0, 1), buffer[0, :, : past + new], buffer[1, :, : past + new]


@needs_tiles
@pytest.mark.parametrize(
    ("past", "new", "heads", "kv_heads", "dim"),
    [(0, 32, 16, 8, 64), (0, 33, 16, 8, 64), (5, 64, 16, 8, 64), (100, 40, 16, 8, 64), (1000, 37, 16, 8, 64),
     (0, 300, 16, 8, 64), (37, 129, 16, 8, 64), (3, 45, 4, 4, 128), (200, 70, 6, 2, 64)],
)  # fmt: skip
def test_bf16_attention_on_tiles_matches_the_fp32_computation(past, new, heads, kv_heads, dim):
    """Our AMX kernel (the past and the chunk in one pass, any block boundary, padded keys, one or
    several query heads per key/value head, head sizes 64 and 128) against the same bf16 values
    attended in fp32, within bf16's rounding of the probabilities and the output."""
    query, keys, values = _strided_attention_inputs(past, new, heads, kv_heads, dim)
    with torch.inference_mode():
        assert native.attends(query, keys)
        got = attend(query, keys, values, scaling=0.125)
        expected = attend(query.float(), keys.float(), values.float(), scaling=0.125)
    assert got.dtype == torch.bfloat16 and got.shape == (new, heads, dim)
    assert torch.isfinite(got.float()).all()  # the NaN past the cache's end is never read
    assert (got.float() - expected).abs().max() < 0.02


def test_bf16_products_of_more_than_a_few_rows_go_to_onednn_where_the_cpu_dots_bf16():
    module = native.kernels()
    if module is None:
        pytest.skip("no native kernels here")
    weight, more = torch.randn(64, 64).bfloat16(), torch.randn(native.MAX_BF16_DOT_ROWS + 1, 64).bfloat16()
    with torch.inference_mode():
        assert native.applies(weight, more[:-1])
        assert native.applies(weight, more) == (not module.rounds_bf16_states())  # vdpbf16ps: oneDNN from 5 rows
        assert native.applies(weight.float(), torch.randn(native.MAX_ROWS, 64))  # fp32 weights: up to MAX_ROWS


@needs_tiles
@pytest.mark.parametrize("jump", [1.0, 4.0, 30.0])
def test_bf16_attention_on_tiles_rescales_when_later_keys_score_far_higher(jump):
    """Each block's exponentials are taken against the running maximum while no score exceeds it by
    2^8; keys further on that score far higher (jump) must rescale what came before."""
    query, keys, values = _strided_attention_inputs(300, 40, 16, 8, 64)
    keys[:, 200:] *= jump  # the blocks from key 200 on score up to `jump` times higher
    with torch.inference_mode():
        got = attend(query, keys, values, scaling=0.125)
        expected = attend(query.float(), keys.float(), values.float(), scaling=0.125)
    assert (got.float() - expected).abs().max() < 0.02


def test_short_chunks_and_other_dtypes_keep_torchs_attention():
    query, keys, _ = _strided_attention_inputs(100, native.MIN_ATTENTION_ROWS - 1, 16, 8, 64)
    with torch.inference_mode():
        assert not native.attends(query, keys)  # a question on a cached document: torch's is as fast
        long_query, long_keys, _ = _strided_attention_inputs(0, 64, 16, 8, 64)
        assert not native.attends(long_query.float(), long_keys.float())
        assert not native.attends(long_query[..., :48], long_keys[..., :48])
    assert not native.attends(long_query, long_keys)  # gradients wanted: torch's


@pytest.mark.parametrize("rows", [1, 2, 3, 12, 13, native.MAX_ROWS, native.MAX_ROWS + 1, 300])
def test_linear_matches_f_linear(rows):
    torch.manual_seed(rows)
    states, weight, bias = torch.randn(1, rows, 64), torch.randn(48, 64), torch.randn(48)
    with torch.inference_mode():
        assert torch.allclose(kernels.linear(states, weight), F.linear(states, weight), atol=1e-5)
        assert torch.allclose(kernels.linear(states, weight, bias), F.linear(states, weight, bias), atol=1e-5)
        transposed = torch.randn(64, 48).t()  # a non-contiguous weight
        assert torch.allclose(kernels.linear(states[0], transposed), F.linear(states[0], transposed), atol=1e-5)
        odd = torch.randn(48, 40)  # an inner size the native kernel does not take
        assert torch.allclose(kernels.linear(states[..., :40], odd), F.linear(states[..., :40], odd), atol=1e-5)


def test_the_native_kernels_build_here():
    """This machine has a compiler: the native kernels must build (and pass their self-check), or
    every speed figure in the README is wrong. Elsewhere they may be missing; the fallback is
    tested below."""
    assert native.kernels() is not None


def test_a_build_lock_left_by_a_killed_compile_is_removed_and_a_fresh_one_kept(tmp_path):
    import os

    lock = tmp_path / "lock"
    lock.write_text("")
    assert not native.remove_stale_lock(tmp_path) and lock.exists()  # a compile may be running now
    then = lock.stat().st_mtime - native.STALE_LOCK_SECONDS - 1
    os.utime(lock, (then, then))
    assert native.remove_stale_lock(tmp_path) and not lock.exists()
    assert not native.remove_stale_lock(tmp_path)  # no lock: nothing to do


@pytest.mark.parametrize("rows", [1, 7, 16])
def test_native_small_linear_matches_torch_on_real_sizes(rows):
    torch.manual_seed(rows)
    weight, states = torch.randn(1024, 512), torch.randn(rows, 512)
    expected = states @ weight.T
    ours = native.kernels().small_linear(states, weight, native.NO_SCALE)
    assert ours.shape == expected.shape
    assert torch.allclose(ours, expected, atol=1e-3, rtol=1e-4)


def test_native_moe_one_token_matches_the_expert_loop():
    torch.manual_seed(3)
    gate_up, down = torch.randn(6, 64, 64) / 8, torch.randn(6, 64, 32) / 8
    state, chosen, weights = torch.randn(1, 64), torch.tensor([4, 1, 5]), torch.rand(3)
    with torch.inference_mode():
        expected = torch.zeros_like(state)
        for slot, expert in enumerate(chosen.tolist()):  # each chosen expert, as the stock layer applies it
            gate, up = F.linear(state, gate_up[expert]).chunk(2, dim=-1)
            expected += F.linear(F.silu(gate) * up, down[expert]) * weights[slot]
        none = native.NO_SCALE
        ours = native.kernels().moe_one_token(state, gate_up, none, down, none, chosen, weights)
        assert torch.allclose(ours, expected, atol=1e-5)
        with pytest.raises(RuntimeError, match="out of range"):
            native.kernels().moe_one_token(state, gate_up, none, down, none, torch.tensor([6]), weights[:1])


@pytest.mark.parametrize("rows", [1, 5, 16])
def test_native_products_widen_bf16_and_int8_weights_exactly(rows):
    """The kernels read bf16 and int8 weights and multiply fp32 activations: the result is the
    fp32 product by the widened (and, for int8, scaled) weights, not an approximation of it.
    Where the CPU multiplies bf16 natively (AVX512-BF16) bf16 weights meet x rounded to bf16, as
    in a bf16 model: then the result is exactly that product."""
    torch.manual_seed(rows)
    states = torch.randn(rows, 512)
    weight = torch.randn(1040, 512)
    bf16 = weight.bfloat16()
    got = native.kernels().small_linear(states, bf16, native.NO_SCALE)
    multiplied = states.bfloat16().float() if native.kernels().rounds_bf16_states() else states
    assert torch.allclose(got, multiplied @ bf16.float().T, atol=1e-3, rtol=1e-4)
    data = torch.randint(-127, 128, (1040, 512), dtype=torch.int8)
    scale = torch.rand(1040) / 50
    got = native.kernels().small_linear(states, data, scale)
    assert torch.allclose(got, states @ (data.float() * scale[:, None]).T, atol=1e-3, rtol=1e-4)
    with pytest.raises(RuntimeError, match="one fp32 scale per row"):
        native.kernels().small_linear(states, data, native.NO_SCALE)


def test_a_decode_step_runs_each_layer_in_one_native_call(tiny_loaded, monkeypatch):
    built, calls = native.kernels(), []

    class Counting:  # the built kernels, counting the one-call decode layers
        def __getattr__(self, name):
            return getattr(built, name)

        def decode_layer(self, h, *args):
            calls.append(h.shape)
            return built.decode_layer(h, *args)

    monkeypatch.setattr(native, "kernels", Counting)
    model = tiny_loaded.model
    cache = model.new_cache()
    with torch.inference_mode():
        model(torch.tensor([5, 6, 7]), cache)  # a prefill: the layers as torch code
        assert calls == []
        model(torch.tensor([8]), cache)  # one decode token through every layer
    assert calls == [(1, model.hidden)] * len(model.layers)


@pytest.mark.parametrize("quant", ["none", "int8", "bf16"])
def test_the_one_call_decode_layer_computes_what_the_torch_layer_does(tiny_stock, quant, monkeypatch):
    """Decode steps at every context length up to 70 (the attention's padding to 16 lanes), fused
    and as torch code, with fp32 weights, int8 weights, and a bf16 model (bf16 cache; the fused
    layer computes in fp32 where torch computes in bf16, so only closely)."""
    import copy

    from model.granitemoe import GraniteMoe, Layer
    from model.quant8 import quantize_int8

    stock = copy.deepcopy(tiny_stock)
    model = GraniteMoe.from_stock(stock.to(torch.bfloat16) if quant == "bf16" else stock)
    if quant == "int8":
        quantize_int8(model)
    ids = torch.randint(0, 1000, (70,), generator=torch.Generator().manual_seed(5))

    def steps() -> torch.Tensor:
        cache = model.new_cache()
        with torch.inference_mode():
            return torch.cat([model(ids[i : i + 1], cache)[0] for i in range(len(ids))])

    fused = steps()
    monkeypatch.setattr(Layer, "fused_decode_weights", lambda *args: None)
    unfused = steps()
    if quant == "bf16":
        assert fused.dtype == torch.bfloat16
        assert (fused.float() - unfused.float()).abs().max() < 0.05 * unfused.float().abs().max()
    else:
        assert torch.allclose(fused, unfused, atol=1e-5, rtol=1e-4)


def test_switched_off_native_kernels_fall_back_to_the_same_results(monkeypatch, tiny_loaded):
    model = tiny_loaded.model
    ids = [5, 17, 99, 311, 42, 7, 1000, 3]

    def step_logits() -> list[torch.Tensor]:  # one row per product: the native kernels' case
        cache = model.new_cache()
        with torch.inference_mode():
            return [model(torch.tensor([token]), cache)[:, -1] for token in ids]

    with_native = step_logits()
    monkeypatch.setenv(native.SWITCH, "0")
    assert native.kernels() is None
    with torch.inference_mode():
        assert not native.applies(torch.randn(4, 64), torch.randn(1, 64))
    for a, b in zip(with_native, step_logits(), strict=True):
        assert torch.allclose(a, b, atol=1e-4)
