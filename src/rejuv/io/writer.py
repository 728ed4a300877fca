"""Safetensors shards written block by block.

`write_safetensors_shards` writes the safetensors format itself, in blocks of
rows of ~16 MB, so peak memory is a few blocks, not one tensor and not one
shard. Headers are laid out from the list of output tensors before any tensor is
produced (which is why every shape and dtype is known up front), so every block
has a known offset and worker threads write them with `pwrite` as they finish.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import sys
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rejuv.errors import RejuvError
from rejuv.io.format import (
    DTYPES,
    SAFE_INDEX,
    SAFE_SINGLE,
    WEIGHT_INDEXES,
    WEIGHT_SUFFIXES,
    block_shape,
    dtype_name,
    itemsize,
    row_nbytes,
    rows_of,
)


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


def parse_size(text: str | int) -> int:
    """A shard size as people write it ('5GB', '500MB', '64KiB', as huggingface_hub reads them) or a byte
    count; at least one byte."""
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
    if isinstance(text, int) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        s = str(text).strip().upper()
        number = s.rstrip("KMGTIB")
        unit = s[len(number):]
        try:
            value = float(number)
        except ValueError:
            value = math.nan
    if unit not in units or not math.isfinite(value) or value * units[unit] < 1:
        raise RejuvError(f"cannot read size {text!r} (at least one byte); use e.g. 5GB or 500MB")
    return int(value * units[unit])


def shard_size(text: str | int) -> str | int:
    """The `max_shard_size` option's check: the value as given, once it reads as a size."""
    parse_size(text)
    return text


def shard_groups(tensors: list[OutputTensor], max_shard_bytes: int) -> list[list[OutputTensor]]:
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
    shards = shard_groups(tensors, max_shard_bytes)
    n = len(shards)
    names = [SAFE_SINGLE] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    buffers = threading.local()

    def write_block(fd: int, spec: OutputTensor, start: int, stop: int, offset: int, nbytes: int) -> int:
        buffer = getattr(buffers, "out", None)
        if buffer is None or buffer.size < nbytes:
            buffer = buffers.out = np.empty(max(nbytes, block_bytes), dtype=np.uint8)
        block = buffer[:nbytes].view(DTYPES[spec.dtype]).reshape(block_shape(spec.shape, stop - start))
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
            for block in _blocks(shard, 8 + len(header), block_bytes):
                if len(pending) >= 2 * workers:  # bounded look-ahead: files appear in order
                    _finish(pending.popleft(), on_progress)
                pending.append(pool.submit(write_block, fd, *block))
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


def _blocks(shard: list[OutputTensor], offset: int, block_bytes: int):
    """A shard's tensors as blocks of whole rows of about `block_bytes`, in file order: (tensor, first row,
    row after the last, file offset, bytes)."""
    for spec in shard:
        rows, row_bytes = rows_of(spec.shape), row_nbytes(spec)
        step = max(1, block_bytes // max(1, row_bytes))
        for start in range(0, rows, step):  # an empty tensor has no rows and no bytes
            stop = min(rows, start + step)
            yield spec, start, stop, offset + start * row_bytes, (stop - start) * row_bytes
        offset += spec.nbytes


def _finish(future, on_progress: Callable[[int], None] | None) -> None:
    nbytes = future.result()
    if on_progress is not None:
        on_progress(nbytes)


def copy_aux_files(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> list[str]:
    """Copy config, generation config, tokenizer and other non-weight files (top level only), except `skip`
    (records an earlier rejuv output holds about itself, which would misdescribe this one)."""
    copied = []
    for item in sorted(src.iterdir()):
        if not item.is_file() or item.name in WEIGHT_INDEXES or item.name.endswith(WEIGHT_SUFFIXES) \
                or item.name in skip:
            continue
        shutil.copy2(item, dst / item.name)
        copied.append(item.name)
    return copied
