"""Our own GraniteMoE forward (model/granitemoe.py) against transformers' GraniteMoE."""

from __future__ import annotations

import pytest
import torch
from transformers import GraniteMoeConfig, GraniteMoeForCausalLM

from model import native
from model.checkpoints import GRANITE_3_1_1B_A400M
from model.granitemoe import GraniteMoe, supports
from model.kvcache import PREFIX_SLACK, KVCache
from model.moe import Experts
from tests.test_kernels import needs_tiles

IDS = [5, 17, 99, 311, 42, 7, 1000, 3, 55, 66, 77, 120, 9, 400]


def stock_logits(model, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0]


def our_logits(model: GraniteMoe, ids: list[int], chunks: list[int]) -> torch.Tensor:
    """All positions' logits, the ids fed in pieces of the given sizes (the rest one at a time)."""
    cache, parts, start = model.new_cache(), [], 0
    with torch.inference_mode():
        for size in chunks:
            parts.append(model(torch.tensor(ids[start : start + size]), cache, keep=0)[0])
            start += size
        while start < len(ids):
            parts.append(model(torch.tensor(ids[start : start + 1]), cache, keep=0)[0])
            start += 1
    assert cache.length == len(ids)
    return torch.cat(parts)


@pytest.fixture(scope="module")
def ours_on_tiny(tiny_stock):
    return GraniteMoe.from_stock(tiny_stock)


@pytest.mark.parametrize("chunks", [[len(IDS)], [4, 5], [1], [6, 1, 7]], ids=["whole", "chunked", "decode", "mixed"])
def test_logits_match_stock_on_tiny_random(tiny_stock, ours_on_tiny, chunks):
    expected = stock_logits(tiny_stock, IDS)
    got = our_logits(ours_on_tiny, IDS, chunks)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4)


def test_the_tensors_are_shared_with_the_stock_model_not_copied(tiny_stock, ours_on_tiny):
    stock_layer = tiny_stock.model.layers[0]
    assert (
        ours_on_tiny.layers[0].experts.gate_up.data_ptr()
        == stock_layer.block_sparse_moe.experts.gate_up_proj.data_ptr()
    )
    assert ours_on_tiny.embed.data_ptr() == tiny_stock.model.embed_tokens.weight.data_ptr()
    tied = tiny_stock.lm_head.weight.data_ptr() == tiny_stock.model.embed_tokens.weight.data_ptr()
    assert (ours_on_tiny.head.weight is ours_on_tiny.embed) == tied  # tied: one tensor, counted once
    stock_parameters = sum(p.numel() for p in tiny_stock.parameters())
    assert sum(p.numel() for p in ours_on_tiny.parameters()) == stock_parameters


def test_the_original_granite_tensor_names_load_too(tiny_stock, ours_on_tiny):
    """Checkpoints on the hub name the experts input_linear/output_linear and the router
    router.layer (transformers 5 renames them when it loads)."""
    renamed = {}
    for name, tensor in tiny_stock.state_dict().items():
        name = name.replace("experts.gate_up_proj", "input_linear.weight").replace(
            "experts.down_proj", "output_linear.weight"
        )
        renamed[name.replace("router.weight", "router.layer.weight")] = tensor
    assert any("input_linear" in name for name in renamed)
    model = GraniteMoe(tiny_stock.config, renamed)
    assert torch.equal(our_logits(model, IDS[:5], [5]), our_logits(ours_on_tiny, IDS[:5], [5]))


def test_a_missing_tensor_is_named(tiny_stock):
    tensors = dict(tiny_stock.state_dict())
    del tensors["model.layers.1.self_attn.o_proj.weight"]
    with pytest.raises(ValueError, match=r"model\.layers\.1\.self_attn\.o_proj\.weight"):
        GraniteMoe(tiny_stock.config, tensors)


def test_only_plain_granitemoe_configs_are_ours():
    config = GraniteMoeConfig(**GRANITE_3_1_1B_A400M)
    assert supports(config)
    assert not supports(GraniteMoeConfig(**{**GRANITE_3_1_1B_A400M, "attention_bias": True}))
    from transformers import LlamaConfig

    assert not supports(LlamaConfig())


@pytest.fixture(scope="module")
def real_size_layer():
    """One layer of the real Granite-3.1-1B-A400M (hidden 1024, 32 experts, top-8, 16/8 heads),
    a small vocabulary so the test stays quick."""
    torch.manual_seed(1)
    config = GraniteMoeConfig(**{**GRANITE_3_1_1B_A400M, "num_hidden_layers": 1, "vocab_size": 512})
    stock = GraniteMoeForCausalLM(config).eval()
    return stock, GraniteMoe.from_stock(stock)


def test_logits_match_stock_on_a_real_size_layer(real_size_layer):
    stock, ours = real_size_layer
    assert ours.head.weight is ours.embed  # Granite ties its output head to the embeddings
    ids = torch.randint(0, 512, (300,), generator=torch.Generator().manual_seed(2)).tolist()
    expected = stock_logits(stock, ids)
    got = our_logits(ours, ids, [256, 40])  # a prefill chunk, one after a cached past, then decode steps
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("tokens", [1, 2, 37, 300])
def test_expert_dispatch_matches_the_stock_block(real_size_layer, tokens):
    stock, ours = real_size_layer
    block, experts = stock.model.layers[0].block_sparse_moe, ours.layers[0].experts
    states = torch.randn(tokens, 1024)
    with torch.inference_mode():
        _, weights, index = block.router(states)
        expected = block.experts(states, index, weights)
        assert torch.allclose(experts(states, index, weights), expected, atol=1e-5, rtol=1e-4)
        assert torch.allclose(Experts.expert_sum(experts, states[:1], index[0], weights[0]), expected[:1], atol=1e-5)


def test_greedy_text_is_identical_to_stock_generate(tiny_engine, tiny_stock):
    ids = tiny_engine.encode("The committee reviewed the budget of the city. " * 3)
    with torch.inference_mode():
        out = tiny_stock.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False, eos_token_id=None)
    cache = tiny_engine.model.new_cache()
    tokens = []
    with torch.inference_mode():
        logits = tiny_engine.model(torch.tensor(ids), cache)[0, -1]
        for _ in range(24):
            tokens.append(int(logits.argmax()))
            logits = tiny_engine.model(torch.tensor(tokens[-1:]), cache)[0, -1]
    assert tokens == out[0, len(ids) :].tolist()
    assert len(set(tokens)) > 3  # varied output, so the match means something


def test_the_cache_grows_crops_and_compacts_in_place():
    cache = KVCache(layers=2, kv_heads=2, head_dim=4, dtype=torch.float32, device="cpu", reserve=8)
    cache.make_room(3)
    assert cache.capacity == 8
    keys = torch.arange(24.0).view(2, 3, 4)
    with torch.inference_mode():
        held_keys, _ = cache.write(1, keys, -keys)
        assert torch.equal(held_keys, keys)
        cache.length = 3
        cache.make_room(3000)  # past the reserve: grows, keeping what it held
        assert cache.capacity >= 3000 and torch.equal(cache.buffer[1, 0, :, :3], keys)
        cache.crop(2)
        assert cache.length == 2 and cache.holds(2) and not cache.holds(3)
        cache.crop(5)  # cropping never lengthens
        assert cache.length == 2
        assert cache.compact() == cache.nbytes  # a long answer was cut off: the room beyond the slack goes
        assert cache.capacity == 2 + PREFIX_SLACK
        assert torch.equal(cache.buffer[1, 0, :, :2], keys[:, :2])


def test_a_bf16_model_reads_in_chunks_after_a_cached_past(tiny_stock):
    """bf16 on the CPU (what the runtime picks where bf16 is native): a chunk after a cached past
    merges two attention halves whose log-sum-exps are fp32; the result stays bf16."""
    import copy

    model = GraniteMoe.from_stock(copy.deepcopy(tiny_stock).to(torch.bfloat16))
    whole = our_logits(model, IDS, [len(IDS)])
    chunked = our_logits(model, IDS, [5, 6])
    assert whole.dtype == chunked.dtype == torch.bfloat16
    assert (whole.float() - chunked.float()).abs().max() < 0.05 * whole.float().abs().max()


needs_packing = pytest.mark.skipif(
    not native.packs_experts(torch.zeros(1, 64, 64, dtype=torch.bfloat16)),
    reason="packed experts need the native kernels on a CPU with AVX512-BF16",
)


def test_packing_is_a_rearrangement():
    weight = torch.randn(3, 64, 128).bfloat16()
    packed = native.pack_experts(weight)
    assert packed.shape == (3, 4, 64, 32)
    assert torch.equal(packed[1, 2, 5], weight[1, 32:48, 10:12].reshape(-1))  # block 2, pair 5: 16 rows x 2
    assert torch.equal(native.unpack_experts(packed), weight)


@needs_packing
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("tokens", [1, 3, 4, 5, 17, 37, 300])
def test_packed_bf16_experts_match_the_stock_block(real_size_layer, tokens, dtype):
    """bf16 experts packed for the CPU's bf16 products: every token count (one-row dot products up
    to 4 rows of an expert; above, AMX tiles or, without them, four rows at a time) against the
    stock block in fp32 on the same bf16 weights and bf16-rounded states, within bf16's rounding of
    the intermediate activations; the states bf16 (a bf16 model) or fp32 (the one-call decode
    step), the result in their dtype."""
    stock, _ = real_size_layer
    block = stock.model.layers[0].block_sparse_moe
    experts = Experts(block.experts.gate_up_proj.detach().bfloat16(), block.experts.down_proj.detach().bfloat16())
    reference = Experts(experts.gate_up.float(), experts.down.float())
    assert experts.pack() and experts.packed
    states = torch.randn(tokens, 1024, generator=torch.Generator().manual_seed(tokens)).bfloat16()
    with torch.inference_mode():
        _, weights, index = block.router(states.float())
        expected = reference(states.float(), index, weights)
        got = experts(states.to(dtype), index, weights.to(dtype))
    assert got.dtype == dtype
    error = (got.float() - expected).abs().max()
    assert error < 0.02 * expected.abs().max(), error


@needs_packing
def test_a_bf16_model_with_packed_experts_decodes_as_it_reads(real_size_layer):
    """The one-call decode step reads the packed experts too: logits of decode steps match those
    of the same positions read as one chunk."""
    import copy

    stock, _ = real_size_layer
    model = GraniteMoe.from_stock(copy.deepcopy(stock).to(torch.bfloat16))
    assert model.pack_experts() and model.layers[0].experts.packed
    ids = torch.randint(0, 512, (40,), generator=torch.Generator().manual_seed(3)).tolist()
    whole = our_logits(model, ids, [len(ids)]).float()
    stepped = our_logits(model, ids, [30]).float()  # 30 in a chunk, then 10 one-call decode steps
    assert (whole - stepped).abs().max() < 0.05 * whole.abs().max()
    expected = stock_logits(stock, ids)  # the fp32 model: bf16 stays close
    assert (stepped - expected).abs().max() < 0.1 * expected.abs().max()


@needs_tiles
def test_a_bf16_model_reads_in_chunks_what_it_reads_whole(real_size_layer):
    """Chunks of 17 positions or more attend on AMX tiles over the cached past (model/cpu_attention.cpp):
    reading in three chunks gives the logits of reading whole, and both stay close to fp32 stock."""
    import copy

    stock, _ = real_size_layer
    model = GraniteMoe.from_stock(copy.deepcopy(stock).to(torch.bfloat16))
    model.pack_experts()
    ids = torch.randint(0, 512, (300,), generator=torch.Generator().manual_seed(4)).tolist()
    whole = our_logits(model, ids, [300]).float()
    chunked = our_logits(model, ids, [100, 64, 136]).float()
    assert (whole - chunked).abs().max() < 0.05 * whole.abs().max()
    expected = stock_logits(stock, ids)
    assert (chunked - expected).abs().max() < 0.1 * expected.abs().max()
