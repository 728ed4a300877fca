"""Fusion wall time against the physical floor (reading both inputs, writing the output), and peak memory.

    python benchmarks/fusion_speed.py --hidden 2048 --layers 16 --vocab 32000 --workdir /tmp/fusion-bench

Writes a random bf16 Llama checkpoint (here 1.2 B parameters, 2.4 GB) and a perturbed copy, then, each
time after dropping the page cache (root only; otherwise the reads may come from memory and the run
says so):
- floor: `cat base/*.safetensors > /dev/null` plus `cp` of the SFT shards (reads the second input and
  writes the output's bytes), on the same disk;
- rejuv: `rejuv apply --fusion-only --alpha 0.5`, with its peak RSS from /usr/bin/time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rejuv.synthetic import perturb_checkpoint, write_synthetic_model


def drop_caches() -> bool:
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def timed(cmd: list[str] | str, shell: bool = False) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, shell=shell, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--workdir", default="/tmp/fusion-bench")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    work = Path(args.workdir)
    base, sft = work / "base", work / "sft"
    if not (base / "config.json").exists():
        shutil.rmtree(work, ignore_errors=True)
        write_synthetic_model(base, hidden=args.hidden, layers=args.layers, vocab=args.vocab, heads=16,
                              dtype="bfloat16")
        perturb_checkpoint(base, sft, scale=0.001)
    size = sum(f.stat().st_size for f in base.glob("*.safetensors"))
    params = size // 2
    rejuv = str(Path(sys.executable).parent / "rejuv")
    rows = []
    for _ in range(args.repeats):
        cold = drop_caches()
        shutil.rmtree(work / "copy", ignore_errors=True)
        (work / "copy").mkdir()
        floor = timed(f"cat {base}/*.safetensors > /dev/null && cp {sft}/*.safetensors {work / 'copy'}/", shell=True)
        drop_caches()
        out = work / "fused"
        shutil.rmtree(out, ignore_errors=True)
        result = subprocess.run(["/usr/bin/time", "-f", "%e %M", rejuv, "apply", "--base", str(base), "--sft", str(sft),
                                 "--out", str(out), "--fusion-only", "--no-progress"],
                                capture_output=True, text=True, check=True)
        wall, peak_kb = result.stderr.strip().splitlines()[-1].split()
        rows.append({"params": params, "bytes_per_model": size, "cold_cache": cold, "floor_s": round(floor, 2),
                     "rejuv_s": float(wall), "ratio": round(float(wall) / floor, 2),
                     "peak_rss_mb": round(int(peak_kb) / 1024)})
        print(json.dumps(rows[-1]), flush=True)
    print("\n| parameters | GB per model | floor (s) | rejuv apply --fusion-only (s) | ratio | peak RSS (MB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['params'] / 1e9:.2f} B | {r['bytes_per_model'] / 1e9:.2f} | {r['floor_s']} | {r['rejuv_s']} | "
              f"{r['ratio']} | {r['peak_rss_mb']} |")


if __name__ == "__main__":
    main()
