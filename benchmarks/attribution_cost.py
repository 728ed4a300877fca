"""Cost of attribution against its floor (one forward+backward per target token), before and after issue 18.

    python benchmarks/attribution_cost.py --shape 135m [--samples 8 --targets 8 --response 320] [--repeats 2]
    python benchmarks/attribution_cost.py --hidden 64 --layers 2 --vocab 256   # any shape
    python benchmarks/attribution_cost.py --shape 1b --device cuda --dtype bfloat16   # on a GPU

A random Llama of a real shape (`--shape`: 135m = SmolLM-135M, 30 layers × 576, 49,152-token vocabulary;
1b = Llama-3.2-1B, 16 layers × 2048, 128,256 tokens; both with tied embeddings), written to a temporary
folder and loaded as `rejuv apply` loads it, and synthetic calibration samples (prompt + response token
ids); targets are random response positions, as `select_targets` picks them. In the same run, after a
warm-up of each, interleaved sample by sample (each method first in turn, so that a slow spell of a shared
machine falls on all of them):
- floor: for each target alone, a forward over its prefix and the backward of its logit down to the
  embedding output (no weight gradients): one forward+backward per target token, batch 1;
- copies: the attribution before issue 18 (benchmarks/attribution_copies.py: a copy of the sample per
  target, grouped by prefix length, at most `--batch-size` copies per pass);
- rejuv: what `rejuv apply` does now, `attribute_sample` once per sample (one forward up to the last
  target, in pieces that end at targets, then per piece batched backwards of its targets);
- rejuv@COST (`--piece-costs`): the same with another cost per forward piece (a large one: one piece).
The floor's forwards and backwards are also timed apart: "one forward + the floor's backwards" is what a
method would cost that ran one forward per sample (the floor's forward of its longest prefix) and every
target's backward at the floor's price, the bound one shared forward gives when batching the backwards
saves nothing.
Every method scores every reader and writer neuron. Per method: seconds, the ratio to the floor, and the
growth of peak memory during one sample (CPU: VmHWM reset before each call, after freed pages go back to
the OS; GPU: max_memory_allocated), measured in a second, untimed pass over the samples.
The scores of copies and every rejuv are compared (largest difference relative to the largest score).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import tempfile
import time

import torch
from attribution_copies import attribute_with_copies
from synthetic import write_synthetic_model

from rejuv.data.calibration import Sample
from rejuv.io.reader import Checkpoint, release_freed_memory
from rejuv.method.arch import adapter_for
from rejuv.method.attribution import Target, attribute_sample
from rejuv.modeling import load_frozen_model

SHAPES = {  # real checkpoints' shapes: hidden, layers, intermediate, heads, kv heads, vocabulary
    "135m": dict(hidden=576, layers=30, intermediate=1536, heads=9, kv_heads=3, vocab=49152),
    "1b": dict(hidden=2048, layers=16, intermediate=8192, heads=32, kv_heads=8, vocab=128256),
}


def floor_pass(model, adapter, sample: Sample, targets: list[Target], device: str, split: dict) -> None:
    """One forward+backward per target; adds the forward seconds of the longest prefix to split["last_forward"]
    and every backward's seconds to split["backward"]."""
    backbone = model.get_submodule(adapter.backbone)
    embed = model.get_input_embeddings()
    head = model.get_submodule(adapter.unembedding).weight
    longest = max(range(len(targets)), key=lambda k: targets[k].position)
    for k, t in enumerate(targets):
        ids = torch.tensor(sample.input_ids[: t.position + 1], device=embed.weight.device)[None]
        with torch.enable_grad():
            start = time.perf_counter()
            x = embed(ids).detach().requires_grad_(True)
            hidden = backbone(inputs_embeds=x, use_cache=False).last_hidden_state
            z = (hidden[0, -1].to(head.device).float() * head[t.token].float()).sum()
            synchronize(device)
            middle = time.perf_counter()
            torch.autograd.grad(z, x)
            synchronize(device)
            if k == longest:
                split["last_forward"] += middle - start
            split["backward"] += time.perf_counter() - middle


def synchronize(device: str) -> None:
    if device != "cpu" and torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_peak(device: str) -> int:
    """Reset the peak-memory mark; the current use in bytes."""
    if device != "cpu" and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    gc.collect()
    release_freed_memory(1 << 62)  # what the previous method freed goes back to the OS: its peak is not ours
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS")


def peak(device: str) -> int:
    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated()
    return _status("VmHWM")


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), help="a real checkpoint's shape; overrides the sizes")
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--targets", type=int, default=8, help="targets per sample")
    parser.add_argument("--prompt", type=int, default=96, help="prompt tokens")
    parser.add_argument("--response", type=int, default=160, help="response tokens")
    parser.add_argument("--batch-size", type=int, default=8, help="copies per pass of the copies method")
    parser.add_argument("--methods", default="floor,copies,rejuv", help="which to time, comma-separated")
    parser.add_argument("--piece-costs", default="",
                        help="also time rejuv at these forward-piece costs (comma-separated token-backwards; "
                             "a large one gives a single piece), as methods rejuv@COST")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    shape = SHAPES[args.shape] if args.shape else dict(hidden=args.hidden, layers=args.layers, vocab=args.vocab,
                                                       heads=8, intermediate=None, kv_heads=None)
    methods = args.methods.split(",")

    rng = random.Random(args.seed)
    samples, targets = [], []
    for _ in range(args.samples):
        ids = [rng.randrange(3, shape["vocab"]) for _ in range(args.prompt + args.response)]
        sample = Sample(ids, args.prompt, 0)
        positions = sorted(rng.sample(list(sample.predict_positions), args.targets))
        samples.append(sample)
        targets.append([Target(0, p, ids[p + 1], 0.0) for p in positions])

    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_model(tmp, dtype=args.dtype, tied=bool(args.shape), **shape)
        with Checkpoint(tmp) as ckpt:
            adapter = adapter_for(ckpt.config)
            params = sum(math.prod(info.shape) for info in ckpt.tensors.values())
        model = load_frozen_model(tmp, args.dtype, args.device, progress=False)
        neurons = adapter.neurons(model.config.to_dict())
        split = {"last_forward": 0.0, "backward": 0.0}
        runs = {
            "floor": lambda s, t: floor_pass(model, adapter, s, t, args.device, split),
            "copies": lambda s, t: attribute_with_copies(model, adapter, neurons, s, t, args.batch_size),
            "rejuv": lambda s, t: attribute_sample(model, adapter, neurons, s, t),
        }
        for cost in filter(None, args.piece_costs.split(",")):
            runs[f"rejuv@{cost}"] = lambda s, t, c=int(cost): attribute_sample(model, adapter, neurons, s, t, c)
            methods.append(f"rejuv@{cost}")
        runs = {name: runs[name] for name in methods}
        with torch.no_grad():  # as the calibration passes call them
            for run in runs.values():  # warm-up: allocator, kernels
                run(samples[0], targets[0][:2])
            agree = None  # of every rejuv method's scores with the copies', relative to the largest score
            if "copies" in runs:
                old = runs["copies"](samples[0], targets[0])[0]
                for name in (m for m in runs if m.startswith("rejuv")):
                    new = runs[name](samples[0], targets[0])[0]
                    agree = max(agree or 0.0, *(float((old[n] - new[n]).abs().max()
                                                      / old[n].abs().max().clamp_min(1e-30)) for n in neurons))
            rows = []
            for _ in range(args.repeats):
                row = {"params": params, "device": args.device, "dtype": args.dtype,
                       "targets": args.samples * args.targets, "sequence": args.prompt + args.response,
                       "max_relative_difference": agree}
                seconds, grown = dict.fromkeys(runs, 0.0), dict.fromkeys(runs, 0)
                split.update(last_forward=0.0, backward=0.0)
                for i, (s, t) in enumerate(zip(samples, targets, strict=True)):
                    names = list(runs)[i % len(runs):] + list(runs)[:i % len(runs)]  # each goes first in turn
                    for name in names:  # sample by sample: a slow spell of a shared machine hits every method
                        synchronize(args.device)
                        start = time.perf_counter()
                        runs[name](s, t)
                        synchronize(args.device)
                        seconds[name] += time.perf_counter() - start
                bound = (split["last_forward"] + split["backward"]) / seconds["floor"] if "floor" in runs else None
                # Memory in a pass of its own: measuring it hands freed pages back to the OS before each call,
                # and a timed call would then fault its whole working set in again, which `rejuv apply`,
                # reusing the allocator's pages from sample to sample, does not.
                for s, t in zip(samples, targets, strict=True):
                    for name in runs:
                        before = reset_peak(args.device)
                        runs[name](s, t)
                        synchronize(args.device)
                        grown[name] = max(grown[name], peak(args.device) - before)
                for name in runs:
                    row[f"{name}_s"] = round(seconds[name], 3)
                    row[f"{name}_peak_mb"] = round(grown[name] / 2**20)
                for name in runs:
                    if name != "floor" and "floor" in runs:
                        row[f"{name}_ratio"] = round(row[f"{name}_s"] / row["floor_s"], 2)
                if bound is not None:  # one forward per sample, every target's backward at the floor's price
                    row["one_forward_bound_ratio"] = round(bound, 2)
                rows.append(row)
                print(json.dumps(row), flush=True)
    others = [m for m in runs if m != "floor"]
    bound = ["one forward + the floor's backwards / floor"] if "floor" in runs else []
    print("\n| parameters | device | dtype | targets | tokens per sample | "
          + " | ".join(f"{m} (s)" for m in runs) + " | " + " | ".join([f"{m} / floor" for m in others] + bound)
          + " | peak growth " + " / ".join(runs) + " (MB) |")
    print("|---" * (6 + len(runs) + len(others) + len(bound)) + "|")
    for r in rows:
        print(f"| {r['params'] / 1e6:.0f} M | {r['device']} | {r['dtype']} | {r['targets']} | {r['sequence']} | "
              + " | ".join(str(r[f"{m}_s"]) for m in runs) + " | "
              + " | ".join([str(r.get(f"{m}_ratio", "–")) for m in others]
                           + [str(r["one_forward_bound_ratio"])] * len(bound)) + " | "
              + " / ".join(str(r[f"{m}_peak_mb"]) for m in runs) + " |")


if __name__ == "__main__":
    main()
