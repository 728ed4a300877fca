"""A run killed mid-write leaves no output folder, and the next run succeeds and cleans up."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from synthetic import perturb_checkpoint, write_synthetic_model

from rejuv.io.reader import Checkpoint


@pytest.mark.slow
def test_killed_fusion_leaves_nothing_and_a_rerun_succeeds(tmp_path):
    base = write_synthetic_model(tmp_path / "base", hidden=512, layers=12, vocab=4096, dtype="float32")
    sft = perturb_checkpoint(base, tmp_path / "sft")
    out = tmp_path / "out"
    cmd = [str(Path(sys.executable).parent / "rejuv"), "apply", "--base", str(base), "--sft", str(sft),
           "--out", str(out), "--fusion-only", "--no-progress", "--max-shard-size", "20MB"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp = tmp_path / f".out.rejuv-tmp-{proc.pid}"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        shards = list(tmp.glob("model-*.safetensors")) if tmp.exists() else []
        if len(shards) >= 2:  # in the middle of writing
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be interrupted; make the model larger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # the killed run left no output folder, only its hidden temporary one
    assert tmp.exists()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not tmp.exists()  # the stale temporary folder of the dead run was cleared
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "out", "sft"]
    fused, b, s = Checkpoint(out), Checkpoint(base), Checkpoint(sft)
    for name in ("model.embed_tokens.weight", "model.layers.11.mlp.down_proj.weight"):
        assert torch.equal(fused.read(name), 0.5 * s.read(name) + 0.5 * b.read(name))
