"""The one place that decides device, dtype and quantization.

`decide_runtime` is a pure function of the user's settings and the hardware facts, so it can be
tested without the hardware; `detect_hardware` reads those facts from torch.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Literal, get_args

DeviceSetting = Literal["auto", "cpu", "cuda"]
QuantSetting = Literal["auto", "bf16", "fp16", "fp32", "4bit", "int8", "bf16-weights"]
DEVICE_CHOICES: tuple[DeviceSetting, ...] = get_args(DeviceSetting)
QUANT_CHOICES: tuple[QuantSetting, ...] = get_args(QuantSetting)

_DTYPE_OF_QUANT = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


@dataclass(frozen=True)
class Hardware:
    """What the machine offers, as far as the runtime decision cares."""

    cuda_available: bool
    cuda_bf16: bool = False
    gpu_name: str | None = None
    cpu_bf16_faster: bool = False  # this CPU multiplies bf16 matrices much faster than fp32 (AMX)


@dataclass(frozen=True)
class Runtime:
    """Where and how the model runs. `dtype` is a torch dtype name ("float32", ...)."""

    device: Literal["cpu", "cuda"]
    dtype: str
    quantization: Literal["none", "4bit", "int8", "bf16-weights"]

    def describe(self) -> str:
        quant = {"4bit": "4-bit weights", "int8": "int8 decode weights", "bf16-weights": "bf16 weights"}.get(
            self.quantization, "no quantization"
        )
        return f"{self.device}, {self.dtype}, {quant}"


def decide_runtime(device: DeviceSetting, quant: QuantSetting, hardware: Hardware) -> Runtime:
    """Choose device, compute dtype and quantization. An explicit setting wins over the defaults.

    `bf16-weights` (CPU): the large matrices stored in bf16 (as Granite's checkpoints store them:
    nothing is lost), the arithmetic in fp32 (model/bf16_weights.py).
    Defaults: CPU -> bf16 where the CPU multiplies bf16 faster than fp32 (AMX: prefill several
    times faster, and decode streams half the bytes), else fp32 arithmetic on bf16-stored weights
    (bf16 matmuls are many times slower on CPUs without native bf16; the storage still halves
    decode's bytes: 1.5x faster decode, the same prefill; architectures other than GraniteMoE run
    plain fp32); CUDA with bf16 -> bf16; CUDA without bf16 (e.g. T4) -> fp16.
    Raises ValueError for combinations the hardware cannot run, with a message that says what to
    use instead.
    """
    if device not in DEVICE_CHOICES:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if quant not in QUANT_CHOICES:
        raise ValueError(f"unknown quantization {quant!r}; choose one of {', '.join(QUANT_CHOICES)}")
    chosen_device = _choose_device(device, hardware)
    if quant == "4bit":
        if chosen_device != "cuda":
            raise ValueError(
                "--quant 4bit needs a CUDA GPU (bitsandbytes kernels), and this run is on the CPU; "
                "use --quant auto (the CPU default: bf16, or bf16 weights with fp32 arithmetic) or run on a "
                "machine with a GPU"
            )
        return Runtime("cuda", _best_cuda_dtype(hardware), "4bit")
    if quant == "int8":
        if chosen_device != "cpu":
            raise ValueError("--quant int8 is the CPU's decode path; on a GPU use --quant 4bit or bf16")
        return Runtime("cpu", "float32", "int8")
    if quant == "bf16-weights":
        if chosen_device != "cpu":
            raise ValueError("--quant bf16-weights is a CPU mode (fp32 arithmetic); on a GPU use --quant bf16")
        return Runtime("cpu", "float32", "bf16-weights")
    if quant == "auto":
        if chosen_device == "cuda":
            return Runtime("cuda", _best_cuda_dtype(hardware), "none")
        if hardware.cpu_bf16_faster:
            return Runtime("cpu", "bfloat16", "none")
        return Runtime("cpu", "float32", "bf16-weights")
    if quant == "bf16" and chosen_device == "cuda" and not hardware.cuda_bf16:
        name = hardware.gpu_name or "this GPU"
        raise ValueError(f"{name} does not support bf16; use --quant fp16 or --quant fp32")
    return Runtime(chosen_device, _DTYPE_OF_QUANT[quant], "none")


def _choose_device(device: DeviceSetting, hardware: Hardware) -> Literal["cpu", "cuda"]:
    if device == "cpu":
        return "cpu"
    if device == "cuda":
        if not hardware.cuda_available:
            raise ValueError("--device cuda was asked for, but no CUDA GPU is available; use --device cpu")
        return "cuda"
    return "cuda" if hardware.cuda_available else "cpu"


def _best_cuda_dtype(hardware: Hardware) -> str:
    return "bfloat16" if hardware.cuda_bf16 else "float16"


def detect_hardware() -> Hardware:
    """Read the hardware facts from torch (imported here so the decision itself stays pure)."""
    import torch

    if not torch.cuda.is_available():
        return Hardware(cuda_available=False, cpu_bf16_faster=cpu_bf16_faster())
    return Hardware(
        cuda_available=True,
        cuda_bf16=torch.cuda.is_bf16_supported(),
        gpu_name=torch.cuda.get_device_name(0),
    )


def cpu_bf16_faster(ratio: float = 0.6) -> bool:
    """Whether bf16 matrix products of a prefill's shape take under `ratio` of fp32's time here.
    Timed rather than read from the CPU flags: machines of this kind differ, and what counts is
    what torch's kernels make of them (AMX tiles: several times faster; AVX2 only: emulated,
    slower). About a tenth of a second, once per process, on the compute thread."""
    from model import compute  # torch is imported only when the hardware is probed

    return compute.run(bf16_time_ratio) < ratio


@functools.cache
def bf16_time_ratio() -> float:
    """bf16's time over fp32's for a (512 x 1024) by (1024 x 1024) product on this CPU."""
    import torch

    states, weight = torch.randn(512, 1024), torch.randn(1024, 1024)

    def best_seconds(a: torch.Tensor, b: torch.Tensor) -> float:
        times = []
        for _ in range(12):
            started = time.perf_counter()
            torch.nn.functional.linear(a, b)
            times.append(time.perf_counter() - started)
        return min(times[6:])  # the first calls set the kernels up (oneDNN per shape; AMX per thread)

    with torch.inference_mode():
        return best_seconds(states.bfloat16(), weight.bfloat16()) / best_seconds(states, weight)
