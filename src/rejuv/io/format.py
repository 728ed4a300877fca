"""The safetensors format as rejuv streams it: dtype names, rows, file names.

Dtypes are the safetensors names ("BF16", "F32", ...). Raw reads and the writer
work on numpy arrays (bfloat16 from `ml_dtypes`), so streaming a checkpoint never
imports torch: `rejuv apply --fusion-only` starts in a fraction of a second
instead of the 1.5-3 s that `import torch` costs. `as_torch` hands out torch
tensors over the same memory for everything that computes with a model.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, Protocol

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
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf")
WEIGHT_INDEXES = (SAFE_INDEX, PICKLE_INDEX)

DTYPES = {  # safetensors name -> numpy dtype of the stored elements
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
FLOAT_DTYPES = frozenset(DTYPES[name] for name in ("F64", "F32", "F16", "BF16"))
_TORCH_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}
_ALIASES = {torch_name: key for key, torch_name in _TORCH_NAMES.items()} | {
    "double": "F64", "float": "F32", "fp32": "F32", "half": "F16", "fp16": "F16", "bf16": "BF16",
    "long": "I64", "int": "I32", "short": "I16"}


def dtype_name(dtype: Any) -> str:
    """The safetensors name of a dtype given as that name, a torch dtype, or `float32`/`bf16`-style text."""
    text = str(dtype).removeprefix("torch.")
    key = text.upper() if text.upper() in DTYPES else _ALIASES.get(text.lower())
    if key is None:
        raise RejuvError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
    return key


def itemsize(dtype: str) -> int:
    return DTYPES[dtype].itemsize


def numpy_dtype(dtype: str) -> np.dtype:
    """The numpy dtype (bfloat16 from ml_dtypes) of a safetensors dtype name."""
    return DTYPES[dtype]


def torch_name(name: Any) -> str:
    """The torch spelling (`bfloat16`, `float32`, ...) of a dtype given in any form `dtype_name` reads."""
    return _TORCH_NAMES[dtype_name(name)]


def dtype_from_name(name: Any) -> torch.dtype:
    """`float32`/`bfloat16`/`float16` (the safetensors spelling, or a torch dtype) to a torch dtype."""
    import torch

    return getattr(torch, torch_name(name))


def as_torch(array: np.ndarray) -> torch.Tensor:
    """A torch tensor over the memory of `array` (no copy); bfloat16 included, which torch cannot import."""
    import torch

    if array.dtype == DTYPES["BF16"]:
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    """The inverse of `as_torch` for a CPU tensor: a numpy array over the same memory."""
    import torch

    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(DTYPES["BF16"])
    return tensor.numpy()


def natural_key(name: str) -> list:
    """Sort `layers.10` after `layers.9`, so output order is stable and readable."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def rows_of(shape: tuple[int, ...]) -> int:
    """Rows along the first axis; a 0-d tensor counts as one row. Streaming works in blocks of rows."""
    return shape[0] if shape else 1


class Shaped(Protocol):
    shape: tuple[int, ...]
    dtype: str


def nbytes_of(tensor: Shaped) -> int:
    return math.prod(tensor.shape) * itemsize(tensor.dtype)


def row_nbytes(tensor: Shaped) -> int:
    """Bytes of one row (along the first axis) of a tensor described by its shape and dtype."""
    return nbytes_of(tensor) // max(1, rows_of(tensor.shape))


def block_shape(shape: tuple[int, ...], rows: int) -> tuple[int, ...]:
    return (rows, *shape[1:]) if shape else ()
