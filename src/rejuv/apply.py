"""The `apply` recipe: fusion, then attribution-guided neuron reset, into a new checkpoint.

Order of work, chosen so that at most one model is in memory at a time and
nothing is written before every input has been checked:
1. open both checkpoints (headers only) and check they line up; parse and
   tokenize the calibration file;
2. base model: response entropies; SFT model: entropies, targets, attribution,
   the reset set;
3. stream fused (+ reset) tensors into a temporary folder, copy config and
   tokenizer files from the SFT checkpoint;
4. load the written model to measure the rejuvenated (and fused) entropies and
   teacher-forced accuracies, write `rejuvenation.json`, rename the folder into place.

ρ is a share per target: each target token resets its top ⌈ρ·total⌉ neurons,
and the reset set is the union over all targets, so the whole-model share
(`effective_reset_ratio`) can be many times ρ. The manifest states it per
module kind and layer, and what the same pass gives at other ρ; a warning says
when the union exceeds `max_reset_share` or when the reset costs more
calibration accuracy than fusion did.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path

from tqdm.auto import tqdm

from rejuv import __version__
from rejuv.arch import ArchAdapter, Neurons
from rejuv.checkpoint import (
    Checkpoint,
    atomic_output_dir,
    check_output_free,
    copy_aux_files,
    dtype_name,
    write_safetensors_shards,
)
from rejuv.errors import RejuvError, warn
from rejuv.fusion import FusedStream, FusionPlan, check_alpha, plan_fusion
from rejuv.modeling import check_device, resolve_device
from rejuv.prompts import check_mode
from rejuv.reset import RANKINGS, check_rho, reset_plan

MANIFEST = "rejuvenation.json"


@dataclass
class ApplyConfig:
    """Every knob of `rejuv apply`; the CLI and YAML configs fill this."""

    base: str
    sft: str
    out: str
    calib: str | None = None
    alpha: float = 0.5
    rho: float = 0.01
    targets_per_sample: int = 8
    max_samples: int = 64
    max_length: int = 2048
    target_token: str = "gold"  # or "argmax"
    ranking: str = "global"  # or "per-module"
    fusion_only: bool = False
    chat_template: str = "auto"  # auto | always | never, for the calibration rows (rejuv.prompts)
    max_reset_share: float = 0.05  # warn when the reset set covers more of the model's neurons than this
    seed: int = 0
    device: str | None = None  # calibration passes: None = cuda when a GPU is visible, else cpu; auto = device map
    dtype: str = "float32"  # compute dtype of the calibration passes; scores accumulate in float32
    batch_size: int = 8  # samples per statistics pass; target copies per attribution pass
    max_shard_size: str = "5GB"
    workers: int | None = None  # threads streaming output blocks; default 2 per core, at most 8
    overwrite: bool = False
    allow_pickle: bool = False
    trust_remote_code: bool = False
    progress: bool = True

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def default_workers() -> int:
    """Two streaming threads per core, at most 8: reads block on the disk, so more threads than cores keep
    it busy (measured on 2 cores, 1.2 B model: 2 threads 5.1-5.4 s, 4 threads 4.1-4.9 s, 8 threads 4.2-4.5 s)."""
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


def parse_size(text: str | int) -> int:
    """'5GB', '500MB', '64KiB' or a byte count."""
    if isinstance(text, int):
        return text
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
    s = str(text).strip().upper()
    number = s.rstrip("KMGTIB")
    unit = s[len(number):]
    try:
        value = float(number)
    except ValueError:
        raise RejuvError(f"cannot read size {text!r}; use e.g. 5GB or 500MB") from None
    if unit not in units or value <= 0:
        raise RejuvError(f"cannot read size {text!r}; use e.g. 5GB or 500MB")
    return int(value * units[unit])


def _validate(cfg: ApplyConfig) -> None:
    check_alpha(cfg.alpha)
    check_rho(cfg.rho)
    if cfg.ranking not in RANKINGS:
        raise RejuvError(f"ranking must be one of {', '.join(RANKINGS)}, got {cfg.ranking!r}")
    if cfg.target_token not in ("gold", "argmax"):
        raise RejuvError(f"target_token must be 'gold' or 'argmax', got {cfg.target_token!r}")
    for name in ("targets_per_sample", "max_samples", "batch_size", "max_length", "workers"):
        if getattr(cfg, name) is not None and int(getattr(cfg, name)) < 1:
            raise RejuvError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    if not cfg.fusion_only and not cfg.calib:
        raise RejuvError("neuron reset needs a calibration file (--calib); pass --fusion-only to only fuse")
    check_device(cfg.device)
    check_mode(cfg.chat_template)
    if not 0.0 < cfg.max_reset_share <= 1.0:
        raise RejuvError(f"max_reset_share must lie in (0, 1], got {cfg.max_reset_share}")
    dtype_name(cfg.dtype)
    parse_size(cfg.max_shard_size)


def _stream_output(tmp: Path, base: Checkpoint, sft: Checkpoint, plan: FusionPlan, alpha: float,
                   resets: dict[str, dict], cfg: ApplyConfig) -> None:
    stream = FusedStream(base, sft, alpha, resets)
    total = sum(spec.nbytes for spec in plan.outputs)
    with tqdm(total=total, desc="writing", unit="B", unit_scale=True, unit_divisor=1024,
              disable=not cfg.progress or None, leave=False) as bar:
        write_safetensors_shards(tmp, plan.outputs, stream.fill, parse_size(cfg.max_shard_size),
                                 on_progress=bar.update, workers=cfg.workers or default_workers())
    copy_aux_files(sft.path, tmp)


def neuron_sizes(adapter: ArchAdapter, ckpt: Checkpoint) -> dict[Neurons, int]:
    """Neuron count of every reader (rows) and writer (columns) module."""
    sizes = {}
    for n in adapter.neurons(ckpt.config):
        info = ckpt.tensors.get(n.weight)
        if info is None or len(info.shape) != 2:
            raise RejuvError(f"{ckpt.path}: expected a 2-D tensor {n.weight} for layer {n.layer} {n.kind}")
        sizes[n] = info.shape[n.axis]
    return sizes


def run_apply(cfg: ApplyConfig) -> dict:
    """Run `rejuv apply` with `cfg`; returns the manifest written to `<out>/rejuvenation.json`."""
    _validate(cfg)
    out = Path(cfg.out)
    check_output_free(out, cfg.overwrite, inputs=(Path(cfg.base), Path(cfg.sft)))
    rho = 0.0 if cfg.fusion_only else cfg.rho
    with Checkpoint(cfg.base, cfg.allow_pickle) as base, Checkpoint(cfg.sft, cfg.allow_pickle) as sft:
        plan = plan_fusion(base, sft)
        adapter = plan.adapter
        sizes = neuron_sizes(adapter, sft)
        neurons_total = sum(sizes.values())
        calib = None
        if cfg.calib:
            from transformers import AutoTokenizer

            from rejuv.calibration import load_calibration

            try:
                tokenizer = AutoTokenizer.from_pretrained(cfg.sft, trust_remote_code=cfg.trust_remote_code)
            except (OSError, ValueError) as exc:
                raise RejuvError(f"{cfg.sft}: no usable tokenizer in the SFT folder ({exc})") from exc
            calib = load_calibration(cfg.calib, tokenizer, cfg.max_samples, cfg.seed, cfg.max_length,
                                     cfg.chat_template)

        entropy: dict[str, float | None] = {"base": None, "sft": None, "fused": None, "rejuvenated": None}
        at_targets: dict[str, float | None] = dict(entropy)
        accuracy: dict[str, float | None] = dict(entropy)
        targets, resets, reset_set, errors = [], {}, None, []
        if calib is not None:
            import torch

            from rejuv import passes
            from rejuv.attribution import mean_entropy, select_targets

            torch.manual_seed(cfg.seed)
            cfg = replace(cfg, device=resolve_device(cfg.device))  # the manifest names the device used
            model = passes.load_base_like_sft(cfg, plan, sft)
            base_stats = passes.entropy_stats(model, adapter, calib, cfg, "base")
            del model
            model = passes.load_model(cfg.sft, cfg)
            sft_stats = passes.entropy_stats(model, adapter, calib, cfg, "sft")
            entropy["base"], entropy["sft"] = mean_entropy(base_stats), mean_entropy(sft_stats)
            accuracy["base"] = passes.token_accuracy(base_stats, calib)
            accuracy["sft"] = passes.token_accuracy(sft_stats, calib)
            if not cfg.fusion_only:
                targets = select_targets(calib.samples, base_stats, sft_stats, cfg.targets_per_sample,
                                         cfg.target_token)
                reset_set, errors = passes.find_reset_set(model, adapter, sizes, calib, targets, cfg)
                resets = reset_plan(reset_set.indices(), set(sft.tensors))
                at_targets["base"] = passes.entropy_at(base_stats, targets, calib)
                at_targets["sft"] = passes.entropy_at(sft_stats, targets, calib)
            del model

        with atomic_output_dir(out, cfg.overwrite) as tmp:
            _stream_output(tmp, base, sft, plan, cfg.alpha, resets, cfg)
            if calib is not None:
                model = passes.load_model(tmp, cfg)
                final_stats = passes.entropy_stats(model, adapter, calib, cfg, "output")
                if cfg.fusion_only:
                    entropy["fused"] = mean_entropy(final_stats)
                    accuracy["fused"] = passes.token_accuracy(final_stats, calib)
                else:
                    entropy["rejuvenated"] = mean_entropy(final_stats)
                    accuracy["rejuvenated"] = passes.token_accuracy(final_stats, calib)
                    at_targets["rejuvenated"] = passes.entropy_at(final_stats, targets, calib)
                    passes.unreset(model, base, sft, cfg.alpha, resets)
                    fused_stats = passes.entropy_stats(model, adapter, calib, cfg, "fused")
                    entropy["fused"] = mean_entropy(fused_stats)
                    accuracy["fused"] = passes.token_accuracy(fused_stats, calib)
                    at_targets["fused"] = passes.entropy_at(fused_stats, targets, calib)
                del model
            manifest = _manifest(cfg, rho, plan, calib, neurons_total, reset_set, resets, errors, entropy,
                                 at_targets, accuracy, len(targets))
            (tmp / MANIFEST).write_text(manifest_json(manifest))
    return manifest


def manifest_json(manifest: dict) -> str:
    """Indented JSON with each index list on one line (a 70B reset set stays readable)."""
    text = json.dumps(manifest, indent=2)
    return re.sub(r"\[\s+([-\d,\s]+?)\s+\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text) + "\n"


def reset_warnings(ratio: float, max_share: float, rho: float, targets: int, by_kind: dict[str, dict],
                   accuracy: dict[str, float | None]) -> list[str]:
    """What a user should know before handing the output on: a union far beyond ρ, a reset that costs
    more calibration accuracy than fusion did."""
    found = []
    if ratio > max_share:
        kinds = sorted(by_kind.items(), key=lambda kv: -kv[1]["ratio"])[:3]
        found.append(f"the reset covers {ratio:.1%} of the model's neurons, above max_reset_share {max_share:.1%}: "
                     f"rho {rho:g} is a share per target, and the union over {targets} targets is "
                     f"{ratio / rho:.0f}x rho (most in " + ", ".join(f"{k} {v['ratio']:.0%}" for k, v in kinds)
                     + "); lower --rho, --targets-per-sample or --max-samples to reset less")
    sft, fused, rejuvenated = accuracy.get("sft"), accuracy.get("fused"), accuracy.get("rejuvenated")
    if None not in (sft, fused, rejuvenated) and fused - rejuvenated > max(sft - fused, 0.0):
        found.append(f"the reset removed more calibration accuracy than fusion did (teacher-forced top-1 accuracy: "
                     f"SFT {sft:.3f}, fused {fused:.3f}, rejuvenated {rejuvenated:.3f}); check the output before RL "
                     "or lower --rho")
    return [warn(f"apply: {w}") for w in found]


def _manifest(cfg, rho, plan, calib, total, reset_set, resets, errors, entropy, at_targets, accuracy,
              n_targets) -> dict:
    selected = reset_set.selected if reset_set else 0
    ratio = selected / total if total else 0.0
    by_kind = reset_set.by_kind() if reset_set else {}
    return {
        "base": cfg.base,
        "sft": cfg.sft,
        "alpha": float(cfg.alpha),
        "rho": float(rho),
        "targets_per_sample": int(cfg.targets_per_sample),
        "calibration": None if calib is None else {
            "path": calib.path, "samples": len(calib.samples), "sha256": calib.sha256},
        "neurons_total": int(total),
        "neurons_reset": int(selected),
        "effective_reset_ratio": ratio,
        "reset": {name: resets[name] for name in sorted(resets)},
        "dla_reconstruction_error": None if not errors else {
            "max_abs": float(max(errors)), "mean_abs": math.fsum(errors) / len(errors)},
        "entropy": entropy,
        "seed": int(cfg.seed),
        "version": __version__,
        # Beyond the specification's fields: what a reader needs to interpret the ones above.
        "fusion_only": bool(cfg.fusion_only),
        "ranking": cfg.ranking,
        "target_token": cfg.target_token,
        "targets": n_targets,
        "entropy_at_targets": at_targets,
        "calibration_accuracy": accuracy,  # teacher-forced top-1 accuracy on the calibration responses
        # ρ keeps ⌈ρ·total⌉ neurons per target; the reset set is their union over all targets.
        "reset_by_kind": by_kind,
        "reset_by_layer": reset_set.by_layer() if reset_set else {},
        "effective_reset_ratio_by_rho": reset_set.ratio_by_rho() if reset_set else {},
        "reset_by_module": reset_set.by_module() if reset_set else {},
        "warnings": reset_warnings(ratio, cfg.max_reset_share, rho, n_targets, by_kind, accuracy) if reset_set else [],
        "vocab_resized": plan.vocab_resized,
        "compute": {"device": cfg.device, "dtype": cfg.dtype},
        "chat_template_used": None if calib is None else calib.chat_template,
    }


def fuse(base: str | os.PathLike, sft: str | os.PathLike, out: str | os.PathLike, alpha: float = 0.5,
         calib: str | os.PathLike | None = None, **options) -> dict:
    """θ = α·θ_SFT + (1−α)·θ_base into `out` (no reset). Returns the manifest."""
    return run_apply(ApplyConfig(base=str(base), sft=str(sft), out=str(out), alpha=alpha,
                                  calib=None if calib is None else str(calib), fusion_only=True, **options))


def rejuvenate(base: str | os.PathLike, sft: str | os.PathLike, calib: str | os.PathLike,
                          out: str | os.PathLike, alpha: float = 0.5, rho: float = 0.01, **options) -> dict:
    """Fusion + attribution-guided reset into `out`. Returns the manifest."""
    return run_apply(ApplyConfig(base=str(base), sft=str(sft), out=str(out), calib=str(calib),
                                  alpha=alpha, rho=rho, **options))
