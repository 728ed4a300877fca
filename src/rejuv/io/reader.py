"""Hugging Face `save_pretrained` folders, read lazily.

The safetensors headers are parsed up front (names, shapes, dtypes, which file,
byte offsets), tensors are read one at a time with plain reads. Pickle weights
(`pytorch_model*.bin`) are refused unless the caller allows them.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from rejuv.errors import RejuvError
from rejuv.io.format import (
    DTYPES,
    PICKLE_INDEX,
    PICKLE_SINGLE,
    SAFE_INDEX,
    SAFE_SINGLE,
    as_numpy,
    as_torch,
    block_shape,
    dtype_name,
    itemsize,
    natural_key,
    row_nbytes,
    rows_of,
)

if TYPE_CHECKING:
    import torch


def pickle_refused(folder) -> str:
    """Why a folder with only pickle weights is refused, and what to do (every command says it alike)."""
    return (f"{folder}: weights are pickle files (pytorch_model*.bin), which can run arbitrary code when loaded; "
            "convert them to safetensors or pass --allow-pickle if you trust the source")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str  # safetensors name
    file: Path

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * itemsize(self.dtype)


class Checkpoint:
    """A `save_pretrained` folder whose tensors are listed without being read."""

    def __init__(self, path: str | os.PathLike, allow_pickle: bool = False, weights: list[Path] | None = None):
        """`weights`: read these files (a PEFT adapter's), with no config of their own, instead of a model's."""
        self.path = Path(path)
        if weights is not None:
            self.config, self._index, self.is_pickle = {}, None, any(f.suffix == ".bin" for f in weights)
            self._files, self._offsets, self._pickled, self.tensors = {}, {}, {}, {}
            for file in weights:
                self._scan(file)
            return
        if not self.path.is_dir():
            raise RejuvError(f"{self.path}: not a folder (expected a save_pretrained checkpoint)")
        config_file = self.path / "config.json"
        if not config_file.is_file():
            if (self.path / "adapter_config.json").is_file():
                raise RejuvError(f"{self.path}: a PEFT adapter, where a full model folder is needed here")
            raise RejuvError(f"{self.path}: no config.json, so this is not a save_pretrained model folder")
        try:
            self.config: dict = json.loads(config_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RejuvError(f"{config_file}: not valid JSON ({exc})") from exc
        if not isinstance(self.config, dict):
            raise RejuvError(f"{config_file}: expected a JSON object, got {type(self.config).__name__}")
        bad = non_finite_in(self.config)
        if bad:  # transformers would take it (an `rms_norm_eps` of NaN makes every output NaN)
            raise RejuvError(f"{config_file}: {bad} is not a finite number")
        self.is_pickle = False
        self._files: dict[Path, BinaryIO] = {}
        self._offsets: dict[str, int] = {}
        self._pickled: dict[Path, dict] = {}
        self.tensors: dict[str, TensorInfo] = {}
        files = self._weight_files(allow_pickle)
        for file in files:
            self._scan(file)
        self._check_index()

    # -- discovery -------------------------------------------------------------------------------
    def _weight_files(self, allow_pickle: bool) -> list[Path]:
        p = self.path
        if (p / SAFE_INDEX).is_file():
            self._index = self._read_index(p / SAFE_INDEX)
            return sorted({p / f for f in self._index.values()})
        if (p / SAFE_SINGLE).is_file():
            self._index = None
            return [p / SAFE_SINGLE]
        loose = sorted(p.glob("*.safetensors"))
        if loose:
            self._index = None
            return loose
        pickled = (p / PICKLE_INDEX).is_file() or (p / PICKLE_SINGLE).is_file()
        if pickled and not allow_pickle:
            raise RejuvError(pickle_refused(p))
        if pickled:
            self.is_pickle = True
            if (p / PICKLE_INDEX).is_file():
                self._index = self._read_index(p / PICKLE_INDEX)
                return sorted({p / f for f in self._index.values()})
            self._index = None
            return [p / PICKLE_SINGLE]
        raise RejuvError(f"{p}: no weights found (model.safetensors, {SAFE_INDEX} or *.safetensors)")

    @staticmethod
    def _read_index(index_file: Path) -> dict[str, str]:
        """The index's tensor → file map; every file must be a plain name inside the checkpoint folder."""
        try:
            weight_map = json.loads(index_file.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise RejuvError(f"{index_file}: not a valid weight index ({exc})") from exc
        if not isinstance(weight_map, dict):
            raise RejuvError(f"{index_file}: weight_map must map tensor names to file names")
        folder = index_file.parent.resolve()
        for name, file in weight_map.items():
            if not isinstance(file, str) or not file:
                raise RejuvError(f"{index_file}: tensor {name} maps to {file!r}, not a file name")
            path = (index_file.parent / file).resolve()
            if path.parent != folder:
                raise RejuvError(f"{index_file}: tensor {name} is in {file}, outside the checkpoint folder; "
                                 "an index may only name files beside it")
            if not path.is_file():
                raise RejuvError(f"{index_file}: tensor {name} is in {file}, which does not exist")
        return weight_map

    def _scan(self, file: Path) -> None:
        if self.is_pickle:
            import torch

            # mmap + weights_only keeps the load lazy and refuses arbitrary objects.
            try:
                state = torch.load(file, map_location="cpu", mmap=True, weights_only=True)
            except Exception as exc:  # torch raises many types for a bad pickle
                raise RejuvError(f"{file}: cannot be read as a PyTorch state dict ({exc})") from exc
            self._pickled[file] = state
            for name, t in state.items():
                self._add(TensorInfo(name, tuple(t.shape), dtype_name(t.dtype), file))
            return
        header_len, header = _read_safetensors_header(file)
        self._files[file] = open(file, "rb")  # noqa: SIM115 - kept open for the checkpoint's lifetime
        for name, entry in header.items():
            info = TensorInfo(name, tuple(entry["shape"]), entry["dtype"], file)
            self._add(info)
            self._offsets[name] = 8 + header_len + entry["data_offsets"][0]

    def _add(self, info: TensorInfo) -> None:
        if info.name in self.tensors:
            raise RejuvError(f"{self.path}: tensor {info.name} appears in both "
                             f"{self.tensors[info.name].file.name} and {info.file.name}")
        self.tensors[info.name] = info

    def _check_index(self) -> None:
        if self._index is None:
            return
        for name, file in self._index.items():
            info = self.tensors.get(name)
            if info is None or info.file.name != Path(file).name:
                raise RejuvError(f"{self.path}: the index puts tensor {name} in {file}, but it is not there")

    # -- access ----------------------------------------------------------------------------------
    @property
    def model_type(self) -> str | None:
        return self.config.get("model_type")

    def names(self) -> list[str]:
        return sorted(self.tensors, key=natural_key)

    def read(self, name: str) -> torch.Tensor:
        """One tensor, read from disk into fresh memory.

        Plain reads rather than a memory map: pages of a mapped file that have
        been touched count towards the process's resident memory for as long as
        the map lives, so streaming a 70B model through a map would look (and,
        under a cgroup limit, act) like loading all of it.
        """
        info = self._info(name)
        return self.read_rows(name, 0, rows_of(info.shape))

    def read_rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Rows `start:stop` (along the first axis) of one tensor, as a torch tensor."""
        if self.is_pickle:
            info = self._info(name)
            return self._pickled[info.file][name][start:stop] if info.shape else self._pickled[info.file][name]
        return as_torch(self.read_array(name, start, stop))

    def read_array(self, name: str, start: int, stop: int, into: np.ndarray | None = None) -> np.ndarray:
        """Rows `start:stop` of one tensor as a numpy array, read into `into` when given.

        `into` is a uint8 buffer of at least the block's size, reused across calls
        so that streaming does not fault in fresh pages for every block.
        """
        info = self._info(name)
        if self.is_pickle:
            return as_numpy(self.read_rows(name, start, stop).contiguous())
        row_bytes = row_nbytes(info)
        nbytes = (stop - start) * row_bytes
        buffer = np.empty(nbytes, dtype=np.uint8) if into is None else into[:nbytes]
        fd, offset, done = self._files[info.file].fileno(), self._offsets[name] + start * row_bytes, 0
        view = memoryview(buffer)
        while done < nbytes:  # positional reads: safe from several threads at once
            got = _pread_into(fd, view[done:], offset + done)
            if got == 0:
                raise RejuvError(f"{info.file}: tensor {name} is cut short (file changed while reading?)")
            done += got
        return buffer.view(DTYPES[info.dtype]).reshape(block_shape(info.shape, stop - start))

    def _info(self, name: str) -> TensorInfo:
        info = self.tensors.get(name)
        if info is None:
            raise RejuvError(f"{self.path}: no tensor named {name}")
        return info

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
        self._pickled.clear()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def non_finite_in(value, where: str = "") -> str | None:
    """The first place in a JSON value holding NaN or an infinity (`rope_scaling.factor`), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "the top level"
    if isinstance(value, dict):
        items = ((str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for key, item in items:
        found = non_finite_in(item, f"{where}{key}" if key.startswith("[") or not where else f"{where}.{key}")
        if found:
            return found
    return None


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    """Read at `offset` straight into `view`; where `os.preadv` is missing (macOS), through `os.pread`."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], offset)
    data = os.pread(fd, len(view), offset)
    view[: len(data)] = data
    return len(data)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _valid_entry(entry) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("dtype"), str)
            and isinstance(entry.get("shape"), list) and all(_is_count(d) for d in entry["shape"])
            and isinstance(entry.get("data_offsets"), list) and len(entry["data_offsets"]) == 2
            and all(_is_count(o) for o in entry["data_offsets"]))


def _read_safetensors_header(file: Path) -> tuple[int, dict]:
    """Parse and check a safetensors header; a truncated or corrupt file fails here, naming the file."""
    size = file.stat().st_size
    with open(file, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise RejuvError(f"{file}: not a valid safetensors file (only {size} bytes)")
        (header_len,) = struct.unpack("<Q", raw)
        if header_len > size - 8:
            raise RejuvError(f"{file}: not a valid safetensors file (header says {header_len} bytes, "
                             f"file has {size})")
        try:
            header = json.loads(f.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RejuvError(f"{file}: not a valid safetensors file (corrupt header: {exc})") from exc
    if not isinstance(header, dict):
        raise RejuvError(f"{file}: not a valid safetensors file (header is not a mapping)")
    header.pop("__metadata__", None)
    for name, entry in header.items():
        if not _valid_entry(entry):
            raise RejuvError(f"{file}: tensor {name} has a malformed header entry (expected dtype, shape as a list "
                             "of non-negative integers, data_offsets as two integers)")
        if entry["dtype"] not in DTYPES:
            raise RejuvError(f"{file}: tensor {name} has unsupported dtype {entry['dtype']}")
    end = 0
    for name, entry in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        start, stop = entry["data_offsets"]
        expected = math.prod(entry["shape"]) * itemsize(entry["dtype"])
        if start != end or stop - start != expected:
            raise RejuvError(f"{file}: corrupt safetensors file (tensor {name} has offsets {start}..{stop}, "
                             f"expected {end}..{end + expected})")
        end = stop
    if 8 + header_len + end != size:
        raise RejuvError(f"{file}: truncated or corrupt safetensors file (expected "
                         f"{8 + header_len + end} bytes, found {size})")
    return header_len, header


_LIBC = None
_TRIM_EVERY = 64 << 20  # bytes processed between trims
_since_trim = 0


def release_freed_memory(nbytes: int) -> None:
    """Hand freed heap pages back to the OS every ~64 MiB of processed tensors (glibc only).

    Streaming allocates and frees tensor-sized buffers of many sizes from
    several threads; glibc keeps what is freed in per-thread arenas, so the
    resident size creeps up with the number of tensors although nothing is
    live (measured: 610 MB after 60 tensors of a 291-tensor model, against a
    flat ~250 MB with trimming). Trimming after every tensor makes every new
    buffer fault its pages in again (measured when fusion still went tensor by
    tensor: 11.3-11.6 s against 10.4-11.2 s with this spacing), hence the
    spacing. Used by passes that hold whole tensors (parameter drift); fusion
    reuses its block buffers and needs none of this.
    """
    global _LIBC, _since_trim
    _since_trim += nbytes
    if _since_trim < _TRIM_EVERY:
        return
    _since_trim = 0
    if _LIBC is None:
        import ctypes
        import ctypes.util

        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)
