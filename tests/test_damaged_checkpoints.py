"""Damaged model files (a truncated copy, an empty config, a lost shard): a ModelLoadError that
names the file and what to do, never a traceback; the built-in tiny-random is simply built again."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from app.untrusted import plain
from model.checkfiles import DamagedFile, check_model_files, check_safetensors
from model.checkpoints import tiny_random_path
from model.loader import ModelLoadError, load_model, load_tokenizer, resolve_source
from model.runtime import Runtime
from tests.conftest import REPO_ROOT, app_py_serving

CPU = Runtime("cpu", "float32", "none")
HUB_ID = "ibm-granite/granite-damaged-test"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garble_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[8:40] = b"\x93\x00garbage, not a JSON header...."
    path.write_bytes(bytes(data))


def _huge_header_length(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:8] = (2**40).to_bytes(8, "little")
    path.write_bytes(bytes(data))


DAMAGES: dict[str, tuple[str, Callable[[Path], None]]] = {
    "truncated weights": ("model.safetensors", _truncate),
    "garbage safetensors header": ("model.safetensors", _garble_header),
    "impossible header length": ("model.safetensors", _huge_header_length),
    "empty weights": ("model.safetensors", lambda p: p.write_bytes(b"")),
    "empty config.json": ("config.json", lambda p: p.write_text("")),
    "config.json not JSON": ("config.json", lambda p: p.write_text('{"model_type": "granitemoe", "hidd')),
    "config.json a list": ("config.json", lambda p: p.write_text("[]")),
    "empty tokenizer.json": ("tokenizer.json", lambda p: p.write_bytes(b"")),
    "truncated tokenizer.json": ("tokenizer.json", _truncate),
    "corrupt tokenizer_config.json": ("tokenizer_config.json", lambda p: p.write_bytes(b"\x00\xff\x13 binary junk")),
    "empty special_tokens_map.json": ("special_tokens_map.json", lambda p: p.write_text(" \n")),
    "empty merges.txt": ("merges.txt", lambda p: p.write_text("")),
}
TOKENIZER_DAMAGES = [name for name, (file, _) in DAMAGES.items() if file != "model.safetensors"]


@pytest.fixture
def folder(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    """A copy of the tiny checkpoint, free to damage."""
    copy = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, copy)
    return copy


def _damage(folder: Path, damage: str) -> Path:
    name, spoil = DAMAGES[damage]
    spoil(folder / name)
    return folder / name


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_file_is_named_with_what_to_do(folder, damage):
    damaged = _damage(folder, damage)
    with pytest.raises(ModelLoadError) as info:
        load_model(str(folder), CPU)
    message = str(info.value)
    assert f"damaged model file {damaged}:" in message and "copy this file" in message
    assert "\n" not in message


@pytest.mark.parametrize("damage", TOKENIZER_DAMAGES)
def test_the_openai_backends_tokenizer_gets_the_same_checks(folder, damage):
    damaged = _damage(folder, damage)
    with pytest.raises(ModelLoadError, match=re.escape(f"damaged model file {damaged}:")):
        load_tokenizer(str(folder))


def test_the_tokenizer_alone_does_not_need_intact_weights(folder):
    _truncate(folder / "model.safetensors")
    assert load_tokenizer(str(folder)).encode("Hello") == load_tokenizer("tiny-random").encode("Hello")


def test_safetensors_reasons_say_what_is_wrong(folder):
    path = folder / "model.safetensors"
    _truncate(path)
    with pytest.raises(DamagedFile, match="the file is truncated"):
        check_safetensors(path)
    path.write_bytes(b"\x01\x00")
    with pytest.raises(DamagedFile, match="shorter than the 8-byte header length"):
        check_safetensors(path)


def test_a_tensor_whose_bytes_do_not_match_its_shape_is_damage(folder):
    path = folder / "model.safetensors"
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = data[8 : 8 + length].decode()
    assert '"shape":[1664,128]' in header
    header = header.replace('"shape":[1664,128]', '"shape":[1664,127]', 1)
    path.write_bytes(data[:8] + header.encode() + data[8 + length :])
    with pytest.raises(DamagedFile, match=r"has 851,968 bytes, not the F32 \[1664, 127\]"):
        check_safetensors(path)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64", "int8", "int64", "bool", "uint8"])
def test_intact_safetensors_of_every_kind_pass(tmp_path, dtype):
    import torch
    from safetensors.torch import save_file

    tensors = {
        "matrix": torch.ones(3, 5).to(getattr(torch, dtype)),
        "scalar": torch.tensor(1).to(getattr(torch, dtype)),
        "empty": torch.zeros(0, 4).to(getattr(torch, dtype)),
    }
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    assert check_safetensors(tmp_path / "model.safetensors") == set(tensors)


@pytest.fixture
def sharded(tiny_stock, tmp_path: Path, tiny_checkpoint: Path) -> Path:
    """The tiny model saved by transformers in several shards, with an index."""
    folder = tmp_path / "sharded"
    tiny_stock.save_pretrained(folder, max_shard_size="1MB")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_checkpoint / name, folder / name)
    assert len(list(folder.glob("*.safetensors"))) > 1
    return folder


def test_an_intact_sharded_checkpoint_passes_and_loads(sharded):
    check_model_files(sharded)
    assert type(load_model(str(sharded), CPU).model).__name__ == "GraniteMoe"


def test_a_shard_named_by_the_index_that_is_missing_is_named(sharded):
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    shard = sharded / sorted(set(index["weight_map"].values()))[-1]
    shard.unlink()
    with pytest.raises(ModelLoadError, match=re.escape(f"damaged model file {shard}: the file is missing")):
        load_model(str(sharded), CPU)


def test_a_truncated_shard_and_a_broken_index_are_named(sharded):
    index = sharded / "model.safetensors.index.json"
    shard = sharded / sorted(set(json.loads(index.read_text())["weight_map"].values()))[0]
    _truncate(shard)
    with pytest.raises(ModelLoadError, match=re.escape(f"damaged model file {shard}: ") + ".*truncated"):
        load_model(str(sharded), CPU)
    index.write_text('{"metadata": {}, "weight_map": ')
    with pytest.raises(ModelLoadError, match=re.escape(f"damaged model file {index}: it is not valid JSON")):
        load_model(str(sharded), CPU)


@pytest.mark.parametrize(
    ("name", "text"), [("config.json", '{"model_type": "no-such-model"}'), ("tokenizer.json", '{"version": "1.0"}')]
)
def test_a_file_that_passes_the_checks_but_not_transformers_is_no_traceback(folder, name, text):
    (folder / name).write_text(text)
    with pytest.raises(ModelLoadError) as info:
        load_model(str(folder), CPU)
    message = str(info.value)
    assert message.startswith(f"could not load {folder}: ") and f"if a file in {folder} is damaged" in message
    assert "\n" not in message


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


TINY_DAMAGES = {
    **{damage: DAMAGES[damage] for damage in ("truncated weights", "empty config.json", "empty tokenizer.json")},
    "config.json lost": ("config.json", Path.unlink),
}


@pytest.mark.parametrize("damage", TINY_DAMAGES)
def test_a_damaged_tiny_random_is_built_again(monkeypatch, tmp_path, tiny_checkpoint, caplog, damage):
    monkeypatch.setenv("GRANITE_LONGDOC_CACHE", str(tmp_path))
    built = tiny_random_path()
    assert built.parent == tmp_path
    name, spoil = TINY_DAMAGES[damage]
    spoil(built / name)
    loaded = load_model("tiny-random", CPU)
    assert loaded.report.source == str(built) and type(loaded.model).__name__ == "GraniteMoe"
    assert _digest(built) == _digest(tiny_checkpoint)
    assert [p.name for p in tmp_path.iterdir()] == [built.name]  # no staging or damaged folder left behind
    assert f"building the tiny-random checkpoint again: {built}" in caplog.text


@pytest.fixture
def hub_cache(monkeypatch, tmp_path: Path, tiny_checkpoint: Path) -> Path:
    """The tiny checkpoint as the Hugging Face cache stores a download of HUB_ID: the files are
    links from snapshots/<commit>/ into blobs/, refs/main names the commit. Returns the snapshot."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))  # read once at import
    entry = cache / ("models--" + HUB_ID.replace("/", "--"))
    snapshot = entry / "snapshots" / COMMIT
    (entry / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for source in tiny_checkpoint.iterdir():
        blob = entry / "blobs" / hashlib.sha256(source.read_bytes()).hexdigest()
        shutil.copy(source, blob)
        (snapshot / source.name).symlink_to(Path("../../blobs") / blob.name)
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text(COMMIT)
    return snapshot


def test_an_intact_hub_cache_entry_is_used_offline(hub_cache):
    assert resolve_source(HUB_ID) == HUB_ID


@pytest.mark.parametrize("damage", ["truncated weights", "empty config.json", "corrupt tokenizer_config.json"])
def test_a_damaged_hub_cache_entry_names_the_folder_to_delete(hub_cache, damage):
    name, spoil = DAMAGES[damage]
    spoil((hub_cache / name).resolve())  # the blob the link points at
    with pytest.raises(ModelLoadError) as info:
        load_model(HUB_ID, CPU)
    entry = hub_cache.parent.parent
    message = str(info.value)
    assert f"damaged file {name} in the Hugging Face cache" in message
    assert f"delete its cache folder {entry}" in message and f"hf cache rm model/{HUB_ID}" in message
    assert "network access" in message


def test_a_hub_cache_link_to_a_lost_blob_is_named(hub_cache):
    (hub_cache / "tokenizer.json").resolve().unlink()
    with pytest.raises(ModelLoadError, match=r"damaged file tokenizer\.json in the Hugging Face cache: it is a link"):
        load_tokenizer(HUB_ID)


@pytest.mark.subprocess
def test_the_web_ui_still_starts_with_a_damaged_folder(folder):
    damaged = _damage(folder, "truncated weights")
    with app_py_serving("--model", str(folder)) as url:
        with urllib.request.urlopen(url + "config", timeout=30) as response:
            assert response.status == 200
            config = response.read().decode()
    shown = json.dumps(plain(str(damaged)))[1:-1]  # the header shows the reason as plain text
    assert "app.unavailable" in config and shown in config  # a plain sentence; the reason for the operator


def test_a_cli_task_with_a_damaged_folder_is_one_error_line(folder, tmp_path, capsys):
    damaged = _damage(folder, "truncated weights")
    document = tmp_path / "notes.txt"
    document.write_text("The meeting is on Monday.")
    spec = importlib.util.spec_from_file_location("app_main", REPO_ROOT / "app.py")
    app_main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app_main)
    assert app_main.main(["--model", str(folder), "ask", str(document), "When is the meeting?"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(damaged) in errors[0] and "Traceback" not in err
