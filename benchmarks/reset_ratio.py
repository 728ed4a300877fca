"""How ρ (a share per target) becomes the reset set (their union): the effective reset ratio against ρ and the
number of targets, from one attribution pass.

    python benchmarks/reset_ratio.py [--shape 135m|tiny] [--sft-steps 60] [--work DIR]
    python benchmarks/reset_ratio.py --base B --sft S --calib C.jsonl     # your own checkpoints

Without --base/--sft it builds a model of real shape (`135m`: 30 layers, hidden 576, 9 heads / 3 KV heads,
MLP 1536, vocabulary 49,152, tied embeddings, stored in bf16, as SmolLM2-135M) with a byte-level BPE chat
tokenizer, and fine-tunes it with `rejuv sft` on arithmetic word problems in chat format. Nothing can be
downloaded here, so the base is a random initialisation, not a pretrained model: read the figures as how the
union grows on a model of this shape, not as SmolLM2's own. Both are cached in --work.

The pass is `rejuv apply`'s: calibration rows by the shared prompt rule, base and SFT entropies, N targets per
sample by entropy gap, `attribute_sample` on every target, global ranking. It keeps each target's top
⌈ρ_max·total⌉ neurons, so the union over the first T targets is exact for every ρ ≤ ρ_max and every T.
Prints one JSON line and markdown tables.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch

from rejuv.data.calibration import load_calibration
from rejuv.io.reader import Checkpoint
from rejuv.method.arch import adapter_for, neuron_sizes
from rejuv.method.attribution import attribute_sample, response_token_stats, select_targets
from rejuv.method.selection import budget
from rejuv.modeling import load_frozen_model

SHAPES = {  # hidden, layers, heads, kv heads, intermediate, vocabulary
    "135m": (576, 30, 9, 3, 1536, 49152),
    "tiny": (64, 4, 4, 2, 128, 4096),
}
RHOS = (0.001, 0.003, 0.01, 0.03)
NAMES = ("Ann", "Bo", "Cy", "Dee", "Eli", "Fay")
THINGS = ("apples", "books", "coins", "pens", "stamps", "cards")


def word_problem(rng: random.Random) -> dict:
    a, b = rng.randint(2, 60), rng.randint(2, 60)
    who, what = rng.choice(NAMES), rng.choice(THINGS)
    if rng.random() < 0.5:
        question = f"{who} has {a} {what} and gets {b} more. How many {what} does {who} have now?"
        answer = f"{who} starts with {a} {what} and gets {b} more, so {a} + {b} = {a + b}. \\boxed{{{a + b}}}"
    else:
        a, b = max(a, b), min(a, b)
        question = f"{who} has {a} {what} and gives away {b}. How many {what} are left?"
        answer = f"{who} has {a} {what} and gives away {b}, so {a} - {b} = {a - b}. \\boxed{{{a - b}}}"
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def build_base(path: Path, shape: str, seed: int, rows: list[dict]) -> None:
    """A random Llama of `shape` in bf16 with a byte-level BPE chat tokenizer trained on `rows`, saved to `path`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1024, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([m["content"] for r in rows for m in r["messages"]], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>")
    fast.chat_template = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + "
                          "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}"
                          "{{ '<|im_start|>assistant\\n' }}{% endif %}")
    hidden, layers, heads, kv, inter, vocab = SHAPES[shape]
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=kv, intermediate_size=inter, tie_word_embeddings=True,
                         max_position_embeddings=2048, bos_token_id=fast.bos_token_id,
                         eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(path)
    fast.save_pretrained(path)


def build(work: Path, shape: str, sft_steps: int, seed: int) -> tuple[Path, Path, Path]:
    """Base (random init, bf16), its SFT by `rejuv sft`, and held-out calibration rows; cached in `work`."""
    from rejuv.recipes.sft import SFTRecipeConfig, run_sft

    base, sft, calib = work / f"{shape}-base", work / f"{shape}-sft{sft_steps}", work / "calib.jsonl"
    rng = random.Random(seed)
    rows = [word_problem(rng) for _ in range(8 * sft_steps + 64)]
    if not base.is_dir():
        build_base(base, shape, seed, rows)
    if not sft.is_dir():
        data = work / "sft.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows[:8 * sft_steps]))
        run_sft(SFTRecipeConfig(model=str(base), data=str(data), out=str(work / "sft-run"), save_epochs=[1],
                                learning_rate=1e-3, per_device_batch_size=8, seed=seed, overwrite=True))
        (work / "sft-run" / "epoch-1").rename(sft)
    calib.write_text("".join(json.dumps(r) + "\n" for r in rows[8 * sft_steps:]))
    return base, sft, calib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base")
    parser.add_argument("--sft")
    parser.add_argument("--calib")
    parser.add_argument("--shape", choices=list(SHAPES), default="135m")
    parser.add_argument("--sft-steps", type=int, default=60)
    parser.add_argument("--work", default="/tmp/rejuv-reset-ratio")
    parser.add_argument("--samples", type=int, default=64, help="calibration rows (rejuv apply's --max-samples)")
    parser.add_argument("--targets", type=int, default=8, help="targets per sample")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    if args.base:
        base, sft, calib = Path(args.base), Path(args.sft), Path(args.calib)
    else:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
        base, sft, calib = build(work, args.shape, args.sft_steps, args.seed)

    from transformers import AutoTokenizer

    start = time.perf_counter()
    with Checkpoint(sft) as ckpt:
        adapter = adapter_for(ckpt.config)
        sizes = neuron_sizes(adapter, ckpt)
    neurons = list(sizes)
    total = sum(sizes.values())
    calibration = load_calibration(calib, AutoTokenizer.from_pretrained(sft), args.samples, args.seed)
    samples = calibration.samples
    base_stats = response_token_stats(load_frozen_model(base, "float32", "cpu", progress=False), adapter, samples,
                                      args.batch_size)
    model = load_frozen_model(sft, "float32", "cpu", progress=False)  # attribution runs on the SFT model
    targets = select_targets(samples, base_stats, response_token_stats(model, adapter, samples, args.batch_size),
                             args.targets)
    k_max = budget(max(RHOS), total)
    order = {t: i for i, t in enumerate(targets)}
    # Per target, in calibration order: its top-k_max neurons, -1 where the score is not positive.
    ranked: list[torch.Tensor | None] = [None] * len(targets)
    for i, sample in enumerate(samples):
        mine = [t for t in targets if t.sample == i]
        scores, _ = attribute_sample(model, adapter, neurons, sample, mine)
        flat = torch.cat([scores[n] for n in neurons], dim=1)
        values, indices = torch.topk(flat, k_max, dim=1)
        for t, v, idx in zip(mine, values, indices, strict=True):
            ranked[order[t]] = torch.where(v > 0, idx, torch.full_like(idx, -1))
    top = [r for r in ranked if r is not None]
    seconds = time.perf_counter() - start

    kinds = [n.kind for n in neurons for _ in range(sizes[n])]
    counts = {}  # (rho, targets) -> union size
    per_kind = {}
    sample_counts = sorted({n for n in (1, 4, 16, 64, args.samples) if n <= args.samples})
    for rho in RHOS:
        k = budget(rho, total)
        for n_samples in sample_counts:
            chosen = torch.zeros(total, dtype=torch.bool)
            for t in top[: n_samples * args.targets]:
                idx = t[:k]
                chosen[idx[idx >= 0]] = True
            counts[rho, n_samples] = int(chosen.sum())
            if n_samples == sample_counts[-1] and rho == 0.01:
                for kind in dict.fromkeys(kinds):
                    mask = torch.tensor([x == kind for x in kinds])
                    per_kind[kind] = round(float(chosen[mask].float().mean()), 4)
    result = {"base": str(base), "sft": str(sft), "neurons_total": total, "layers": len({n.layer for n in neurons}),
              "targets_per_sample": args.targets, "samples": len(samples), "targets": len(top),
              "seconds": round(seconds, 1), "union": {f"{rho:g}@{n}": c / total for (rho, n), c in counts.items()},
              "per_kind_at_rho0.01": per_kind}
    print(json.dumps(result), flush=True)
    print(f"\nEffective reset ratio |S| / {total:,} neurons, by ρ (columns) and number of targets (rows), "
          f"{args.targets} per sample:\n")
    print("| targets | " + " | ".join(f"ρ = {rho:g}" for rho in RHOS) + " |")
    print("|---|" + "---|" * len(RHOS))
    for n_samples in sample_counts:
        cells = [f"{100 * counts[rho, n_samples] / total:.1f}% ({counts[rho, n_samples] / (budget(rho, total)):.1f}×)"
                 for rho in RHOS]
        print(f"| {n_samples * args.targets} | " + " | ".join(cells) + " |")
    print("\n(in brackets: the union over one target's own budget ⌈ρ·total⌉)")
    print(f"\nAt ρ = 0.01 over all {len(top)} targets, share of each module kind reset: "
          + ", ".join(f"{k} {100 * v:.0f}%" for k, v in per_kind.items()))
    print(f"attribution pass: {seconds:.0f} s; {math.ceil(0.01 * total)} neurons per target at ρ = 0.01")


if __name__ == "__main__":
    main()
