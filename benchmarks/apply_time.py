"""Wall time and peak memory of `rejuv apply` with calibration on a real-shape stand-in, and (with --before) the
same command run by another version of rejuv, interleaved, with a byte-for-byte comparison of the outputs.

    python benchmarks/apply_time.py [--shape 135m] [--calib short,long] [--repeats 1]
    python benchmarks/apply_time.py --before /path/to/old/checkout/src     # before against now

The stand-in, built once in --work (nothing can be downloaded here; its timing is what matters, not its
weights):
- base: a random Llama of SmolLM2-135M's shape in bf16 with a chat tokenizer (`reset_ratio.build_base`,
  the tokenizer trained on the calibration rows);
- SFT: every tensor of the base + 0.01 · N(0, 1) (float32, one torch.Generator seeded with 1, tensors in
  name order), stored in bf16, the base's config and tokenizer beside it;
- calib.jsonl ("short"): 64 arithmetic word problems (`reset_ratio.word_problem`, random.Random(--seed)),
  ~21 response tokens each; calib-long.jsonl ("long"): the next 32 × 8 problems of that generator, 8
  questions and their 8 answers joined per row (~128 prompt + ~172 response tokens).

Each run is `rejuv apply --base --sft --calib --out --max-samples --no-progress` with the defaults (8 targets
per row, ρ = 0.01; --samples rows, 64) in its own process: wall time, and peak RSS (its VmHWM at exit). Runs of
the two versions alternate, each first in turn. Prints one JSON line per run and per comparison, then a markdown
table.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from reset_ratio import SHAPES, build_base, word_problem
from safetensors.torch import load_file, save_file


def build_stand_in(work: Path, shape: str, seed: int) -> tuple[Path, Path, dict[str, Path]]:
    """Base, SFT stand-in and the two calibration files, cached in `work`."""
    rng = random.Random(seed)
    short = [word_problem(rng) for _ in range(64)]
    long = []
    for _ in range(32):
        problems = [word_problem(rng) for _ in range(8)]
        long.append({"messages": [
            {"role": "user", "content": "\n".join(p["messages"][0]["content"] for p in problems)},
            {"role": "assistant", "content": "\n".join(p["messages"][1]["content"] for p in problems)}]})
    calib = {"short": work / "calib.jsonl", "long": work / "calib-long.jsonl"}
    for name, rows in (("short", short), ("long", long)):
        calib[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    base, sft = work / f"{shape}-base", work / f"{shape}-sft-noise"
    if not base.is_dir():
        build_base(base, shape, seed, short + long)
    if not sft.is_dir():
        partial = work / f"{shape}-sft-noise.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(base, partial, ignore=shutil.ignore_patterns("*.safetensors"))
        generator = torch.Generator().manual_seed(1)
        for file in sorted(base.glob("*.safetensors")):
            tensors = load_file(file)
            noisy = {name: (tensors[name].float() + 0.01 * torch.randn(tensors[name].shape, generator=generator))
                     .to(tensors[name].dtype) for name in sorted(tensors)}
            save_file(noisy, partial / file.name, metadata={"format": "pt"})
        partial.rename(sft)
    return base, sft, calib


# The command in the child reports its own VmHWM at exit: getrusage's ru_maxrss would carry the high-water
# mark of this (torch-loaded) process over fork and exec.
CHILD = """import atexit, os
def report():
    with open('/proc/self/status') as f:
        hwm = next(line.split()[1] for line in f if line.startswith('VmHWM:'))
    with open(os.environ['APPLY_TIME_HWM'], 'w') as f:
        f.write(hwm)
atexit.register(report)
from rejuv.cli import main
main()
"""


def run_apply(src: str | None, base: Path, sft: Path, calib: Path, out: Path, samples: int) -> dict:
    """One `rejuv apply` in its own process (the rejuv under `src` when given): wall seconds and peak RSS."""
    shutil.rmtree(out, ignore_errors=True)
    hwm = out.with_name(out.name + ".hwm")
    env = dict(os.environ, APPLY_TIME_HWM=str(hwm))
    if src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    command = [sys.executable, "-c", CHILD, "apply", "--base", str(base), "--sft", str(sft), "--calib", str(calib),
               "--out", str(out), "--max-samples", str(samples), "--no-progress"]
    start = time.perf_counter()
    result = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"rejuv apply ({src or 'this checkout'}) failed:\n{result.stderr.decode()[-3000:]}")
    return {"wall_s": round(seconds, 1), "peak_rss_mb": round(int(hwm.read_text()) / 1024)}  # VmHWM is in kB


def compare(left: Path, right: Path) -> dict:
    """Files of two output folders: those with the same bytes, those that differ, those in one only."""
    names = sorted({p.relative_to(left).as_posix() for p in left.rglob("*") if p.is_file()}
                   | {p.relative_to(right).as_posix() for p in right.rglob("*") if p.is_file()})
    both = [n for n in names if (left / n).is_file() and (right / n).is_file()]
    same = [n for n in both if filecmp.cmp(left / n, right / n, shallow=False)]
    return {"identical": same, "different": [n for n in both if n not in same],
            "missing": [n for n in names if n not in both]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=list(SHAPES), default="135m")
    parser.add_argument("--calib", default="short,long", help="which calibration files, comma-separated")
    parser.add_argument("--before", help="a `src` folder of another rejuv version, run with PYTHONPATH")
    parser.add_argument("--samples", type=int, default=64, help="calibration rows (apply's --max-samples)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--work", default="/tmp/rejuv-apply-time")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not set(args.calib.split(",")) <= {"short", "long"}:
        parser.error(f"--calib: 'short', 'long' or both, not {args.calib!r}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    base, sft, calib = build_stand_in(work, args.shape, args.seed)
    versions = {"before": args.before, "now": None} if args.before else {"now": None}

    table = []
    for name in args.calib.split(","):
        runs = {v: [] for v in versions}
        for repeat in range(args.repeats):
            order = list(versions)[repeat % len(versions):] + list(versions)[:repeat % len(versions)]
            for version in order:
                result = run_apply(versions[version], base, sft, calib[name], work / f"out-{version}-{name}",
                                    args.samples)
                runs[version].append(result)
                print(json.dumps({"shape": args.shape, "calib": name, "version": version, "repeat": repeat,
                                  **result}), flush=True)
        row = {"calib": name, **{v: runs[v] for v in versions}}
        if args.before:
            row["output"] = compare(work / f"out-before-{name}", work / f"out-now-{name}")
            print(json.dumps({"calib": name, **row["output"]}), flush=True)
        table.append(row)

    print("\n| calibration | " + " | ".join(f"{v}: wall / peak RSS" for v in versions)
          + (" | output |" if args.before else " |"))
    print("|---" * (1 + len(versions) + bool(args.before)) + "|")
    for row in table:
        cells = [", ".join(f"{r['wall_s']} s / {r['peak_rss_mb'] / 1024:.2f} GB" for r in row[v]) for v in versions]
        if args.before:
            out = row["output"]
            cells.append(f"{len(out['identical'])} files identical"
                         + (f"; differ: {', '.join(out['different'])}" if out["different"] else "")
                         + (f"; in one only: {', '.join(out['missing'])}" if out["missing"] else ""))
        print(f"| {row['calib']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
