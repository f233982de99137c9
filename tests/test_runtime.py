"""The device / dtype / quantization decision, as a pure function of the hardware facts."""

import pytest

from model.runtime import Hardware, Runtime, decide_runtime

CPU = Hardware(cuda_available=False)
AMX = Hardware(cuda_available=False, cpu_bf16_faster=True)
H100 = Hardware(cuda_available=True, cuda_bf16=True, gpu_name="NVIDIA H100")
T4 = Hardware(cuda_available=True, cuda_bf16=False, gpu_name="Tesla T4")


@pytest.mark.parametrize(
    ("device", "quant", "hardware", "expected"),
    [
        ("auto", "auto", CPU, Runtime("cpu", "float32", "bf16-weights")),  # bf16 storage, fp32 arithmetic
        ("auto", "auto", AMX, Runtime("cpu", "bfloat16", "none")),
        ("auto", "auto", H100, Runtime("cuda", "bfloat16", "none")),
        ("auto", "auto", T4, Runtime("cuda", "float16", "none")),
        ("cpu", "auto", H100, Runtime("cpu", "float32", "bf16-weights")),
        ("cpu", "fp32", CPU, Runtime("cpu", "float32", "none")),
        ("cuda", "auto", T4, Runtime("cuda", "float16", "none")),
        ("auto", "fp32", H100, Runtime("cuda", "float32", "none")),
        ("auto", "fp16", H100, Runtime("cuda", "float16", "none")),
        ("cpu", "bf16", CPU, Runtime("cpu", "bfloat16", "none")),  # explicit wins, even when slow
        ("auto", "4bit", H100, Runtime("cuda", "bfloat16", "4bit")),
        ("auto", "4bit", T4, Runtime("cuda", "float16", "4bit")),
    ],
)
def test_decision_table(device, quant, hardware, expected):
    assert decide_runtime(device, quant, hardware) == expected


@pytest.mark.parametrize(
    ("device", "quant", "hardware", "message"),
    [
        ("auto", "4bit", CPU, "needs a CUDA GPU"),
        ("cpu", "4bit", H100, "needs a CUDA GPU"),
        ("cuda", "auto", CPU, "no CUDA GPU is available"),
        ("auto", "bf16", T4, "Tesla T4 does not support bf16"),
        ("tpu", "auto", CPU, "unknown device"),
        ("auto", "int3", CPU, "unknown quantization"),
    ],
)
def test_impossible_combinations_are_clear_errors(device, quant, hardware, message):
    with pytest.raises(ValueError, match=message):
        decide_runtime(device, quant, hardware)
