"""Every command on a device, in one run, with one JSON summary: what to run the moment a GPU is lent.

    python benchmarks/gpu_check.py --device cuda --out gpu_check.json          # one GPU, within 10 minutes
    python benchmarks/gpu_check.py --device cpu --size tiny --out check.json   # the test suite's run

It builds, in --work, a base (a random Llama in bf16 with a byte-level BPE chat tokenizer: `reset_ratio`'s
builder) and an SFT stand-in (every tensor + 0.01·N(0, 1), `synthetic.perturb_checkpoint`), arithmetic word
problems as calibration, SFT, RL and benchmark rows, then runs each command through its recipe on --device:
- `fusion` and `apply` with calibration, on the checked size (`--size 1b`: Llama-3.2-1B's shape, 1.2 B
  parameters, 128,256-token vocabulary): wall time, the attribution pass's time against the floor of one
  forward + backward per target (`attribution_cost.floor_pass`, the same targets), peak device memory;
- on the tiny size, `apply` on the device beside the same run on the CPU: the manifest's entropies, accuracy
  and reset set agree within tolerances (an attribution near a tie can flip a neuron across devices);
- `diagnose` (with sampling and the dead-group forecast), `sft` (a few steps: bf16 autocast over float32 master
  weights on a GPU that has bf16), `rl` (a few GRPO steps with transformers generation, and with vLLM in
  colocate mode when vLLM is installed), `eval` (both engines, the same), and a tiny `plan`.
A stage that cannot run here (vLLM not installed) is `skipped`, with why; any failure is `ok: false` with its
error, and the script exits 1. BENCHMARKS.md ("On a GPU") keeps the figures of a run on a lent GPU.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import sys
import time
import traceback
from pathlib import Path

import torch
from attribution_cost import floor_pass, synchronize
from reset_ratio import SHAPES, build_base, word_problem
from synthetic import perturb_checkpoint

SHAPES.setdefault("1b", (2048, 16, 32, 8, 8192, 128256))  # Llama-3.2-1B: hidden, layers, heads, kv, MLP, vocab


def peak_memory_reset(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gb(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.startswith("cuda") else None


def digit_share_reward(completions, **_) -> list[float]:
    """The plan's probes on a random model: math_verify gives every sample -1 and the plan rightly refuses probes
    that cannot differ, so they are rewarded by the share of digits written, which varies sample to sample."""
    from rejuv.train.rewards import completion_text

    texts = [completion_text(c) for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(1, len(t)) for t in texts]


def build_world(work: Path, shape: str, seed: int = 0) -> dict[str, Path]:
    """Base, SFT stand-in and the data files, cached in `work/<shape>`."""
    root = work / shape
    rng = random.Random(seed)
    problems = [word_problem(rng) for _ in range(96)]
    files = {"calib": root / "calib.jsonl", "sft_rows": root / "sft.jsonl", "rl": root / "rl.jsonl",
             "bench": root / "bench.jsonl"}
    root.mkdir(parents=True, exist_ok=True)

    def answer(p):
        return p["messages"][1]["content"].rsplit("\\boxed{", 1)[1].rstrip("}")

    rows = {"calib": problems[:32], "sft_rows": problems[32:64],
            "rl": [{"prompt": p["messages"][0]["content"], "answer": answer(p)} for p in problems[64:80]],
            "bench": [{"problem": p["messages"][0]["content"], "answer": answer(p)} for p in problems[80:]]}
    for name, path in files.items():
        path.write_text("".join(json.dumps(r) + "\n" for r in rows[name]))
    base, sft = root / "base", root / "sft-noise"
    if not (base / "config.json").exists():
        shutil.rmtree(base, ignore_errors=True)
        build_base(base, shape, seed, problems)
    if not (sft / "config.json").exists():
        shutil.rmtree(sft, ignore_errors=True)
        perturb_checkpoint(base, sft)
    return {"base": base, "sft": sft, **files}


class Check:
    """Runs the stages, each timed and caught; the summary is the JSON the script writes."""

    def __init__(self, device: str, size: str, work: Path):
        self.device, self.size, self.work = device, size, work
        self.stages: dict[str, dict] = {}

    def stage(self, name: str, work, skip: str | None = None) -> dict | None:
        if skip:
            self.stages[name] = {"ok": True, "skipped": skip}
            print(f"[gpu-check] {name}: skipped ({skip})", flush=True)
            return None
        print(f"[gpu-check] {name} ...", flush=True)
        peak_memory_reset(self.device)
        start = time.perf_counter()
        try:
            figures = work() or {}
            synchronize(self.device)
            result = {"ok": True, "seconds": round(time.perf_counter() - start, 2), **figures,
                      "peak_device_memory_gb": peak_memory_gb(self.device)}
        except Exception as exc:  # a failed stage is a finding: record it and go on to the next
            result = {"ok": False, "seconds": round(time.perf_counter() - start, 2),
                      "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
        self.stages[name] = result
        print(f"[gpu-check] {name}: {'ok' if result['ok'] else 'FAILED ' + result['error']}", flush=True)
        return result

    def summary(self) -> dict:
        gpu = torch.cuda.get_device_name() if self.device.startswith("cuda") and torch.cuda.is_available() else None
        return {"device": self.device, "gpu": gpu, "size": self.size, "torch": torch.__version__,
                "ok": all(s["ok"] for s in self.stages.values()), "stages": self.stages}


def attribution_floor(model_path: Path, manifest: dict, record: dict, device: str) -> float:
    """Seconds of one forward + backward per target over the attribution's own targets (the floor the
    attribution is measured against in BENCHMARKS.md)."""
    from transformers import AutoTokenizer

    from rejuv.data.calibration import load_calibration
    from rejuv.method.arch import adapter_for
    from rejuv.method.attribution import Target
    from rejuv.modeling import load_frozen_model

    model = load_frozen_model(model_path, "float32", device, progress=False)
    adapter = adapter_for(model.config.to_dict())
    calib = load_calibration(manifest["calibration"]["path"], AutoTokenizer.from_pretrained(model_path),
                             manifest["calibration"]["samples"], manifest["seed"])
    targets = [Target(*t) for t in record["targets"]]
    split = {"last_forward": 0.0, "backward": 0.0}
    start = time.perf_counter()
    for i, sample in enumerate(calib.samples):
        mine = [t for t in targets if t.sample == i]
        if mine:
            floor_pass(model, adapter, sample, mine, device, split)
    synchronize(device)
    return time.perf_counter() - start


def timed_attribution(device: str):
    """Wrap the attribution pass so its own time is known (apply reports the whole run's)."""
    from rejuv.method import passes

    original, spent = passes.find_reset_set, []

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            synchronize(device)
            spent.append(time.perf_counter() - start)

    passes.find_reset_set = timed
    return spent, lambda: setattr(passes, "find_reset_set", original)


def run(args: argparse.Namespace) -> dict:
    from rejuv.planner.plan import PlanConfig, run_plan
    from rejuv.recipes.apply import ApplyConfig, run_apply
    from rejuv.recipes.diagnose import DiagnoseConfig, run_diagnose
    from rejuv.recipes.eval import EvalConfig, run_eval
    from rejuv.recipes.rl import RLRecipeConfig, run_rl
    from rejuv.recipes.sft import SFTRecipeConfig, run_sft

    work, device = Path(args.work), args.device
    outputs = work / "outputs"
    shutil.rmtree(outputs, ignore_errors=True)
    check = Check(device, args.size, work)
    big = build_world(work, args.size)
    tiny = big if args.size == "tiny" else build_world(work, "tiny")
    try:
        import vllm  # noqa: F401

        no_vllm = None if device.startswith("cuda") else "vLLM needs a GPU"
    except ImportError:
        no_vllm = "vLLM is not installed"

    def fusion():
        run_apply(ApplyConfig(base=big["base"], sft=big["sft"], out=outputs / "fused", fusion_only=True,
                              progress=False))
        return {"output_gb": round(sum(f.stat().st_size for f in (outputs / "fused").glob("*.safetensors")) / 1e9, 3)}

    check.stage(f"fusion ({args.size})", fusion)

    def apply_big():
        spent, restore = timed_attribution(device)
        try:
            manifest = run_apply(ApplyConfig(base=big["base"], sft=big["sft"], calib=big["calib"],
                                             out=outputs / "applied", max_samples=args.samples, device=device,
                                             progress=False))
        finally:
            restore()
        record = json.loads((outputs / "applied" / "attribution.json").read_text())
        floor = attribution_floor(big["sft"], manifest, record, device)
        return {"targets": manifest["targets"], "attribution_s": round(spent[0], 2), "floor_s": round(floor, 2),
                "attribution_over_floor": round(spent[0] / floor, 3) if floor else None,
                "neurons_reset": manifest["neurons_reset"], "dla_max_abs": manifest["dla_reconstruction_error"]}

    check.stage(f"apply with calibration ({args.size})", apply_big)

    def apply_against_cpu():
        found = {}
        for where in dict.fromkeys([device, "cpu"]):
            found[where] = run_apply(ApplyConfig(base=tiny["base"], sft=tiny["sft"], calib=tiny["calib"],
                                                 out=outputs / f"tiny-{where.replace(':', '')}", device=where,
                                                 progress=False))
        a, b = found[device], found["cpu"]
        sets = [{(n, i) for n, e in m["reset"].items() for i in e["indices"]} for m in (a, b)]
        jaccard = len(sets[0] & sets[1]) / max(1, len(sets[0] | sets[1]))
        entropy = max(abs(a["entropy"][k] - b["entropy"][k]) for k in ("base", "sft", "fused", "rejuvenated"))
        assert entropy < 1e-3 and jaccard > 0.9, f"device and CPU differ: entropy by {entropy:g}, Jaccard {jaccard}"
        return {"entropy_max_difference": entropy, "reset_jaccard": round(jaccard, 4)}

    check.stage("apply on the device against the CPU (tiny)", apply_against_cpu)
    check.stage("diagnose (tiny)", lambda: {"dead_groups": [e["groups"]["dead_share"] for e in run_diagnose(
        DiagnoseConfig(base=tiny["base"], checkpoints=[tiny["sft"]], calib=tiny["calib"], eval=tiny["bench"],
                       rl_data=tiny["rl"], k=2, evaluation={"samples": 2, "max_new_tokens": 16},
                       forecast={"samples": 4, "max_new_tokens": 16}, group_size=4, out=outputs / "diagnosis",
                       device=device, progress=False))["checkpoints"]]})

    def sft():
        summary = run_sft(SFTRecipeConfig(model=tiny["base"], data=tiny["sft_rows"], out=outputs / "sft",
                                          save_epochs=[1], per_device_batch_size=8, learning_rate=1e-4,
                                          progress=False))
        assert summary["precision"]["master_weights"] == "float32", summary["precision"]
        return {"steps": summary["steps"], "precision": summary["precision"]}

    check.stage("sft (tiny)", sft)
    grpo = dict(model=tiny["sft"], data=tiny["rl"], max_steps=2, num_generations=4, per_device_batch_size=8,
                max_completion_length=16, progress=False)
    check.stage("rl, transformers generation (tiny)", lambda: {"reward_first": run_rl(RLRecipeConfig(
        out=outputs / "rl", **grpo))["reward_first"]})
    check.stage("rl, vLLM generation (tiny)", lambda: {"reward_first": run_rl(RLRecipeConfig(
        out=outputs / "rl-vllm", use_vllm=True, trl_args={"vllm_mode": "colocate"}, **grpo))["reward_first"]},
        skip=no_vllm)
    bench = dict(checkpoints=[tiny["sft"]], data=[tiny["bench"]], samples=2, max_new_tokens=16, progress=False)
    check.stage("eval, transformers (tiny)", lambda: {"pass@1": run_eval(EvalConfig(
        out=outputs / "eval", engine="transformers", device=device, **bench))["results"][0]["pass@1"]})
    check.stage("eval, vLLM (tiny)", lambda: {"pass@1": run_eval(EvalConfig(
        out=outputs / "eval-vllm", engine="vllm", **bench))["results"][0]["pass@1"]}, skip=no_vllm)
    check.stage("plan (tiny)", lambda: {"recommended": run_plan(PlanConfig(
        checkpoints=[tiny["base"], tiny["sft"]], base=tiny["base"], calib=tiny["calib"], probe_data=tiny["rl"],
        out=outputs / "plan", budget_steps=4, alphas=[0.5], rhos=[0.0, 0.01], probe_top=1, k=2, max_samples=8,
        forecast_prompts=4, device=device, progress=False,
        probe={"rewards": ["gpu_check:digit_share_reward"], "num_generations": 4, "per_device_batch_size": 8,
               "max_completion_length": 16,
               "learning_rate": 1e-4},
        evaluation={"samples": 2, "max_problems": 4, "max_new_tokens": 16}))["recommendation"]["name"]})
    return check.summary()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--size", default="1b", choices=("1b", "tiny"), help="the model fusion and apply run on")
    parser.add_argument("--samples", type=int, default=16, help="calibration rows of the large apply")
    parser.add_argument("--work", default="/tmp/rejuv-gpu-check", help="models and outputs (kept between runs)")
    parser.add_argument("--out", default="gpu_check.json", help="the JSON summary")
    args = parser.parse_args()
    if not re.fullmatch(r"cpu|cuda(:\d+)?", args.device):
        parser.error(f"--device: expected cuda, cuda:N or cpu, got {args.device!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(f"gpu_check: torch {torch.__version__} sees no CUDA device (--device {args.device}); run it where "
                 "a CUDA build of torch sees the GPU (DEVELOPING.md), or give --device cpu --size tiny")
    summary = run(args)
    Path(args.out).write_text(json.dumps(summary, indent=2, allow_nan=False, default=str) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "stages"}), flush=True)
    for name, stage in summary["stages"].items():
        state = "skipped: " + stage["skipped"] if "skipped" in stage else "ok" if stage["ok"] else stage["error"]
        print(f"  {name}: {state}" + (f" ({stage['seconds']} s)" if "seconds" in stage else ""))
    sys.exit(0 if summary["ok"] else 1)


if __name__ == "__main__":
    main()
