"""Fusing a LoRA adapter: rejuv's stream (θ_base + α·s·B·A, block by block, no merged copy) against merging it with
PEFT first (load the base, `merge_and_unload`, save the merged copy) and fusing the merged copy, the route a user
had before rejuv took adapters. Each step runs in a fresh process; wall time, peak resident memory and the bytes
written are measured in one run, and the two outputs are compared.

    python benchmarks/lora_fusion.py [--shape llama-1b|tiny] [--rank 16] [--work DIR]

`llama-1b` is Llama-3.2-1B's shape (1.24 B parameters, bf16, tied embeddings, 128k vocabulary) with random
weights; the adapter is rank `--rank` on every linear layer (q, k, v, o, gate, up, down), as PEFT saves it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from synthetic import write_synthetic_model

SHAPES = {"llama-1b": dict(hidden=2048, layers=16, intermediate=8192, vocab=128256, heads=32, kv_heads=8, tied=True),
          "tiny": dict(hidden=64, layers=2, intermediate=128, vocab=256, heads=4, kv_heads=2, tied=True)}
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# Peak = VmHWM after resetting it (clear_refs 5) just before the step, minus the resident size then.
MEASURE = """
import json, sys, time
import torch, transformers, peft, rejuv.api  # imports are no part of the figure
def status(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key + ":"))
base, adapter, merged, out = sys.argv[1:5]
open("/proc/self/clear_refs", "w").write("5")
before = status("VmRSS")
start = time.perf_counter()
{body}
print(json.dumps({{"seconds": time.perf_counter() - start, "peak_growth_mb": (status("VmHWM") - before) / 1024}}))
"""
STEPS = {
    "rejuv: fuse the adapter": "rejuv.api.fuse(base, adapter, out, alpha=0.5, progress=False)",
    "PEFT: merge_and_unload, save the merged copy": (
        "from transformers import AutoModelForCausalLM\nfrom peft import PeftModel\n"
        "model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16)\n"
        "PeftModel.from_pretrained(model, adapter).merge_and_unload().save_pretrained(merged)"),
    "rejuv: fuse the merged copy": "rejuv.api.fuse(base, merged, out, alpha=0.5, progress=False)",
}


def write_adapter(folder: Path, base: Path, shape: dict, rank: int, seed: int = 1) -> Path:
    """A random LoRA adapter (PEFT's files and key names) on every linear layer of the synthetic model."""
    folder.mkdir(parents=True)
    hidden, inter, heads, kv = shape["hidden"], shape["intermediate"], shape["heads"], shape["kv_heads"]
    kv_width = kv * hidden // heads
    dims = {"q_proj": (hidden, hidden), "k_proj": (kv_width, hidden), "v_proj": (kv_width, hidden),
            "o_proj": (hidden, hidden), "gate_proj": (inter, hidden), "up_proj": (inter, hidden),
            "down_proj": (hidden, inter)}
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(shape["layers"]):
        for kind in TARGETS:
            module = f"model.layers.{layer}.{'mlp' if kind in ('gate_proj', 'up_proj', 'down_proj') else 'self_attn'}"
            out_dim, in_dim = dims[kind]
            key = f"base_model.model.{module}.{kind}"
            tensors[f"{key}.lora_A.weight"] = (torch.randn(rank, in_dim, generator=gen) / in_dim**0.5).bfloat16()
            tensors[f"{key}.lora_B.weight"] = (0.01 * torch.randn(out_dim, rank, generator=gen)).bfloat16()
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "target_modules": list(TARGETS),
              "base_model_name_or_path": str(base), "bias": "none", "lora_dropout": 0.0, "task_type": "CAUSAL_LM",
              "use_rslora": False, "use_dora": False, "fan_in_fan_out": False}
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return folder


def _bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _compare(a: Path, b: Path) -> dict:
    """How far the two outputs are apart: the share of entries that differ, and the largest difference relative
    to its tensor's largest value (bf16 holds about 3 significant digits: a step is 2^-8 of a value's scale)."""
    from rejuv.io.reader import Checkpoint

    differ = total = 0
    worst = 0.0
    with Checkpoint(a) as x, Checkpoint(b) as y:
        for name in x.names():
            u, v = x.read(name).float(), y.read(name).float()
            differ += int((u != v).sum())
            total += u.numel()
            worst = max(worst, float((u - v).abs().max() / u.abs().max().clamp_min(1e-30)))
    return {"entries_differing": round(differ / total, 4), "max_diff_relative_to_tensor_max": worst}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SHAPES, default="llama-1b")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--work", help="folder for the models (default: a temporary one)")
    args = parser.parse_args()
    shape = SHAPES[args.shape]
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        root = Path(tmp)
        base = write_synthetic_model(root / "base", dtype="bfloat16", **shape)
        adapter = write_adapter(root / "adapter", base, shape, args.rank)
        rows = []
        for name, body in STEPS.items():
            out = root / ("out_adapter" if name.endswith("adapter") else "out_merged")
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", MEASURE.format(body=body), str(base), str(adapter),
                                   str(root / "merged"), str(out)], capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{name}: failed\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            written = _bytes(root / "merged") if name.startswith("PEFT") else _bytes(out)
            rows.append({"step": name, "seconds": round(result["seconds"], 2),
                         "peak_growth_mb": round(result["peak_growth_mb"]), "written_mb": round(written / 2**20),
                         "process_seconds": round(time.perf_counter() - start, 2)})
            print(json.dumps(rows[-1]), flush=True)
        summary = {"shape": args.shape, "rank": args.rank, "base_mb": round(_bytes(base) / 2**20),
                   "adapter_mb": round(_bytes(adapter) / 2**20),
                   "outputs": _compare(root / "out_adapter", root / "out_merged"),
                   "stream_seconds": rows[0]["seconds"],
                   "merge_then_fuse_seconds": round(rows[1]["seconds"] + rows[2]["seconds"], 2),
                   "stream_peak_mb": rows[0]["peak_growth_mb"],
                   "merge_then_fuse_peak_mb": max(rows[1]["peak_growth_mb"], rows[2]["peak_growth_mb"])}
        print(json.dumps(summary), flush=True)
        shutil.rmtree(root / "merged", ignore_errors=True)
    print("\n| step | wall (s) | peak RSS growth (MB) | written (MB) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['step']} | {r['seconds']} | {r['peak_growth_mb']} | {r['written_mb']} |")


if __name__ == "__main__":
    main()
