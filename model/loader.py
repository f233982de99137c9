"""Load a tokenizer and a causal LM from a hub id, a local folder or `tiny-random`.

Safetensors only, never remote code. Device and dtype come from `model.runtime`; this module
only carries them out and reports what it loaded (parameters, weight bytes, context limit).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from model import compute, granitemoe, native
from model.bf16_weights import store_bf16_weights
from model.checkfiles import DamagedFile, check_model_files
from model.checkpoints import TINY_RANDOM, cache_root, tiny_random_path
from model.errors import first_line
from model.granitemoe import GraniteMoe
from model.quant4 import quantize_4bit
from model.quant8 import quantize_int8
from model.runtime import Runtime

logger = logging.getLogger(__name__)

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_START_HINT = (
    "start with --model PATH (a local folder with config.json, tokenizer files and .safetensors "
    "weights) or --model tiny-random (the built-in offline demo model)"
)

_TOKENIZER_HINT = (
    "the openai backend counts tokens with the model's own tokenizer: pass --model PATH (a folder "
    "with the served model's tokenizer files, e.g. the folder the server loads)"
)


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says why and what to do instead."""


@dataclass(frozen=True)
class LoadReport:
    """What was loaded and how it runs."""

    model_id: str
    source: str
    device: str
    dtype: str
    quantization: str
    parameters: int
    weight_bytes: int
    context_limit: int
    load_seconds: float
    is_demo: bool

    def summary(self) -> str:
        quant = {"4bit": "4-bit", "int8": "int8 decode", "bf16-weights": "bf16 weights"}.get(
            self.quantization, "no quantization"
        )
        return (
            f"{self.model_id} · {self.device} · {self.dtype} · {quant} · "
            f"{self.parameters / 1e6:,.1f}M parameters · {self.weight_bytes / 2**20:,.0f} MiB of weights"
        )


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    report: LoadReport


def load_model(model_id: str, runtime: Runtime) -> LoadedModel:
    """Load `model_id` (hub id, local folder or `tiny-random`) as `runtime` says (on the compute
    thread that will run it: model/compute.py)."""
    return compute.run(_load_model, model_id, runtime)


def _load_model(model_id: str, runtime: Runtime) -> LoadedModel:
    started = time.perf_counter()
    source = resolve_source(model_id)
    model, tokenizer = _from_pretrained(source, runtime)
    parameters = sum(p.numel() for p in model.parameters())
    model = prepare_weights(model, runtime)
    report = LoadReport(
        model_id=model_id,
        source=source,
        device=runtime.device,
        dtype=runtime.dtype,
        quantization=_applied_quantization(model, runtime),
        parameters=parameters,
        weight_bytes=weight_bytes(model),
        context_limit=_context_limit(model.config),
        load_seconds=time.perf_counter() - started,
        is_demo=model_id == TINY_RANDOM,
    )
    logger.info("loaded %s in %.1f s", report.summary(), report.load_seconds)
    return LoadedModel(model, tokenizer, report)


def prepare_weights(model: Any, runtime: Runtime) -> Any:
    """The model the engine runs, made from a freshly built transformers `model`: our own
    GraniteMoE (model/granitemoe.py) on the same tensors for GraniteMoE checkpoints, the model
    itself for other architectures; quantized as `runtime` says, and the native CPU kernels
    ready on the CPU (compiled now, not during the first request)."""
    if granitemoe.supports(model.config):
        model = GraniteMoe.from_stock(model)
    if _bf16_weights_beyond_granitemoe(model, runtime):
        logger.warning("bf16 weights cover GraniteMoE models; this %s model runs in fp32", model.config.model_type)
        model = model.float()  # read as stored (bf16): widened for transformers' own forward
    elif runtime.quantization != "none":
        _quantize(model, runtime.quantization)
    if runtime.device == "cpu":
        native.kernels()
        if isinstance(model, GraniteMoe):
            model.pack_experts()
            model.warm_up()
    return model


def _bf16_weights_beyond_granitemoe(model: Any, runtime: Runtime) -> bool:
    """bf16 weights asked for a model our forward does not run: it runs plain fp32 instead."""
    return runtime.quantization == "bf16-weights" and not isinstance(model, GraniteMoe)


def _applied_quantization(model: Any, runtime: Runtime) -> str:
    """What `prepare_weights` did."""
    return "none" if _bf16_weights_beyond_granitemoe(model, runtime) else runtime.quantization


def weight_bytes(model: Any) -> int:
    """Memory of the weights as stored: parameters and buffers (the 4-bit and int8 weights)."""
    unique = {tensor.data_ptr(): tensor for tensor in model.state_dict().values()}  # a tied head counts once
    return sum(tensor.numel() * tensor.element_size() for tensor in unique.values())


def _quantize(model: Any, kind: str) -> None:
    if not isinstance(model, GraniteMoe):
        raise ModelLoadError(f"--quant {kind} covers GraniteMoE models (their experts); this model has none")
    if kind == "bf16-weights":
        store_bf16_weights(model)
        return
    try:
        quantize_4bit(model) if kind == "4bit" else quantize_int8(model)
    except ImportError as exc:
        raise ModelLoadError(f"--quant {kind} needs the bitsandbytes package ({exc})") from exc


def resolve_source(model_id: str, *, weights: bool = True) -> str:
    """Turn the --model value into something `from_pretrained` can read, or explain why not.
    `weights=False`: only the tokenizer is wanted (a folder need not hold weights)."""
    if model_id == TINY_RANDOM:
        return str(_tiny_random())
    path = Path(model_id).expanduser()
    if path.exists() or model_id.startswith((".", "/", "~")):
        if not weights and not path.is_dir():
            raise ModelLoadError(f"tokenizer folder {path} does not exist or is not a folder; {_TOKENIZER_HINT}")
        if weights:
            _check_local_folder(path)
        _check_files(path, weights)
        return str(path)
    snapshot = _cached_snapshot(model_id)
    if snapshot is None:
        _check_hub_reachable(model_id, _START_HINT if weights else _TOKENIZER_HINT)
    else:
        _check_files(snapshot, weights, hub_id=model_id)
    return model_id


def _tiny_random() -> Path:
    """The demo checkpoint, built (or rebuilt, if damaged) on first use."""
    try:
        return tiny_random_path()
    except OSError as exc:  # e.g. a full disk while building it
        raise ModelLoadError(f"could not build the tiny-random checkpoint in {cache_root()}: {exc}") from exc


def _check_local_folder(path: Path) -> None:
    if not path.is_dir():
        raise ModelLoadError(f"model folder {path} does not exist or is not a folder; {_START_HINT}")
    if not (path / "config.json").exists():
        raise ModelLoadError(f"{path} has no config.json, so it is not a model folder; {_START_HINT}")
    if not any(path.glob("*.safetensors")):
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in _PICKLE_SUFFIXES)
        found = f" (found only {', '.join(pickles)})" if pickles else ""
        raise ModelLoadError(
            f"{path} has no .safetensors weights{found}. Only safetensors are loaded, because pickle "
            "checkpoints can run arbitrary code; convert the weights to safetensors first"
        )


def _check_files(folder: Path, weights: bool, hub_id: str | None = None) -> None:
    """Refuse a folder with a damaged file (truncated weights, an empty config or tokenizer file),
    naming the file and what to do about it, before transformers fails on it with a traceback."""
    try:
        check_model_files(folder, weights=weights, missing_ok=hub_id is not None)
    except DamagedFile as exc:
        if hub_id is None:
            cure = f"copy this file into {folder} again from the original model"
            raise ModelLoadError(f"damaged model file {exc.path}: {exc.reason}; {cure}") from exc
        place = f"{exc.path.name} in the Hugging Face cache"
        raise ModelLoadError(f"{hub_id}: damaged file {place}: {exc.reason}; {_hub_cure(hub_id, folder)}") from exc


def _hub_cure(hub_id: str, snapshot: Path) -> str:
    """What to do about a damaged download in the Hugging Face cache: delete it, fetch it again."""
    entry = snapshot.parent.parent  # models--org--name/snapshots/<commit>
    return (
        f"delete its cache folder {entry} (`hf cache rm model/{hub_id}` or `rm -r {entry}`), then start again "
        "with network access to download it again"
    )


def load_tokenizer(model_id: str) -> Any:
    """Only the tokenizer of `model_id` (hub id, local folder or `tiny-random`): the openai
    backend counts tokens and plans budgets here while the server runs the model."""
    from transformers import AutoTokenizer

    source = resolve_source(model_id, weights=False)
    with _load_errors(source, _TOKENIZER_HINT, "the tokenizer of "):
        return AutoTokenizer.from_pretrained(source, trust_remote_code=False)


def _check_hub_reachable(model_id: str, hint: str = _START_HINT) -> None:
    """Fail fast and clearly when the hub cannot be reached and the model is not cached locally.

    Without this, huggingface_hub retries for most of a minute before giving a generic error.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise ModelLoadError(f"{model_id} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; {hint}")
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or 443
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        raise ModelLoadError(
            f"cannot download {model_id}: the Hugging Face Hub ({host}) is unreachable ({exc}) and the "
            f"model is not in the local cache; {hint}"
        ) from exc


def _cached_snapshot(model_id: str) -> Path | None:
    """The folder of `model_id` in the local Hugging Face cache (its current snapshot), if there."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(model_id, "config.json")
    except Exception:  # a malformed id is not cached; from_pretrained will explain it
        return None
    return Path(found).parent if isinstance(found, str) else None


def _from_pretrained(source: str, runtime: Runtime) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with _load_errors(source, _START_HINT):
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(
            source,
            # bf16 weights for fp32 arithmetic: read as stored, the small tensors widened after
            dtype=torch.bfloat16 if runtime.quantization == "bf16-weights" else getattr(torch, runtime.dtype),
            use_safetensors=True,
            trust_remote_code=False,
        )
    model.to(runtime.device)
    model.eval()
    return model, tokenizer


@contextmanager
def _load_errors(source: str, hint: str, what: str = "") -> Iterator[None]:
    """Turn any failure of transformers reading `source` (a damaged file the checks missed, a
    wrong config, a failed download) into a ModelLoadError: the first line of the reason and what to
    do, never a traceback. Running out of memory and Ctrl-C are not load errors and pass."""
    try:
        yield
    except MemoryError:
        raise
    except Exception as exc:
        logger.info("loading %s failed", source, exc_info=True)  # the traceback, with --verbose
        raise ModelLoadError(f"could not load {what}{source}: {first_line(exc)}; {_retry_hint(source, hint)}") from exc


def _retry_hint(source: str, hint: str) -> str:
    """`hint`, after the cure for a damaged copy of the model where there is one to point at."""
    folder = Path(source)
    if folder.parent == cache_root() and folder.name.startswith(f"{TINY_RANDOM}-"):
        return f"delete {folder} to have the demo model built again; {hint}"
    if folder.is_dir():
        return f"if a file in {folder} is damaged, copy it again; {hint}"
    snapshot = _cached_snapshot(source)
    return f"if the cached download is damaged, {_hub_cure(source, snapshot)}; {hint}" if snapshot else hint


def _context_limit(config: Any) -> int:
    return int(getattr(config, "max_position_embeddings", 0) or 0) or 4096
