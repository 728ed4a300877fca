"""Shard sizes as people write them, and the streamed safetensors writer: round trips, shard groups, and the
files copied beside the weights."""

import json

import pytest
import torch
from safetensors.torch import load_file

from rejuv.errors import RejuvError
from rejuv.io.format import as_torch
from rejuv.io.writer import OutputTensor, copy_aux_files, shard_groups, write_safetensors_shards


def test_writer_round_trip_in_several_dtypes_and_shards(tmp_path):
    tensors = {"a": torch.randn(5, 3), "b": torch.randn(7).to(torch.bfloat16), "c": torch.tensor(3.0),
               "d": torch.arange(6, dtype=torch.int64).reshape(2, 3), "e": torch.randn(4, 4).half()}
    specs = [OutputTensor(k, tuple(v.shape), v.dtype) for k, v in tensors.items()]

    def copy_rows(spec, start, stop, out):  # blocks of 8 bytes: several blocks per tensor
        t = tensors[spec.name]
        as_torch(out).copy_(t[start:stop] if t.dim() else t)

    for limit, expected_files in ((10**9, 1), (40, 4)):  # 60 | 14+4 | 48 | 32 bytes
        out = tmp_path / str(limit)
        out.mkdir()
        names = write_safetensors_shards(out, specs, copy_rows, max_shard_bytes=limit, block_bytes=8)
        assert len(names) == expected_files
        loaded = {}
        for name in names:
            loaded.update(load_file(out / name))
        assert loaded.keys() == tensors.keys()
        for k, v in tensors.items():
            assert torch.equal(loaded[k], v) and loaded[k].dtype == v.dtype
        if expected_files > 1:
            index = json.loads((out / "model.safetensors.index.json").read_text())
            assert set(index["weight_map"]) == set(tensors)
            assert index["metadata"]["total_size"] == sum(s.nbytes for s in specs)


def test_shard_groups_keep_order_and_gives_big_tensors_their_own_shard():
    specs = [OutputTensor(n, (s,), torch.float32) for n, s in (("a", 2), ("b", 100), ("c", 1), ("d", 1))]
    assert [[t.name for t in shard] for shard in shard_groups(specs, 16)] == [["a"], ["b"], ["c", "d"]]


def test_copy_aux_files_skips_weights(saved, tmp_path):
    _, root = saved
    copied = copy_aux_files(root / "sharded", tmp_path)
    assert "config.json" in copied and "tokenizer.json" in copied
    assert not any(n.endswith(".safetensors") or n.endswith("index.json") for n in copied)


    # is 0.0004 there, and 0.00085 is more


@pytest.mark.parametrize("text", ["5GB", "500MB", "64KB", "1.5GB", "2TB", "10 MB", "5gb", " 3KB "])
def test_shard_sizes_mean_what_save_pretrained_reads(text):
    """transformers' save_pretrained reads max_shard_size with huggingface_hub's parser; rejuv's own (kept
    off the torch-free fusion path, and also taking KiB/MiB/GiB and byte counts) agrees on every size both read."""
    from huggingface_hub.serialization._base import parse_size_to_int

    from rejuv.io.writer import parse_size

    assert parse_size(text) == parse_size_to_int(text)


def test_binary_units_and_bad_sizes():
    from rejuv.io.writer import parse_size

    assert (parse_size("64KiB"), parse_size("2GiB"), parse_size(4096), parse_size("4096")) == (65536, 2**31, 4096, 4096)
    for bad in ("abc", "-1GB", "nanGB", "0MB", "5 XB"):
        with pytest.raises(RejuvError, match="cannot read size"):
            parse_size(bad)
