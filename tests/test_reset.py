import numpy as np
import pytest

from rejuv.errors import RejuvError
from rejuv.method.arch import Neurons
from rejuv.method.reset import apply_reset, reset_entries

A = Neurons(0, "q_proj", "m.layers.0.self_attn.q_proj", 0)
B = Neurons(0, "down_proj", "m.layers.0.mlp.down_proj", 1)


def test_reset_plan_includes_reader_biases_only():
    names = {A.weight, A.bias, B.weight, B.bias}
    plan = reset_entries({A: [1, 2], B: [3]}, names)
    assert plan == {A.weight: {"axis": 0, "indices": [1, 2]}, A.bias: {"axis": 0, "indices": [1, 2]},
                    B.weight: {"axis": 1, "indices": [3]}}
    with pytest.raises(RejuvError, match="not in the checkpoint"):
        reset_entries({A: [1]}, {B.weight})


def test_apply_reset_rows_and_columns():
    fused, base = np.zeros((3, 4), np.float32), np.arange(12.0).reshape(3, 4)  # float64 base, cast on write
    assert apply_reset(fused.copy(), base, 0, [2]).tolist() == [[0] * 4, [0] * 4, [8, 9, 10, 11]]
    cols = apply_reset(fused.copy(), base, 1, np.array([0, 3]))
    assert cols[:, 0].tolist() == [0, 4, 8] and cols[:, 3].tolist() == [3, 7, 11] and abs(cols[:, 1:3]).sum() == 0
    assert cols.dtype == np.float32
