"""Cost of attribution against its floor: one forward+backward per target token.

    python benchmarks/attribution_cost.py [--hidden 1024 --layers 8 --vocab 8192] [--device cpu|cuda|auto]
                                          [--dtype float32|bfloat16] [--samples 8 --targets 8]

A random Llama (written to a temporary folder, loaded as `rejuv apply` loads it) and
synthetic calibration samples (prompt + response token ids); targets are random
response positions, as `select_targets` picks them (8 per sample by default).
In the same run, after a warm-up of each:
- floor: for each target alone, a forward over its prefix and the backward of its
  logit down to the embedding output (no weight gradients), i.e. one
  forward+backward per target token, batch 1;
- rejuv: what `rejuv apply` does, `group_targets` then `attribute_sample` per
  group (every reader and writer scored, reconstruction error computed).
Prints one JSON line per repeat and a table row; the ratio is rejuv / floor.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time

import torch
from synthetic import write_synthetic_model

from rejuv.arch import adapter_for
from rejuv.attribution import Target, attribute_sample, group_targets
from rejuv.calibration import Sample
from rejuv.io.reader import Checkpoint
from rejuv.modeling import load_frozen_model


def floor_pass(model, adapter, sample: Sample, targets: list[Target]) -> None:
    backbone = model.get_submodule(adapter.backbone)
    embed = model.get_input_embeddings()
    head = model.get_submodule(adapter.unembedding).weight
    for t in targets:
        ids = torch.tensor(sample.input_ids[: t.position + 1], device=embed.weight.device)[None]
        with torch.enable_grad():
            x = embed(ids).detach().requires_grad_(True)
            hidden = backbone(inputs_embeds=x, use_cache=False).last_hidden_state
            z = (hidden[0, -1].to(head.device).float() * head[t.token].float()).sum()
            torch.autograd.grad(z, x)


def rejuv_pass(model, adapter, neurons, sample: Sample, targets: list[Target], max_copies: int,
               slack: float) -> None:
    for group in group_targets(targets, max_copies, slack):
        attribute_sample(model, adapter, neurons, sample, group)


def synchronize(device: str) -> None:
    if device != "cpu" and torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--targets", type=int, default=8, help="targets per sample")
    parser.add_argument("--prompt", type=int, default=96, help="prompt tokens")
    parser.add_argument("--response", type=int, default=160, help="response tokens")
    parser.add_argument("--batch-size", type=int, default=8, help="target copies per attribution pass")
    parser.add_argument("--slack", type=float, default=1.25, help="group_targets slack (a huge value: one batch)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    samples, targets = [], []
    for _ in range(args.samples):
        ids = [rng.randrange(3, args.vocab) for _ in range(args.prompt + args.response)]
        sample = Sample(ids, args.prompt, 0)
        positions = sorted(rng.sample(list(sample.predict_positions), args.targets))
        samples.append(sample)
        targets.append([Target(0, p, ids[p + 1], 0.0) for p in positions])

    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_model(tmp, hidden=args.hidden, layers=args.layers, vocab=args.vocab, dtype=args.dtype)
        with Checkpoint(tmp) as ckpt:
            adapter = adapter_for(ckpt.config)
            params = sum(math.prod(info.shape) for info in ckpt.tensors.values())
        model = load_frozen_model(tmp, args.dtype, args.device, progress=False)
        neurons = adapter.neurons(model.config.to_dict())
        runs = {"floor": lambda s, t: floor_pass(model, adapter, s, t),
                "rejuv": lambda s, t: rejuv_pass(model, adapter, neurons, s, t, args.batch_size, args.slack)}
        for run in runs.values():  # warm-up: allocator, kernels
            run(samples[0], targets[0][:2])
        rows = []
        for _ in range(args.repeats):
            row = {"params": params, "device": args.device, "dtype": args.dtype, "targets": args.samples * args.targets,
                   "sequence": args.prompt + args.response, "slack": args.slack}
            for name, run in runs.items():
                synchronize(args.device)
                start = time.perf_counter()
                for s, t in zip(samples, targets, strict=True):
                    run(s, t)
                synchronize(args.device)
                row[f"{name}_s"] = round(time.perf_counter() - start, 3)
            row["ratio"] = round(row["rejuv_s"] / row["floor_s"], 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| parameters | device | dtype | targets | tokens per sample | grouping slack | floor (s) | rejuv (s) "
          "| ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['params'] / 1e6:.0f} M | {r['device']} | {r['dtype']} | {r['targets']} | {r['sequence']} | "
              f"{r['slack']} | {r['floor_s']} | {r['rejuv_s']} | {r['ratio']} |")


if __name__ == "__main__":
    main()
