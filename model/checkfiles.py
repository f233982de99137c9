"""Cheap integrity checks of a model folder's files, run before transformers reads them.

A truncated `model.safetensors` (a full disk, an interrupted copy) or an empty `config.json` makes
transformers fail deep inside with a traceback that names neither the file nor the cure. These checks
read only the small parts of each file (the safetensors header, the JSON files) and name the file
that is damaged; the loader turns that into advice (copy the file again, delete the cache entry).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

SAFETENSORS_INDEX = "model.safetensors.index.json"
_MAX_HEADER_BYTES = 100 * 2**20  # real headers are kilobytes; a bigger length is a damaged file
_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8, "C64": 8,
}  # fmt: skip
# JSON files transformers reads as objects; any other *.json in the folder must at least parse.
_JSON_OBJECTS = {
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "vocab.json", "added_tokens.json", SAFETENSORS_INDEX,
}  # fmt: skip
# Tokenizer files that are not JSON: an empty one is always a damaged one.
_NON_EMPTY = ("merges.txt", "vocab.txt", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model")


class DamagedFile(ValueError):
    """A model file that is missing, truncated or unreadable; `path` names it, `reason` says how."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def check_model_files(folder: Path, *, weights: bool = True, missing_ok: bool = False) -> None:
    """Raise DamagedFile for the first damaged file in `folder`. `weights=False` checks only the
    config and tokenizer files; `missing_ok` lets shards named by the index be absent (a hub
    cache entry downloads them later)."""
    files = sorted(p for p in folder.iterdir() if not p.is_dir())
    for path in files:
        if path.is_symlink() and not path.exists():
            raise DamagedFile(path, "it is a link to a file that is gone (a deleted or unfinished download)")
    for path in files:
        if path.suffix == ".json":
            check_json(path)
        elif path.name in _NON_EMPTY and path.stat().st_size == 0:
            raise DamagedFile(path, "the file is empty")
    if weights:
        _check_weights(folder, missing_ok)


def check_json(path: Path) -> Any:
    """Parse `path` as JSON (an object where transformers expects one) and return it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DamagedFile(path, f"it cannot be read as UTF-8 text ({exc})") from exc
    if not text.strip():
        raise DamagedFile(path, "the file is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DamagedFile(path, f"it is not valid JSON ({exc})") from exc
    if path.name in _JSON_OBJECTS and not isinstance(data, dict):
        raise DamagedFile(path, f"it holds a JSON {type(data).__name__}, not an object")
    return data


def _check_weights(folder: Path, missing_ok: bool) -> None:
    """Check the weights transformers loads: model.safetensors, the shards of the index, or else
    every .safetensors file there is."""
    single, index = folder / "model.safetensors", folder / SAFETENSORS_INDEX
    if single.exists():
        check_safetensors(single)
    if index.exists():
        check_sharded(index, missing_ok)
    if not single.exists() and not index.exists():
        for path in sorted(folder.glob("*.safetensors")):
            check_safetensors(path)


def check_sharded(index: Path, missing_ok: bool = False) -> None:
    """The index must map tensor names to shard files; each shard must exist (unless `missing_ok`),
    pass `check_safetensors` and hold the tensors the index says it holds."""
    weight_map = check_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise DamagedFile(index, 'it has no "weight_map" from tensor names to shard files')
    for shard_name in sorted(set(weight_map.values())):
        shard = index.parent / shard_name
        if not shard.exists():
            if missing_ok:
                continue
            raise DamagedFile(shard, f"the file is missing (named by {index.name})")
        stored = check_safetensors(shard)
        absent = [name for name, where in weight_map.items() if where == shard_name and name not in stored]
        if absent:
            raise DamagedFile(shard, f"it lacks {len(absent):,} tensors that {index.name} puts there, e.g. {absent[0]}")


def check_safetensors(path: Path) -> set[str]:
    """Check a safetensors file from its header alone and return its tensor names.

    Layout: 8 bytes little-endian header length N, N bytes of JSON (tensor name -> dtype, shape,
    data_offsets [begin, end] into the data), then the data, which the offsets must cover exactly:
    a truncated file ends before the last tensor does.
    """
    try:
        with path.open("rb") as file:
            size = path.stat().st_size
            if size < 8:
                raise DamagedFile(path, f"it is {size} bytes, shorter than the 8-byte header length")
            (length,) = struct.unpack("<Q", file.read(8))
            if not 2 <= length <= min(size - 8, _MAX_HEADER_BYTES):
                raise DamagedFile(path, f"its header length ({length:,} bytes) does not fit the file ({size:,} bytes)")
            raw = file.read(length)
    except OSError as exc:
        raise DamagedFile(path, f"it cannot be read ({exc})") from exc
    header = _parse_header(path, raw)
    data_bytes = size - 8 - length
    end = max((_tensor_end(path, name, entry) for name, entry in header.items() if name != "__metadata__"), default=0)
    if end != data_bytes:
        cause = "the file is truncated" if end > data_bytes else "the file has extra bytes at the end"
        raise DamagedFile(path, f"its tensors need {end:,} bytes of data but it holds {data_bytes:,}: {cause}")
    return set(header) - {"__metadata__"}


def _parse_header(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DamagedFile(path, f"its header is not valid JSON ({exc}): this is no intact safetensors file") from exc
    if not isinstance(header, dict):
        raise DamagedFile(path, "its header is not a JSON object: this is no intact safetensors file")
    return header


def _tensor_end(path: Path, name: str, entry: Any) -> int:
    """Where the tensor's data ends; its offsets must be sane and, for a known dtype, hold exactly
    its shape's bytes."""
    try:
        dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        numbers = (*shape, begin, end)
        valid = isinstance(dtype, str) and all(isinstance(n, int) and n >= 0 for n in numbers) and begin <= end
    except (TypeError, KeyError, ValueError):
        valid = False
    if not valid:
        raise DamagedFile(path, f"the header entry of tensor {name!r} is malformed")
    if dtype in _DTYPE_BYTES and end - begin != math.prod(shape) * _DTYPE_BYTES[dtype]:
        raise DamagedFile(path, f"tensor {name!r} has {end - begin:,} bytes, not the {dtype} {shape} it claims")
    return end
