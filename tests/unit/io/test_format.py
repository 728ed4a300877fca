"""The safetensors format as rejuv streams it: dtype names both ways, rows and bytes, the natural tensor order,
and numpy ↔ torch views over the same memory (bfloat16 included)."""

import numpy as np
import pytest
import torch

from rejuv.errors import RejuvError
from rejuv.io.format import as_numpy, as_torch, dtype_from_name, dtype_name, natural_key, rows_of, torch_name


@pytest.mark.parametrize(("given", "name"), [("BF16", "BF16"), ("bfloat16", "BF16"), (torch.bfloat16, "BF16"),
                                             ("fp32", "F32"), ("half", "F16"), (torch.int64, "I64")])
def test_dtype_names_both_ways(given, name):
    assert dtype_name(given) == name and dtype_name(torch_name(name)) == name
    assert dtype_from_name(name) == getattr(torch, torch_name(name))


def test_an_unknown_dtype_is_one_line():
    with pytest.raises(RejuvError, match="unknown dtype 'float8'"):
        dtype_name("float8")


def test_rows_and_the_natural_order_of_tensor_names():
    assert rows_of((5, 3)) == 5 and rows_of((7,)) == 7 and rows_of(()) == 1
    names = ["model.layers.10.w", "model.layers.2.w", "model.layers.1.w", "lm_head.weight"]
    assert sorted(names, key=natural_key) == ["lm_head.weight", "model.layers.1.w", "model.layers.2.w",
                                              "model.layers.10.w"]


def test_numpy_and_torch_views_share_memory_bfloat16_included():
    tensor = torch.arange(6, dtype=torch.bfloat16).reshape(2, 3)
    array = as_numpy(tensor)
    array[0, 0] = 7
    assert tensor[0, 0].item() == 7 and as_torch(array).dtype == torch.bfloat16
    assert np.array_equal(as_numpy(as_torch(array)).astype(np.float32), tensor.float().numpy())
