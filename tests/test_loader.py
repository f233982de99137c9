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
    assert type(loaded.model).__name__ == "GraniteMoeForCausalLM"
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
