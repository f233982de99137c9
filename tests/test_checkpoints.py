"""The built-in tiny-random checkpoint: real GraniteMoE architecture, deterministic, offline."""

import hashlib
import json

from model.checkpoints import GRANITE_3_1_1B_A400M, build_tiny_random


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_tiny_random_has_the_real_config_keys(tiny_checkpoint):
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["model_type"] == "granitemoe"
    assert config["architectures"] == ["GraniteMoeForCausalLM"]
    missing = {k for k in GRANITE_3_1_1B_A400M if k not in config and k != "rope_theta"}
    assert not missing
    assert config["num_hidden_layers"] == 2 and config["num_local_experts"] == 4
    assert config["hidden_size"] // config["num_attention_heads"] == 64  # the real model's head size


def test_tiny_random_is_safetensors_with_a_trained_tokenizer(tiny_checkpoint):
    names = {p.name for p in tiny_checkpoint.iterdir()}
    assert "model.safetensors" in names and "tokenizer.json" in names
    assert not any(name.endswith((".bin", ".pt")) for name in names)
    tokenizer = json.loads((tiny_checkpoint / "tokenizer.json").read_text())
    assert tokenizer["model"]["type"] == "BPE" and len(tokenizer["model"]["merges"]) > 500


def test_build_is_deterministic(tmp_path, tiny_checkpoint):
    build_tiny_random(tmp_path)
    assert _digest(tmp_path) == _digest(tiny_checkpoint)
