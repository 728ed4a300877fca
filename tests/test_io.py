import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from rejuv.errors import RejuvError
from rejuv.io.format import as_torch, dtype_name
from rejuv.io.output import atomic_output_dir, write_marker
from rejuv.io.reader import Checkpoint
from rejuv.io.writer import OutputTensor, copy_aux_files, shard_groups, write_safetensors_shards

from tiny import build_model, save


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model, tok = build_model("qwen2", seed=0)
    root = tmp_path_factory.mktemp("ckpt")
    save(model, tok, root / "single")
    save(model, tok, root / "sharded", max_shard_size="8KB")
    return model, root


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


def test_atomic_output_dir_renames_only_on_success(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError):
        with atomic_output_dir(out, command="test") as tmp:
            (tmp / "partial").write_text("x")
            raise ValueError("boom")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with atomic_output_dir(out, command="test") as tmp:
        (tmp / "done").write_text("x")
    assert (out / "done").exists()
    with pytest.raises(RejuvError, match="overwrite"):
        with atomic_output_dir(out, command="test"):
            pass
    with atomic_output_dir(out, overwrite=True, command="test") as tmp:
        (tmp / "new").write_text("y")
    assert sorted(p.name for p in out.iterdir()) == [".rejuv-output", "new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_stale_temporary_folder_of_a_killed_run_is_cleared(tmp_path):
    dead_pid = 2**22 + 12345  # above the default pid_max, so no such process
    stale = tmp_path / f".out.rejuv-tmp-{dead_pid}"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    with atomic_output_dir(tmp_path / "out", command="test") as tmp:
        (tmp / "ok").write_text("1")
    assert not stale.exists() and (tmp_path / "out" / "ok").exists()
    assert os.getpid() > 0


def test_copy_aux_files_skips_weights(saved, tmp_path):
    _, root = saved
    copied = copy_aux_files(root / "sharded", tmp_path)
    assert "config.json" in copied and "tokenizer.json" in copied
    assert not any(n.endswith(".safetensors") or n.endswith("index.json") for n in copied)


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


def test_a_refused_write_is_one_line_and_leaves_nothing(tmp_path):
    import errno

    out = tmp_path / "out"
    out.mkdir()
    (out / "old").write_text("kept")
    write_marker(out, "test")  # an earlier output of the same command: --overwrite may replace it
    for code, words in ((errno.ENOSPC, "the disk is full"), (errno.EROFS, "the file system is read-only")):
        with pytest.raises(RejuvError, match=f"cannot write the output: {words}"):
            with atomic_output_dir(out, overwrite=True, command="test") as tmp:
                (tmp / "part").write_text("x")
                raise OSError(code, os.strerror(code), str(tmp / "part"))
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (out / "old").read_text() == "kept"
    with pytest.raises(FileNotFoundError):  # other failures are not disguised as write errors
        with atomic_output_dir(tmp_path / "other", command="test"):
            open(tmp_path / "missing")  # noqa: SIM115
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_long_output_names_and_the_current_folder_work(tmp_path, monkeypatch):
    long = tmp_path / ("x" * 240)
    with atomic_output_dir(long, command="test") as tmp:
        (tmp / "a").write_text("1")
    assert (long / "a").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == [long.name]
    here = tmp_path / "here"
    here.mkdir()
    write_marker(here, "test")
    monkeypatch.chdir(here)
    with atomic_output_dir(".", overwrite=True, command="test") as tmp:
        (tmp / "b").write_text("2")
    assert (here / "b").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([long.name, "here"])  # no leftover sibling


def test_a_second_run_on_an_output_being_written_is_refused_naming_the_holder(tmp_path):
    import subprocess
    import sys

    from rejuv.io.output import output_lock

    out = tmp_path / "out"
    code = ("import sys, time\nfrom rejuv.io.output import output_lock\nwith output_lock(sys.argv[1]):\n"
            "    print('held', flush=True)\n    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RejuvError, match=rf"another rejuv run \(pid {holder.pid}\) is writing this output"):
            with output_lock(out):
                pass
    finally:
        holder.kill()
        holder.wait()
    with output_lock(out), output_lock(out):  # a killed holder leaves no lock; one process may nest its claims
        pass
    assert list(tmp_path.iterdir()) == []  # nothing is left beside the output


@pytest.mark.slow
def test_two_identical_evals_started_together_never_trip_over_each_other(tmp_path):
    """Once, one of them failed 3 times in 3 with FileNotFoundError on the kept-results folder the other removed."""
    import subprocess
    import sys

    from tiny import build_model, save

    save(*build_model("llama", seed=0), tmp_path / "m")
    (tmp_path / "d.jsonl").write_text(json.dumps({"problem": "1+1?", "answer": "2"}) + "\n")
    cmd = [sys.executable, "-m", "rejuv.cli", "eval", str(tmp_path / "m"), "--data", str(tmp_path / "d.jsonl"),
           "--out", str(tmp_path / "out"), "--max-new-tokens", "4", "-k", "2", "--no-progress"]
    runs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(r.wait(timeout=300), r.stderr.read()) for r in runs]
    assert sorted(code for code, _ in results)[0] == 0, results  # at least one wrote the output
    for code, err in results:
        assert "Traceback" not in err and (code == 0 or "another rejuv run" in err), err
    assert (tmp_path / "out" / "eval.json").is_file() and not list(tmp_path.glob(".out.rejuv-*"))
