"""The loader: local folders, tiny-random, the report, and clear refusals."""

import pytest

from model.loader import ModelLoadError, load_model
from model.runtime import Runtime

CPU = Runtime("cpu", "float32", "none")


def test_report_describes_what_was_loaded(tiny_loaded, tiny_stock):
    report = tiny_loaded.report
    assert (report.device, report.dtype, report.quantization) == ("cpu", "float32", "none")
    assert report.parameters == sum(p.numel() for p in tiny_stock.parameters())  # counted before packing
    assert report.weight_bytes == report.parameters * 4
    assert report.context_limit == 131072
    assert report.is_demo
    assert "tiny-random" in report.summary() and "float32" in report.summary()


def test_local_folder_loads_like_a_hub_model(tiny_checkpoint):
    loaded = load_model(str(tiny_checkpoint), CPU)
    assert type(loaded.model).__name__ == "GraniteMoe"
    assert not loaded.report.is_demo


def test_unreachable_hub_names_the_offline_options():
    with pytest.raises(ModelLoadError) as info:
        load_model("ibm-granite/granite-3.1-1b-a400m-base", CPU)
    assert "--model PATH" in str(info.value) and "--model tiny-random" in str(info.value)


def test_pickle_only_folder_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelLoadError, match=r"no \.safetensors weights \(found only pytorch_model\.bin\)"):
        load_model(str(tmp_path), CPU)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "nowhere"), CPU)


def test_remote_code_in_a_model_folder_is_never_run(tiny_checkpoint, tmp_path):
    """A folder whose config points at its own Python code (auto_map): that code must not run."""
    import contextlib
    import json
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, folder)
    marker = tmp_path / "remote-code-ran"
    (folder / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import GraniteMoeForCausalLM as EvilModel, GraniteMoeConfig as EvilConfig\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    with contextlib.suppress(ModelLoadError):  # refusing is fine too; running the folder's code is not
        load_model(str(folder), CPU)
    assert not marker.exists()
