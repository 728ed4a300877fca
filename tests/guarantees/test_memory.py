"""Fusion streams: its peak memory does not grow with the size of the model."""

import json
import subprocess
import sys

import pytest
from synthetic import perturb_checkpoint, write_synthetic_model

# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the parent (this pytest process, with torch
# and transformers loaded), which would hide any growth below the parent's size. Writing 5 to clear_refs
# resets the high-water mark to the current size, so the figure is the fusion's own growth.
MEASURE = """
import json, sys
import rejuv.api
def status(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key + ":"))
open("/proc/self/clear_refs", "w").write("5")
before = status("VmRSS")
rejuv.fuse(sys.argv[1], sys.argv[2], sys.argv[3], alpha=0.5, progress=False, max_shard_size="16MB")
print(json.dumps({"growth_mb": (status("VmHWM") - before) / 1024}))
"""


def peak_growth_mb(tmp_path, name, layers):
    base = write_synthetic_model(tmp_path / f"{name}_b", hidden=512, layers=layers, vocab=2048, dtype="float32",
                                 max_shard_bytes=64 * 2**20)
    sft = perturb_checkpoint(base, tmp_path / f"{name}_s", max_shard_bytes=64 * 2**20)
    out = subprocess.run([sys.executable, "-c", MEASURE, str(base), str(sft), str(tmp_path / f"{name}_o")],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["growth_mb"]


@pytest.mark.slow
def test_fusion_peak_memory_is_flat_in_model_size(tmp_path):
    # Every tensor is 8 MiB (2048×512 or 512×2048 float32) at most; models are ~40 MB and ~390 MB.
    small = peak_growth_mb(tmp_path, "small", layers=2)
    large = peak_growth_mb(tmp_path, "large", layers=24)
    # Two inputs and one output of ~390 MB each pass through; a few 8 MiB tensors may be live at once.
    assert large < 80, f"fusion grew RSS by {large:.0f} MB on a 390 MB model"
    assert large < small + 40, f"peak grew from {small:.0f} MB to {large:.0f} MB with model size"
