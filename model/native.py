"""The project's own CPU kernels (`model/cpu_kernels.cpp`), compiled on first use.

They make the products of a handful of fp32 rows (decode, a question on a cached document)
stream the weights at the memory's speed, the weights fp32, bf16 or int8 (one scale per row);
`model.kernels`, `model.moe` and `model.quant8` use them on the CPU.
The first call compiles them with the machine's C++ compiler (about half a minute, once: the build
is kept under `TORCH_EXTENSIONS_DIR`, by default `~/.cache/torch_extensions`) for the
instructions of the CPU it runs on. Where that is impossible (no compiler, an unsupported
platform) or `GRANITE_LONGDOC_NATIVE=0` is set, `kernels()` returns None and the callers use
oneDNN or torch's own products instead: slower, never wrong.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import torch

from model.errors import first_line

logger = logging.getLogger(__name__)

SWITCH = "GRANITE_LONGDOC_NATIVE"
# The instruction set the kernels are built for: the machine's own by default. An older one (e.g.
# x86-64-v3: AVX2 and FMA, no AVX-512) measures on this machine what an AVX2-only CPU would run.
MARCH = "GRANITE_LONGDOC_NATIVE_MARCH"
SOURCE = Path(__file__).with_name("cpu_kernels.cpp")
# Compiled with it into one module; the header is what they share (model/cpu_amx.h).
SOURCES = (SOURCE, SOURCE.with_name("cpu_attention.cpp"))
HEADER = SOURCE.with_name("cpu_amx.h")
# New positions from which `attention_bf16` is faster than torch's kernel, whose cost jumps past 16
# (benchmarks/attention.py; ours costs about the same for any count up to 32: it rearranges the keys).
MIN_ATTENTION_ROWS = 17
MAX_ROWS = 16  # above this many rows oneDNN's blocked products are faster (benchmarks/generation.py)
# bf16 weights where the CPU has AVX512-BF16: our dot products stream them faster up to 4 rows
# (24 layers' qkv: 2.6-3.3 ms against oneDNN's 5.5-6.4), slower from 5 (8.5 against 5.6).
MAX_BF16_DOT_ROWS = 4
# torch marks a build in progress with a lock file and waits, for ever, while it exists. A process
# killed while compiling (a restarted Space, a stopped test run) leaves it behind: every later
# start would hang. A compile takes about half a minute; a lock older than this is left over.
STALE_LOCK_SECONDS = 600
_build_lock = threading.Lock()


def enabled() -> bool:
    """Whether the environment allows the native kernels (`GRANITE_LONGDOC_NATIVE=0` turns them off)."""
    return os.environ.get(SWITCH, "1").strip().lower() not in {"0", "false", "no", "off"}


def kernels() -> ModuleType | None:
    """The compiled kernels, or None where they are switched off or cannot be built here."""
    if not enabled():
        return None
    with _build_lock:
        return _build()


NO_SCALE = torch.empty(0)  # the scales of fp32 and bf16 weights
WEIGHT_DTYPES = (torch.float32, torch.bfloat16, torch.int8)
STATE_DTYPES = (torch.float32, torch.bfloat16)  # bf16 states are computed with in fp32


def applies(weight: torch.Tensor, states: torch.Tensor) -> bool:
    """Whether the native small product handles `states @ weight.T` (weight fp32, bf16 or int8)."""
    rows = states.numel() // max(states.shape[-1], 1)
    eligible = (
        rows <= MAX_ROWS
        and weight.device.type == "cpu"
        and weight.dtype in WEIGHT_DTYPES
        and states.dtype in STATE_DTYPES
        and weight.dim() == 2
        and weight.shape[1] % 16 == 0
        and weight.is_contiguous()
        and not torch.is_grad_enabled()
        and kernels() is not None
    )
    return eligible and (rows <= MAX_BF16_DOT_ROWS or not (weight.dtype == torch.bfloat16 and _dots_bf16()))


@functools.cache
def _dots_bf16() -> bool:
    """Whether bf16 products here are `vdpbf16ps` dot products (AVX512-BF16)."""
    return kernels().rounds_bf16_states()


def product(states: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor = NO_SCALE) -> torch.Tensor:
    """`states @ weight.T` (times the rows' scales) by the native kernel where `applies` says so:
    computed in fp32 and returned in the states' dtype."""
    return kernels().small_linear(states.float(), weight, scale).to(states.dtype)


def moe_few_tokens(states, gate_up, gate_up_scale, down, down_scale, index, weights) -> torch.Tensor:
    """A handful of tokens through their chosen experts by the native kernel, computed in fp32
    and returned in the states' dtype."""
    out = kernels().moe_few_tokens(states.float(), gate_up, gate_up_scale, down, down_scale, index, weights.float())
    return out.to(states.dtype)


def moe_one_token(state, gate_up, gate_up_scale, down, down_scale, chosen, weights) -> torch.Tensor:
    """One token through its chosen experts by the native kernel, computed in fp32 and returned
    in the state's dtype."""
    out = kernels().moe_one_token(state.float(), gate_up, gate_up_scale, down, down_scale, chosen, weights.float())
    return out.to(state.dtype)


def norms(states: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the native RMSNorm (`rms_norm_rows`) handles these states and weight."""
    return (
        states.device.type == "cpu"
        and states.dtype == weight.dtype
        and states.dtype in STATE_DTYPES
        and states.shape[-1] % 16 == 0
        and weight.is_contiguous()
        and not torch.is_grad_enabled()
        and kernels() is not None
    )


def rotates(states: torch.Tensor, cos: torch.Tensor) -> bool:
    """Whether the native rotary positions (`rotate_heads`) handle states (n, heads, dim)."""
    return (
        states.device.type == "cpu"
        and states.dtype == cos.dtype
        and states.dtype in STATE_DTYPES
        and states.is_contiguous()
        and states.shape[-1] % 32 == 0
        and not torch.is_grad_enabled()
        and kernels() is not None
    )


def attends(query: torch.Tensor, keys: torch.Tensor) -> bool:
    """Whether the native bf16 attention (`attention_bf16`, AMX tiles) handles query (heads, n,
    dim) over keys (kv_heads, past + n, dim): a chunk of MIN_ATTENTION_ROWS positions or more
    (below, torch's kernel is as fast: ours rearranges all the cached keys per call), head
    dimension a multiple of 64."""
    module = kernels() if query.device.type == "cpu" and query.dtype == torch.bfloat16 else None
    return (
        module is not None
        and query.shape[1] >= MIN_ATTENTION_ROWS
        and keys.dtype == torch.bfloat16
        and query.shape[-1] % 64 == 0
        and query.stride(-1) == 1
        and keys.stride(-1) == 1
        and not torch.is_grad_enabled()
        and module.amx_available()
    )


def packs_experts(weight: torch.Tensor) -> bool:
    """Whether experts stored like `weight` are packed for `moe_packed`: bf16 on a CPU with
    AVX512-BF16 (AMX tiles too where it has them) whose sizes the packed kernels take (multiples
    of 64)."""
    module = kernels() if weight.device.type == "cpu" and weight.dtype == torch.bfloat16 else None
    return (
        module is not None
        and module.packs_experts()
        and weight.dim() == 3
        and weight.shape[1] % 64 == 0
        and weight.shape[2] % 64 == 0
    )


def pack_experts(weight: torch.Tensor) -> torch.Tensor:
    """(experts, rows, n) bf16 -> (experts, rows / 16, n / 2, 32): per block of 16 rows, per pair
    of columns, those 16 rows' two values (the layout of model/cpu_kernels.cpp: moe_packed)."""
    experts, rows, n = weight.shape
    blocks = weight.reshape(experts, rows // 16, 16, n // 2, 2).permute(0, 1, 3, 2, 4)
    return blocks.reshape(experts, rows // 16, n // 2, 32).contiguous()


def unpack_experts(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of `pack_experts`."""
    experts, blocks, pairs, _ = packed.shape
    rows = packed.reshape(experts, blocks, pairs, 16, 2).permute(0, 1, 3, 2, 4)
    return rows.reshape(experts, blocks * 16, pairs * 2)


def moe_packed(states, gate_up, down, index, weights) -> torch.Tensor:
    """Tokens through their chosen packed experts by the native kernel (any number of tokens),
    computed with fp32 sums and returned in the states' dtype (fp32 or bf16, read as they are)."""
    dtype = states.dtype
    read = states if dtype in STATE_DTYPES else states.float()
    return kernels().moe_packed(read.contiguous(), gate_up, down, index, weights.float()).to(dtype)


@functools.cache
def _build() -> ModuleType | None:
    if platform.machine().lower() not in {"x86_64", "amd64", "aarch64", "arm64"}:
        logger.info("no native CPU kernels for %s; using oneDNN/torch products", platform.machine())
        return None
    try:
        from torch.utils.cpp_extension import get_default_build_root, load

        logger.info("loading the native CPU kernels (the first time on a machine compiles them: about half a minute)")
        name = f"granite_longdoc_cpu_{_machine_tag()}"
        folder = Path(get_default_build_root()) / f"{name}_py{sys.version_info.major}{sys.version_info.minor}"
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_lock(folder)
        module = load(
            name=name,
            sources=[str(source) for source in SOURCES],
            build_directory=str(folder),
            extra_cflags=["-O3", f"-march={_march()}", "-fopenmp"],
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
        _self_check(module)
        return module
    except Exception as error:  # no compiler, no ninja, a failed self-check: fall back, say why once
        logger.warning("native CPU kernels unavailable (%s); using oneDNN/torch products", first_line(error))
        return None


def remove_stale_lock(folder: Path, now: float | None = None) -> bool:
    """Remove the build lock a killed compile left in `folder` (older than STALE_LOCK_SECONDS);
    True when there was one."""
    lock = folder / "lock"
    try:
        age = (time.time() if now is None else now) - lock.stat().st_mtime
    except FileNotFoundError:
        return False
    if age < STALE_LOCK_SECONDS:
        return False  # another process may be compiling right now: torch waits for it
    logger.warning("removing a build lock left %.0f minutes ago by a compile that did not finish", age / 60)
    lock.unlink(missing_ok=True)
    return True


def _machine_tag() -> str:
    """A short hash of the CPU's features: a build for one CPU (-march=native) must not be
    reused by a different one sharing the same cache folder. The shared header is in it too:
    torch rebuilds when a source file changes, not when a header it includes does."""
    try:
        flags = next(
            line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith(("flags", "Features"))
        )
    except (OSError, StopIteration):
        flags = platform.processor() or platform.machine()
    header = hashlib.sha256(HEADER.read_bytes()).hexdigest()
    return hashlib.sha256(f"{flags}|{torch.__version__}|{_march()}|{header}".encode()).hexdigest()[:10]


def _march() -> str:
    wanted = os.environ.get(MARCH, "native").strip() or "native"
    if not all(character.isalnum() or character in "-_." for character in wanted):
        raise ValueError(f"{MARCH}={wanted!r} is not an architecture name")
    return wanted


def _self_check(module: ModuleType) -> None:
    """Compare both kernels with torch on small random inputs, for every weight type, before
    trusting the build."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(40, 64, generator=generator)
    int8, int8_scale = torch.randint(-127, 128, (40, 64), generator=generator, dtype=torch.int8), torch.rand(40) + 0.1
    # bf16 weights: where the CPU has AVX512-BF16 the kernel rounds x to bf16 too (sums of 64
    # products of N(0, 1) values differ by about 0.02; a wrong kernel by whole units)
    cases = [(weight, NO_SCALE, weight, 1e-3), (weight.bfloat16(), NO_SCALE, weight.bfloat16().float(), 0.1),
             (int8, int8_scale, int8.float() * int8_scale[:, None], 1e-3)]  # fmt: skip
    for stored, scale, exact, atol in cases:
        for rows in (1, 3, 13):
            states = torch.randn(rows, 64, generator=generator)
            expected = states @ exact.T
            if not torch.allclose(module.small_linear(states, stored, scale), expected, atol=atol, rtol=1e-4):
                raise RuntimeError(f"small_linear disagrees with torch for {rows} rows of {stored.dtype} weights")
    gate_up, down = torch.randn(4, 64, 32, generator=generator), torch.randn(4, 32, 32, generator=generator)
    state, chosen, scale = torch.randn(1, 32, generator=generator), torch.tensor([2, 0]), torch.tensor([0.7, 0.3])
    expected = torch.zeros(1, 32)
    for expert, weight_of in zip(chosen.tolist(), scale.tolist(), strict=True):
        gate, up = (state @ gate_up[expert].T).chunk(2, dim=-1)
        expected += weight_of * ((torch.nn.functional.silu(gate) * up) @ down[expert].T)
    found = module.moe_one_token(state, gate_up, NO_SCALE, down, NO_SCALE, chosen, scale)
    if not torch.allclose(found, expected, atol=1e-4):
        raise RuntimeError("moe_one_token disagrees with torch")
