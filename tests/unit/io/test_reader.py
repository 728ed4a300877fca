"""The lazy safetensors reader: listing without reading, block reads, and every malformed file named."""

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from rejuv.errors import RejuvError
from rejuv.io.format import dtype_name
from rejuv.io.reader import Checkpoint


def test_lists_tensors_without_reading_and_reads_one_at_a_time(saved):
    model, root = saved
    state = model.state_dict()
    for folder in ("single", "sharded"):
        ckpt = Checkpoint(root / folder)
        assert set(ckpt.names()) == set(state)
        assert ckpt.names().index("model.layers.1.mlp.up_proj.weight") > ckpt.names().index(
            "model.layers.0.self_attn.v_proj.bias")
        for name, t in state.items():
            assert ckpt.tensors[name].shape == tuple(t.shape) and ckpt.tensors[name].dtype == dtype_name(t.dtype)
            assert torch.equal(ckpt.read(name), t)
    assert len(list((root / "sharded").glob("model-*.safetensors"))) > 1


def test_truncated_and_corrupt_files_are_named(saved, tmp_path):
    model, root = saved
    data = (root / "single" / "model.safetensors").read_bytes()
    for label, payload in (("truncated", data[: len(data) - 100]), ("garbage", b"\x10\x00" + data[2:200]),
                           ("tiny", b"abc")):
        folder = tmp_path / label
        folder.mkdir()
        (folder / "config.json").write_text((root / "single" / "config.json").read_text())
        (folder / "model.safetensors").write_bytes(payload)
        with pytest.raises(RejuvError, match=r"model\.safetensors"):
            Checkpoint(folder)


def test_pickle_weights_need_permission(tmp_path):
    state = {"w": torch.randn(3, 2)}
    (tmp_path / "config.json").write_text("{}")
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(RejuvError, match="allow-pickle"):
        Checkpoint(tmp_path)
    ckpt = Checkpoint(tmp_path, allow_pickle=True)
    assert ckpt.is_pickle and torch.equal(ckpt.read("w"), state["w"])


def test_index_pointing_to_a_missing_file(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    save_file({"x": torch.zeros(2)}, tmp_path / "model-00001-of-00002.safetensors")
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"x": "model-00001-of-00002.safetensors", "y": "model-00002-of-00002.safetensors"}}))
    with pytest.raises(RejuvError, match="tensor y"):
        Checkpoint(tmp_path)


def test_not_a_model_folder(tmp_path):
    with pytest.raises(RejuvError, match="not a folder"):
        Checkpoint(tmp_path / "nope")
    with pytest.raises(RejuvError, match="config.json"):
        Checkpoint(tmp_path)


def test_reads_without_preadv_as_on_macos(saved, monkeypatch):
    model, root = saved
    monkeypatch.delattr(os, "preadv")
    ckpt = Checkpoint(root / "sharded")
    for name, t in model.state_dict().items():
        assert torch.equal(ckpt.read(name), t)


def _write_raw_safetensors(folder, header: bytes, payload: bytes = b""):
    import struct

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + payload)


@pytest.mark.parametrize("header", [
    b'{"w": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}',
    b'{"w": {"dtype": "F32", "shape": ["x"], "data_offsets": [0, 4]}}',
    b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": ["a", "b"]}}',
    b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}',
    b'{"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}',
    b'{"w": [1, 2, 3]}',
])
def test_wrongly_typed_header_fields_are_named(tmp_path, header):
    _write_raw_safetensors(tmp_path / "m", header, b"\0" * 4)
    with pytest.raises(RejuvError, match="tensor w has a malformed header entry"):
        Checkpoint(tmp_path / "m")


def test_config_and_index_contents_are_checked(tmp_path):
    folder = tmp_path / "m"
    _write_raw_safetensors(folder, b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', b"\0" * 4)
    (folder / "config.json").write_text("[1, 2]")
    with pytest.raises(RejuvError, match="config.json: expected a JSON object, got list"):
        Checkpoint(folder)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors.index.json").write_text('{"weight_map": [1]}')
    with pytest.raises(RejuvError, match="weight_map must map tensor names"):
        Checkpoint(folder)
    other = tmp_path / "other"
    _write_raw_safetensors(other, b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', b"\1" * 4)
    for target in (str(other / "model.safetensors"), "../other/model.safetensors"):
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": target}}))
        with pytest.raises(RejuvError, match="outside the checkpoint folder"):
            Checkpoint(folder)


