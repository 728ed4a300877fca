"""Hugging Face `save_pretrained` folders, read lazily and written shard by shard.

Reading: the safetensors headers are parsed up front (names, shapes, dtypes,
which file, byte offsets), tensors are read one at a time with plain reads. Pickle
weights (`pytorch_model*.bin`) are refused unless the caller allows them.

Dtypes are the safetensors names ("BF16", "F32", ...). Raw reads and the writer
work on numpy arrays (bfloat16 from `ml_dtypes`), so streaming a checkpoint never
imports torch: `rejuv apply --fusion-only` starts in a fraction of a second
instead of the 1.5-3 s that `import torch` costs. `read`/`read_rows` hand out
torch tensors over the same memory for everything that computes with a model.

Writing: `write_safetensors_shards` writes the safetensors format itself, in
blocks of rows of ~16 MB, so peak memory is a few blocks, not one tensor and
not one shard. Headers are laid out from the plan before any tensor is produced
(which is why the plan carries every shape and dtype up front), so every block
has a known offset and worker threads write them with `pwrite` as they finish.

`atomic_output_dir` gives a temporary sibling folder that is renamed into place
only when everything inside it has been written.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import struct
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import ml_dtypes
import numpy as np

from rejuv.errors import RejuvError

if TYPE_CHECKING:
    import torch

SAFE_INDEX = "model.safetensors.index.json"
SAFE_SINGLE = "model.safetensors"
PICKLE_INDEX = "pytorch_model.bin.index.json"
PICKLE_SINGLE = "pytorch_model.bin"

# Files that hold weights or training state; everything else at the top of a
# checkpoint folder (config, generation config, tokenizer, chat template, README)
# is copied to the output unchanged.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf")
_WEIGHT_INDEXES = (SAFE_INDEX, PICKLE_INDEX)

_DTYPES = {  # safetensors name -> numpy dtype of the stored elements
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
FLOAT_DTYPES = frozenset(_DTYPES[name] for name in ("F64", "F32", "F16", "BF16"))
_TORCH_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}
_ALIASES = {torch_name: key for key, torch_name in _TORCH_NAMES.items()} | {
    "double": "F64", "float": "F32", "fp32": "F32", "half": "F16", "fp16": "F16", "bf16": "BF16",
    "long": "I64", "int": "I32", "short": "I16"}


def dtype_name(dtype: Any) -> str:
    """The safetensors name of a dtype given as that name, a torch dtype, or `float32`/`bf16`-style text."""
    text = str(dtype).removeprefix("torch.")
    key = text.upper() if text.upper() in _DTYPES else _ALIASES.get(text.lower())
    if key is None:
        raise RejuvError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
    return key


def itemsize(dtype: str) -> int:
    return _DTYPES[dtype].itemsize


def numpy_dtype(dtype: str) -> np.dtype:
    """The numpy dtype (bfloat16 from ml_dtypes) of a safetensors dtype name."""
    return _DTYPES[dtype]


def dtype_from_name(name: Any) -> torch.dtype:
    """`float32`/`bfloat16`/`float16` (the safetensors spelling, or a torch dtype) to a torch dtype."""
    import torch

    return getattr(torch, _TORCH_NAMES[dtype_name(name)])


def as_torch(array: np.ndarray) -> torch.Tensor:
    """A torch tensor over the memory of `array` (no copy); bfloat16 included, which torch cannot import."""
    import torch

    if array.dtype == _DTYPES["BF16"]:
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    """The inverse of `as_torch` for a CPU tensor: a numpy array over the same memory."""
    import torch

    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(_DTYPES["BF16"])
    return tensor.numpy()


def natural_key(name: str) -> list:
    """Sort `layers.10` after `layers.9`, so output order is stable and readable."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def rows_of(shape: tuple[int, ...]) -> int:
    """Rows along the first axis; a 0-d tensor counts as one row. Streaming works in blocks of rows."""
    return shape[0] if shape else 1


def row_nbytes(tensor: TensorInfo | OutputTensor) -> int:
    """Bytes of one row (along the first axis) of a tensor described by its shape and dtype."""
    return tensor.nbytes // max(1, rows_of(tensor.shape))


def block_shape(shape: tuple[int, ...], rows: int) -> tuple[int, ...]:
    return (rows, *shape[1:]) if shape else ()


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

    def __init__(self, path: str | os.PathLike, allow_pickle: bool = False):
        self.path = Path(path)
        if not self.path.is_dir():
            raise RejuvError(f"{self.path}: not a folder (expected a save_pretrained checkpoint)")
        config_file = self.path / "config.json"
        if not config_file.is_file():
            raise RejuvError(f"{self.path}: no config.json, so this is not a save_pretrained model folder")
        try:
            self.config: dict = json.loads(config_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RejuvError(f"{config_file}: not valid JSON ({exc})") from exc
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
            raise RejuvError(
                f"{p}: weights are pickle files (pytorch_model*.bin), which can run arbitrary code when "
                "loaded; convert them to safetensors or pass --allow-pickle if you trust the source"
            )
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
        try:
            weight_map = json.loads(index_file.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise RejuvError(f"{index_file}: not a valid weight index ({exc})") from exc
        for name, file in weight_map.items():
            if not (index_file.parent / file).is_file():
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
        return buffer.view(_DTYPES[info.dtype]).reshape(block_shape(info.shape, stop - start))

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


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    """Read at `offset` straight into `view`; where `os.preadv` is missing (macOS), through `os.pread`."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], offset)
    data = os.pread(fd, len(view), offset)
    view[: len(data)] = data
    return len(data)


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
    end = 0
    for name, entry in sorted(header.items(), key=lambda kv: kv[1].get("data_offsets", [0])[0]
                              if isinstance(kv[1], dict) else 0):
        try:
            dtype, shape, (start, stop) = entry["dtype"], entry["shape"], entry["data_offsets"]
        except (KeyError, TypeError, ValueError) as exc:
            raise RejuvError(f"{file}: tensor {name} has a malformed header entry") from exc
        if dtype not in _DTYPES:
            raise RejuvError(f"{file}: tensor {name} has unsupported dtype {dtype}")
        expected = math.prod(shape) * itemsize(dtype)
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


# -- writing ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputTensor:
    name: str
    shape: tuple[int, ...]
    dtype: str  # safetensors name; a torch dtype or `bfloat16`-style text is converted

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", dtype_name(self.dtype))

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * itemsize(self.dtype)


def plan_shards(tensors: list[OutputTensor], max_shard_bytes: int) -> list[list[OutputTensor]]:
    """Greedy, order-preserving split; a tensor larger than the limit gets a shard of its own."""
    shards: list[list[OutputTensor]] = [[]]
    size = 0
    for t in tensors:
        if shards[-1] and size + t.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += t.nbytes
    return shards


def _header_bytes(shard: list[OutputTensor]) -> bytes:
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for t in shard:
        header[t.name] = {"dtype": t.dtype, "shape": list(t.shape),
                          "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the header to an 8-byte boundary
    return raw


BLOCK_BYTES = 16 << 20  # output bytes per block of rows: big enough for long sequential I/O, small enough
# that each worker's buffers stay in the tens of MB whatever the tensor size.

Fill = Callable[[OutputTensor, int, int, np.ndarray], None]


def write_safetensors_shards(
    out_dir: Path,
    tensors: list[OutputTensor],
    fill: Fill,
    max_shard_bytes: int = 5 * 1024**3,
    on_progress: Callable[[int], None] | None = None,
    workers: int = 2,
    block_bytes: int = BLOCK_BYTES,
) -> list[str]:
    """Write `tensors` as HF-style shards, block of rows by block of rows.

    `fill(spec, start, stop, out)` must write rows `start:stop` of tensor `spec`
    into `out`, a numpy array of that block's shape and `spec.dtype` that lives in
    a buffer reused by the calling worker (`as_torch(out)` to fill it with torch).
    `workers` threads fill and write blocks at once (reading, arithmetic and
    `pwrite` all release the GIL), each at its known offset in the file, so memory
    is a few blocks per worker whatever the model size. `on_progress(nbytes)` is called from this thread, in file order.

    Returns the shard file names: `model.safetensors` for one shard, else
    `model-0000i-of-0000n.safetensors` plus `model.safetensors.index.json`.
    """
    shards = plan_shards(tensors, max_shard_bytes)
    n = len(shards)
    names = [SAFE_SINGLE] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    buffers = threading.local()

    def write_block(fd: int, spec: OutputTensor, start: int, stop: int, offset: int, nbytes: int) -> int:
        buffer = getattr(buffers, "out", None)
        if buffer is None or buffer.size < nbytes:
            buffer = buffers.out = np.empty(max(nbytes, block_bytes), dtype=np.uint8)
        block = buffer[:nbytes].view(_DTYPES[spec.dtype]).reshape(block_shape(spec.shape, stop - start))
        fill(spec, start, stop, block)
        view, done = memoryview(buffer[:nbytes]), 0
        while done < nbytes:
            done += os.pwrite(fd, view[done:], offset + done)
        return nbytes

    fds: list[int] = []
    pending: deque = deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rejuv-write")
    torch = sys.modules.get("torch")  # a torch `fill` (synthetic models, tests) runs one intra-op thread per
    threads = torch.get_num_threads() if torch else None  # block: parallel blocks already fill the cores
    if torch:
        torch.set_num_threads(1)
    try:
        for shard, file_name in zip(shards, names, strict=True):
            fd = os.open(out_dir / file_name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            fds.append(fd)
            header = _header_bytes(shard)
            os.pwrite(fd, struct.pack("<Q", len(header)) + header, 0)
            offset = 8 + len(header)
            for spec in shard:
                rows, row_bytes = rows_of(spec.shape), row_nbytes(spec)
                step = max(1, block_bytes // max(1, row_bytes))
                for start in range(0, rows, step):  # an empty tensor has no rows and no bytes
                    if len(pending) >= 2 * workers:  # bounded look-ahead: files appear in order
                        _finish(pending.popleft(), on_progress)
                    stop = min(rows, start + step)
                    pending.append(pool.submit(write_block, fd, spec, start, stop, offset + start * row_bytes,
                                               (stop - start) * row_bytes))
                offset += spec.nbytes
        while pending:
            _finish(pending.popleft(), on_progress)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if torch:
            torch.set_num_threads(threads)
        for fd in fds:
            os.close(fd)
    if n > 1:
        weight_map = {t.name: file_name for shard, file_name in zip(shards, names, strict=True) for t in shard}
        index = {"metadata": {"total_size": sum(t.nbytes for t in tensors)},
                 "weight_map": dict(sorted(weight_map.items()))}
        (out_dir / SAFE_INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return names


def _finish(future, on_progress: Callable[[int], None] | None) -> None:
    nbytes = future.result()
    if on_progress is not None:
        on_progress(nbytes)


def copy_aux_files(src: Path, dst: Path) -> list[str]:
    """Copy config, generation config, tokenizer and other non-weight files (top level only)."""
    copied = []
    for item in sorted(src.iterdir()):
        if not item.is_file() or item.name in _WEIGHT_INDEXES or item.name.endswith(_WEIGHT_SUFFIXES):
            continue
        shutil.copy2(item, dst / item.name)
        copied.append(item.name)
    return copied


# -- the output folder -----------------------------------------------------------------------------
def check_output_free(out: Path, overwrite: bool, inputs: tuple[Path, ...] = ()) -> None:
    """Fail early, before any work, if `out` exists (without overwrite) or is one of the inputs."""
    out_resolved = out.resolve()
    for inp in inputs:
        inp_resolved = Path(inp).resolve()
        if out_resolved == inp_resolved or inp_resolved in out_resolved.parents:
            raise RejuvError(f"{out}: the output folder may not be an input or lie inside one ({inp})")
    if out.exists() and not overwrite:
        raise RejuvError(f"{out}: output folder exists; pass --overwrite to replace it")


def _tmp_prefix(out: Path) -> str:
    return f".{out.name}.rejuv-tmp-"


def _remove_stale_tmp_dirs(out: Path) -> None:
    """Clear what a killed earlier run left beside `out` (only when that run's process is gone): its
    temporary folder, and the old output it was replacing. A run killed between moving the old output
    aside and moving the new one in left no `out`: the old output is put back instead."""
    parent = out.parent
    if not parent.is_dir():
        return
    for pattern in (_tmp_prefix(out) + "*", f".{out.name}.rejuv-old-*"):
        for item in sorted(parent.glob(pattern)):
            pid_text = item.name.rsplit("-", 1)[-1]
            if pid_text.isdigit() and _pid_alive(int(pid_text)):
                continue
            if "rejuv-old-" in item.name and not out.exists():
                os.replace(item, out)
                continue
            shutil.rmtree(item, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder; rename it to `out` only if the block succeeds."""
    out = Path(out)
    check_output_free(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp_dirs(out)
    tmp = out.parent / f"{_tmp_prefix(out)}{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        if not overwrite:  # appeared while we worked
            shutil.rmtree(tmp, ignore_errors=True)
            raise RejuvError(f"{out}: output folder appeared while writing; pass --overwrite to replace it")
        old = out.parent / f".{out.name}.rejuv-old-{os.getpid()}"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
