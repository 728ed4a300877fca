"""Fusion wall time against the physical floor (reading both inputs, writing the output), and peak memory.

    python benchmarks/fusion_speed.py --size 1B --workdir /tmp/fusion-bench [--mergekit PATH]

Writes a random bf16 Llama checkpoint of the requested size (0.5B, 1B, 3B, 9B; or --hidden/--layers/--vocab)
and a perturbed copy, then, each time after dropping the page cache (root only; otherwise the reads may
come from memory and the run says so):
- floor: `cat base/*.safetensors > /dev/null` plus `cp` of the SFT shards (reads the second input and
  writes the output's bytes), on the same disk;
- rejuv: `rejuv apply --fusion-only --alpha 0.5`, with its peak RSS from /usr/bin/time, and its
  start-up (interpreter and imports, timed as `rejuv --version`), so the ratio is given with
  and without that fixed cost;
- with `--mergekit PATH/TO/mergekit-yaml` (installed in its own environment): mergekit's `linear` merge
  with the same settings (weights 0.5/0.5, no normalisation, float32 arithmetic, bf16 output), timed the
  same way, and every output tensor compared with rejuv's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from synthetic import perturb_checkpoint, write_synthetic_model

from rejuv.io.reader import Checkpoint
from rejuv.report.model_card import mergekit_config


def time_and_peak(cmd: list[str]) -> tuple[float, int]:
    result = subprocess.run(["/usr/bin/time", "-f", "%e %M", *cmd], capture_output=True, text=True, check=True)
    wall, peak_kb = result.stderr.strip().splitlines()[-1].split()
    return float(wall), int(peak_kb) // 1024


def identical_tensors(a: Path, b: Path) -> tuple[int, int]:
    ours, theirs = Checkpoint(a), Checkpoint(b)
    same = sum(torch_equal(ours.read(n), theirs.read(n)) for n in ours.names())
    return same, len(ours.names())


def torch_equal(x, y) -> bool:
    import torch

    return x.dtype == y.dtype and x.shape == y.shape and bool(torch.equal(x, y))


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


SIZES = {  # Llama shapes (4× MLP, vocab 32000, untied head) giving about the named parameter count
    "0.5B": {"hidden": 1024, "layers": 24},  # 0.47 B
    "1B": {"hidden": 2048, "layers": 16},  # 1.20 B
    "3B": {"hidden": 2560, "layers": 28},  # 3.10 B
    "9B": {"hidden": 4096, "layers": 32},  # 8.85 B (17.7 GB per model): a 7B's width and depth, 4× MLP
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), help="preset shape; overrides --hidden/--layers")
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--workdir", default="/tmp/fusion-bench")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--mergekit", help="path to mergekit-yaml in a separate environment")
    args = parser.parse_args()
    if args.size:
        args.hidden, args.layers = SIZES[args.size]["hidden"], SIZES[args.size]["layers"]
    work = Path(args.workdir)
    base, sft = work / "base", work / "sft"
    wanted = {"hidden_size": args.hidden, "num_hidden_layers": args.layers, "vocab_size": args.vocab}
    have = json.loads((base / "config.json").read_text()) if (base / "config.json").exists() else {}
    if any(have.get(k) != v for k, v in wanted.items()):
        shutil.rmtree(work, ignore_errors=True)
        write_synthetic_model(base, hidden=args.hidden, layers=args.layers, vocab=args.vocab, heads=16,
                              dtype="bfloat16")
        perturb_checkpoint(base, sft, scale=0.001)
    size = sum(f.stat().st_size for f in base.glob("*.safetensors"))
    params = size // 2
    rejuv = str(Path(sys.executable).parent / "rejuv")
    rows = []
    out = work / "fused"
    for _ in range(args.repeats):
        # Every output is deleted before the cache drop (which syncs), so that freeing and discarding its
        # blocks never overlaps a timed step, and as soon as it is done with, so that disk holds the
        # inputs plus at most rejuv's and mergekit's outputs.
        for old in ("copy", "fused", "mergekit_out"):
            shutil.rmtree(work / old, ignore_errors=True)
        (work / "copy").mkdir()
        cold = drop_caches()
        floor = timed(f"cat {base}/*.safetensors > /dev/null && cp {sft}/*.safetensors {work / 'copy'}/", shell=True)
        shutil.rmtree(work / "copy")
        drop_caches()
        wall, peak = time_and_peak([rejuv, "apply", "--base", str(base), "--sft", str(sft), "--out", str(out),
                                    "--fusion-only", "--no-progress"])
        startup = timed([rejuv, "--version"])
        row = {"params": params, "bytes_per_model": size, "cold_cache": cold, "floor_s": round(floor, 2),
               "rejuv_s": wall, "startup_s": round(startup, 2), "ratio": round(wall / floor, 2),
               "ratio_after_startup": round((wall - startup) / floor, 2), "peak_rss_mb": peak}
        if args.mergekit:
            config = work / "mergekit.yaml"
            config.write_text(mergekit_config(str(base), str(sft), 0.5, "BF16"))
            drop_caches()
            mk_wall, mk_peak = time_and_peak([args.mergekit, str(config), str(work / "mergekit_out"),
                                              "--no-copy-tokenizer"])
            same, total = identical_tensors(out, work / "mergekit_out")
            shutil.rmtree(work / "mergekit_out")
            row.update(mergekit_s=mk_wall, mergekit_peak_rss_mb=mk_peak, speedup=round(mk_wall / wall, 2),
                       memory_ratio=round(mk_peak / peak, 2), identical_tensors=f"{same}/{total}")
        rows.append(row)
        print(json.dumps(rows[-1]), flush=True)
    print("\n| parameters | GB per model | floor (s) | rejuv (s) | of which start-up (s) | ratio to floor | "
          "ratio without start-up | rejuv peak RSS (MB) | mergekit (s) | mergekit peak RSS (MB) | outputs identical |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['params'] / 1e9:.2f} B | {r['bytes_per_model'] / 1e9:.2f} | {r['floor_s']} | {r['rejuv_s']} | "
              f"{r['startup_s']} | {r['ratio']} | {r['ratio_after_startup']} | {r['peak_rss_mb']} | "
              f"{r.get('mergekit_s', '–')} | "
              f"{r.get('mergekit_peak_rss_mb', '–')} | {r.get('identical_tensors', '–')} |")


if __name__ == "__main__":
    main()
