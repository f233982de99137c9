"""The engine's fast path (model.fastpath): native and oneDNN products, mask-free attention, the swap."""

import copy

import pytest
import torch
import torch.nn.functional as F
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from model import kernels, native
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
    ours = native.kernels().small_linear(states, weight)
    assert ours.shape == expected.shape
    assert torch.allclose(ours, expected, atol=1e-3, rtol=1e-4)


def test_native_moe_one_token_matches_the_expert_loop():
    torch.manual_seed(3)
    experts = _Experts(num_experts=6, hidden=64, inner=32)
    state, chosen, weights = torch.randn(1, 64), torch.tensor([4, 1, 5]), torch.rand(3)
    with torch.inference_mode():
        expected = torch.zeros_like(state)
        for slot, expert in enumerate(chosen.tolist()):  # each chosen expert, as the stock layer applies it
            gate, up = F.linear(state, experts.gate_up_proj[expert]).chunk(2, dim=-1)
            expected += F.linear(F.silu(gate) * up, experts.down_proj[expert]) * weights[slot]
        ours = native.kernels().moe_one_token(state, experts.gate_up_proj, experts.down_proj, chosen, weights)
    assert torch.allclose(ours, expected, atol=1e-5)
    with pytest.raises(RuntimeError, match="out of range"):
        native.kernels().moe_one_token(state, experts.gate_up_proj, experts.down_proj, torch.tensor([6]), weights[:1])


def test_the_models_experts_take_the_native_one_token_path(tiny_loaded, monkeypatch):
    built, calls = native.kernels(), []

    class Counting:  # the built kernels, counting the experts' one-token calls
        def __getattr__(self, name):
            return getattr(built, name)

        def moe_one_token(self, *args):
            calls.append(args[0].shape)
            return built.moe_one_token(*args)

    monkeypatch.setattr(native, "kernels", Counting)
    model = tiny_loaded.model
    experts = [module for module in model.modules() if type(module).__name__ == "GraniteMoeExperts"]
    with torch.inference_mode(), FastPath(model):
        model(input_ids=torch.tensor([[5]]))  # one decode token through every layer
    assert experts and calls == [(1, module.hidden_dim) for module in experts]


def test_switched_off_native_kernels_fall_back_to_the_same_results(monkeypatch, tiny_loaded):
    model = tiny_loaded.model
    ids = torch.tensor([[5, 17, 99, 311, 42, 7, 1000, 3]])

    def last_logits() -> list[torch.Tensor]:  # one row per product: the native kernels' case
        with torch.inference_mode(), FastPath(model):
            return [model(input_ids=ids[:, :n]).logits[:, -1] for n in range(1, ids.shape[1] + 1)]

    with_native = last_logits()
    monkeypatch.setenv(native.SWITCH, "0")
    assert native.kernels() is None
    with torch.inference_mode():
        assert not native.applies(torch.randn(4, 64), torch.randn(1, 64))
    for a, b in zip(with_native, last_logits(), strict=True):
        assert torch.allclose(a, b, atol=1e-4)


class _Experts(torch.nn.Module):
    def __init__(self, num_experts: int, hidden: int, inner: int):
        super().__init__()
        self.num_experts = num_experts
        self.gate_up_proj = torch.nn.Parameter(torch.randn(num_experts, 2 * inner, hidden) / 8)
        self.down_proj = torch.nn.Parameter(torch.randn(num_experts, hidden, inner) / 8)
        self.act_fn = torch.nn.SiLU()


def test_the_fast_path_swaps_in_and_restores_everything(tiny_stock, monkeypatch):
    model = tiny_stock
    ran: list[str] = []  # the attention functions the model called, by their registered names
    for name in (NAME, "sdpa"):  # each registered function, wrapped to say when it runs
        function = ALL_ATTENTION_FUNCTIONS[name]
        spy = lambda *args, name=name, function=function, **kwargs: ran.append(name) or function(*args, **kwargs)  # noqa: E731
        monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS, name, spy)

    def attention_used() -> set[str]:
        ran.clear()
        with torch.inference_mode():
            model(input_ids=torch.tensor([[5, 17, 99]]))
        return set(ran)

    fast = FastPath(model)
    linears = [module for module in model.modules() if type(module) is torch.nn.Linear]
    assert fast.attention == NAME  # fp32 on the CPU
    swapped = {id(module) for module, _ in fast.swaps}
    assert all(id(module) in swapped for module in linears)
    assert attention_used() == {"sdpa"}  # the stock model
    with fast:
        with fast:  # re-entered by a second stream
            assert attention_used() == {NAME}
        assert attention_used() == {NAME}  # still inside the first
        assert all("forward" in vars(module) for module, _ in fast.swaps)
    assert attention_used() == {"sdpa"}
    assert not any("forward" in vars(module) for module, _ in fast.swaps)


def test_bf16_models_keep_the_stock_attention(tiny_stock):
    model = copy.deepcopy(tiny_stock).to(torch.bfloat16)
    fast = FastPath(model)
    assert fast.attention is None
    assert not any(type(module) is torch.nn.Linear for module, _ in fast.swaps)  # the faster products are fp32 only


def test_the_loaded_model_computes_what_stock_computes_through_the_fast_path(tiny_loaded, tiny_stock):
    from model.loader import weight_bytes

    model = tiny_loaded.model
    assert weight_bytes(model) == weight_bytes(tiny_stock)
    ids = torch.tensor([[5, 17, 99, 311, 42, 7, 1000, 3]])
    with torch.inference_mode():
        expected = tiny_stock(input_ids=ids).logits
        with FastPath(model):
            assert torch.allclose(model(input_ids=ids).logits, expected, atol=1e-4)
            for n in range(1, ids.shape[1] + 1):  # one row at a time goes through the native kernels
                last = model(input_ids=ids[:, :n]).logits[:, -1]
                assert torch.allclose(last, expected[:, n - 1], atol=1e-4)
        assert torch.allclose(copy.deepcopy(model)(input_ids=ids).logits, expected, atol=1e-4)
