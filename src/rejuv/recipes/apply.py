"""The `apply` recipe: fusion, then attribution-guided neuron reset, into a new checkpoint.

Order of work, chosen so that at most one model is in memory at a time and
nothing is written before every input has been checked:
1. open both checkpoints (headers only) and check they line up; parse and
   tokenize the calibration file;
2. base model: response entropies; SFT model: entropies, targets, attribution,
   the reset set at every ρ of a grid (one pass: each target's neurons are
   ranked once, and a smaller ρ keeps a prefix of the ranking);
3. the loaded model becomes the fused one in memory (the writer's own bytes)
   and is measured, then measured again with each grid ρ's reset in place;
   `rho: auto` picks ρ from these measurements;
4. stream the fused (+ reset) tensors into a temporary folder, copy config and
   tokenizer files from the SFT checkpoint, write `rejuvenation.json` and
   `attribution.json`, rename the folder into place.

ρ is a share per target: each target token resets its top ⌈ρ·total⌉ neurons,
and the reset set is the union over all targets, so the whole-model share
(`effective_reset_ratio`) can be many times ρ. The manifest states it per
module kind and layer, and for every ρ of the grid with the entropy and
teacher-forced accuracy it leaves; a warning says when the union exceeds
`max_reset_share` or when the reset costs more calibration accuracy than
fusion did. `attribution.json` keeps every grid ρ's reset set, so another α or
ρ of the grid is one `--reuse-attribution` run away, with no attribution pass.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from rejuv import __version__
from rejuv.data.prompts import chat_template_option
from rejuv.errors import RejuvError, warn
from rejuv.io.adapter import ADAPTER_CONFIG, LoraCheckpoint, is_adapter, open_checkpoint, write_adapter
from rejuv.io.fingerprint import folder_fingerprint
from rejuv.io.format import FLOAT_DTYPES, numpy_dtype
from rejuv.io.inputs import sources
from rejuv.io.jsonl import strict_dumps
from rejuv.io.output import MARKER, atomic_output_dir, claimed_output
from rejuv.io.reader import Checkpoint
from rejuv.io.records import Checked, read_json
from rejuv.io.writer import copy_aux_files, parse_size, shard_size, write_safetensors_shards
from rejuv.method.arch import neuron_sizes
from rejuv.method.attribution_record import TARGET_TOKENS, Attribution, parse_attribution, reset_layout
from rejuv.method.fusion import FusedStream, FusionLayout, fusion_layout
from rejuv.method.reset import (
    RANKINGS,
    AccuracyCost,
    auto_rho,
    random_like,
    reset_entries,
    reset_warnings,
    summarize,
)
from rejuv.modeling import (
    allow_pickle_option,
    compute_dtype_option,
    device_option,
    model_positions,
    resolve_device,
    tokenizer_folder,
    trust_remote_code_option,
)
from rejuv.options import (
    Config,
    OptionError,
    Recipe,
    as_given,
    command_line,
    option,
    out_option,
    overwrite_option,
    progress_option,
    replaced,
    seed_option,
    tagged,
)
from rejuv.progress import progress_bar
from rejuv.provenance import what_ran
from rejuv.report.model_card import mergekit_config, model_card

MANIFEST = "rejuvenation.json"
ATTRIBUTION = "attribution.json"
MERGEKIT = "mergekit_config.yml"
_OWN_FILES = (MANIFEST, ATTRIBUTION, MARKER)  # what an apply output adds to a folder that may be an input again
# With a fixed ρ, the same pass also reports ρ/10, ρ/3 and 3ρ: a user reads ρ against the union it gives.
RHO_FACTORS = (0.1, 0.3, 1.0, 3.0)
AUTO_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03)
# What an option changes (`option(affects=...)`): the fused weights; the reset (and so the weights); the
# attribution, which a reusing run must share: its settings are those options, and they change the reset too.
_ATTRIBUTION = ("attribution", "reset")


def rho_value(value: float | str) -> float | str:
    """ρ as given: a number in [0, 1), or `auto`."""
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return "auto"
        raise RejuvError(f"expected a number in [0, 1) or 'auto', got {value!r}")
    if not 0.0 <= value < 1.0:
        raise RejuvError(f"must lie in [0, 1) or be 'auto', got {value!r}")
    return float(value)


@dataclass
class ApplyConfig(Config):
    """Fuse SFT with base, then reset the neurons that drive over-confident logits.

    Writes a save_pretrained folder plus rejuvenation.json, and prints the manifest summary as JSON.
    """

    base: str = option(help="Base (pre-trained) model: a folder or a Hub ID (org/name[@revision]).",
                       path="checkpoint", affects="fusion")
    sft: str = option(help="Fine-tuned model (its config and tokenizer are copied): a folder, a PEFT LoRA adapter "
                      "over --base, or a Hub ID of either (org/name[@revision]).", path="checkpoint", affects="fusion")
    out: str = out_option()
    alpha: float = option(0.5, help="Fusion weight of the SFT model, in [0, 1].", at_least=0, at_most=1,
                          affects="fusion")
    calib: str | None = option(None, help="Calibration JSONL: prompt/response (or completion) rows, or chat messages.",
                               path="file", affects="reset")
    rho: float | str = option(0.01, help="Share of all neurons kept per target token; the reset set is their union "
                              "over all targets, often many times rho (the manifest states it). 'auto': the largest "
                              "--rho-grid value whose union stays under --max-reset-share and costs no more "
                              "calibration accuracy than fusion, within the calibration set's noise.", check=rho_value,
                              affects="reset")
    rho_grid: list[float] | None = option(None, help="rho values measured in the same pass (union, entropy, "
                                          "calibration accuracy), comma-separated.",
                                          default_text="rho/10, rho/3, rho, 3 rho; for auto 0.0003,0.001,0.003,"
                                          "0.01,0.03", above=0, below=1)
    reuse_attribution: str | None = option(None, help="An earlier output folder of the same base, SFT and "
                                           "calibration: take its reset sets instead of a new attribution pass "
                                           "(another alpha, or another rho of its grid).", path="input")
    targets_per_sample: int = option(8, help="Positions with the largest entropy gap, per sample.", at_least=1,
                                     affects=_ATTRIBUTION)
    max_samples: int = option(64, help="Calibration rows used (chosen with --seed).", at_least=1, affects=_ATTRIBUTION)
    max_length: int = option(2048, help="Truncate calibration sequences to this many tokens (and to the model's "
                             "positions).", at_least=2, affects=_ATTRIBUTION)
    target_token: str = option("gold", choices=TARGET_TOKENS, help="Token attributed.", affects=_ATTRIBUTION)
    ranking: str = option("global", choices=RANKINGS, help="Neuron ranking.", affects=_ATTRIBUTION)
    fusion_only: bool = option(False, help="Only fuse; skip attribution and reset.")
    random_reset: bool = option(False, help="A control for the attribution: reset, instead of the attributed "
                                "neurons, as many drawn at random in each module (layer and kind), with --seed.")
    chat_template: str = chat_template_option(affects=_ATTRIBUTION)
    max_reset_share: float = option(0.05, help="Warn when the reset set (the union over targets) covers more of "
                                     "the model's neurons than this.", above=0, at_most=1)
    dtype: str = compute_dtype_option(affects=_ATTRIBUTION)
    seed: int = seed_option("Seed for calibration sampling.", affects=_ATTRIBUTION)
    device: str | None = device_option("cpu, cuda, cuda:N, or auto (accelerate's device map over GPUs then CPU) "
                                       "for the calibration passes.")
    batch_size: int = option(8, help="Calibration samples per forward pass of the token statistics.", at_least=1)
    save_as: str = option("model", choices=("model", "adapter"), help="What to write when --sft is a LoRA adapter: "
                          "the full model, or a rejuvenated adapter (B scaled by alpha, a reset reader neuron's row "
                          "of B and a reset writer neuron's column of A zeroed) that PEFT, vLLM and TRL load over the "
                          "same base.")
    max_shard_size: str | int = option("5GB", help="Largest output shard, e.g. 5GB or 500MB.", check=shard_size)
    workers: int | None = option(None, help="Threads reading, fusing and writing output blocks at once.",
                                 default_text="2 per core, at most 8", at_least=1)
    overwrite: bool = overwrite_option()
    allow_pickle: bool = allow_pickle_option()
    trust_remote_code: bool = trust_remote_code_option()
    progress: bool = progress_option()

    def check(self) -> None:
        if not self.fusion_only and not self.calib:
            raise OptionError("calib", "neuron reset needs a calibration file (--calib); pass --fusion-only to only "
                              "fuse", also=("fusion_only",))
        if self.fusion_only and self.reuse_attribution:
            raise OptionError("reuse_attribution", "reuses a reset set, and --fusion-only resets nothing")
        if self.fusion_only and self.random_reset:
            raise OptionError("random_reset", "draws a reset set, and --fusion-only resets nothing",
                              also=("fusion_only",))

    def command(self, rho: float | None = None, reuse: str | None = None) -> str:
        """The `rejuv apply` command that rebuilds this output (with `rho` chosen, for `--rho auto`): the options
        declared to change its bytes, and none that means nothing for it (a fusion takes no calibration option);
        `reuse` adds `--reuse-attribution` (the same bytes, without a second attribution pass)."""
        rho = float(self.rho if rho is None else rho)
        saved = ("--save-as", "adapter") if self.save_as == "adapter" else ()
        if self.fusion_only or rho == 0:
            return command_line(self, "apply", ("fusion",), flags=(*saved, "--fusion-only"))
        control = ("--random-reset",) if self.random_reset else ()
        return command_line(self, "apply", ("fusion", "reset"), {"rho": rho},
                            (*saved, *control, *(("--reuse-attribution", reuse) if reuse else ())))


def default_workers() -> int:
    """Two streaming threads per core, at most 8: reads block on the disk, so more threads than cores keep
    it busy (measured on 2 cores, 1.2 B model: 2 threads 5.1-5.4 s, 4 threads 4.1-4.9 s, 8 threads 4.2-4.5 s)."""
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


def rho_grid(cfg: ApplyConfig) -> list[float]:
    """The ρ values one attribution pass measures: the given grid (and ρ), else ρ/10 … 3ρ, else AUTO_GRID."""
    fixed = [] if cfg.rho == "auto" else [float(cfg.rho)]
    if cfg.rho_grid:
        grid = [*cfg.rho_grid, *fixed]
    elif fixed:
        grid = [fixed[0] * f for f in RHO_FACTORS if fixed[0] * f < 1.0]
    else:
        grid = list(AUTO_GRID)
    return sorted({round(float(r), 12) for r in grid if r > 0})  # each checked as the option was


def _stream_output(tmp: Path, base: Checkpoint, sft, layout: FusionLayout, alpha: float,
                   resets: dict[str, dict], cfg: ApplyConfig) -> None:
    stream = FusedStream(base, sft, alpha, resets)
    total = sum(spec.nbytes for spec in layout.outputs)
    with progress_bar(cfg.progress, total, "writing", "B", unit_scale=True, unit_divisor=1024) as bar:
        write_safetensors_shards(tmp, layout.outputs, stream.fill, parse_size(cfg.max_shard_size),
                                 on_progress=bar.update, workers=cfg.workers or default_workers())
    if isinstance(sft, LoraCheckpoint):  # the model's files are the base's; a tokenizer saved with the adapter wins
        copy_aux_files(base.path, tmp, skip=(*_OWN_FILES, MERGEKIT, "README.md"))
        copy_aux_files(sft.path, tmp, skip=(*_OWN_FILES, MERGEKIT, "README.md", ADAPTER_CONFIG))
    else:
        copy_aux_files(sft.path, tmp, skip=(*_OWN_FILES, MERGEKIT))


def _base_revision(cfg: ApplyConfig) -> str | None:
    """The commit of a Hub base, for an adapter output's `revision`."""
    source = cfg.__dict__.get("_sources", {}).get(cfg.base)
    return source.commit if source is not None else None


def _record_header(cfg: ApplyConfig, calib) -> dict:
    """What an attribution was made from: inputs (fingerprinted) and the settings it depends on."""
    return {"version": __version__, "base": as_given(cfg, cfg.base), "sft": as_given(cfg, cfg.sft),
            "base_files": folder_fingerprint(cfg.base, _OWN_FILES),
            "sft_files": folder_fingerprint(cfg.sft, _OWN_FILES), "calibration_sha256": calib.sha256,
            "settings": tagged(cfg, "attribution")}


def _reused(cfg: ApplyConfig, calib, layout: dict[str, tuple], vocab_size: int) -> Attribution:
    """An earlier pass's attribution, after checking it was made from the same inputs and settings and that
    every target and reset index fits this model and calibration set."""
    path = Path(cfg.reuse_attribution)
    path = path / ATTRIBUTION if path.is_dir() else path
    checked = Checked(path, "attribution record")
    record = checked.of(read_json(path, "attribution record"), "an object", "")
    expected = _record_header(cfg, calib)
    mismatch = []
    if record.get("base_files") != expected["base_files"]:
        mismatch.append(f"base {cfg.base} (not the checkpoint it was made from, or changed since)")
    if record.get("sft_files") != expected["sft_files"]:
        mismatch.append(f"sft {cfg.sft} (not the checkpoint it was made from, or changed since)")
    if record.get("calibration_sha256") != calib.sha256:
        mismatch.append(f"calibration file {cfg.calib} (other contents)")
    settings = record.get("settings") if isinstance(record.get("settings"), dict) else {}
    for key in tagged(cfg, "attribution"):
        if settings.get(key) != getattr(cfg, key):
            mismatch.append(f"{key} ({settings.get(key)!r} there, {getattr(cfg, key)!r} here)")
    if mismatch:
        raise RejuvError(f"{path}: made from other inputs or settings; differs in " + "; ".join(mismatch))
    found = parse_attribution(record, checked, layout, calib.samples, vocab_size)
    # Without a grid of its own, a reusing run measures the grid it finds; ρ must be one of it.
    wanted = rho_grid(cfg) if cfg.rho_grid else sorted(found.resets) + ([] if cfg.rho == "auto" else [float(cfg.rho)])
    missing = sorted({r for r in wanted if r not in found.resets})
    if missing:
        raise RejuvError(f"{path}: holds the reset sets of rho {', '.join(f'{r:g}' for r in sorted(found.resets))}; "
                         f"rho {', '.join(f'{r:g}' for r in missing)} needs a new attribution pass")
    return Attribution(found.targets, {r: found.resets[r] for r in wanted}, found.errors)


def run_apply(cfg: ApplyConfig) -> dict:
    """Run `rejuv apply` with `cfg`; returns the manifest written to `<out>/rejuvenation.json`."""
    with claimed_output(cfg, "apply"):
        return _apply(cfg)


@dataclass
class _Passes:
    """What the calibration passes found (stages 2 and 3): each stage's measurements, the ρ grid measured,
    the ρ chosen and its reset set, and the attribution it came from."""

    measured: dict = field(default_factory=dict)
    grid: list[dict] = field(default_factory=list)
    rho: float = 0.0
    choice: str | None = None
    resets: dict = field(default_factory=dict)
    allowed: AccuracyCost | None = None
    attribution: Attribution | None = None


def _apply(cfg: ApplyConfig) -> dict:
    fusion_only = cfg.fusion_only or cfg.rho == 0
    with Checkpoint(cfg.base, cfg.allow_pickle) as base, open_checkpoint(cfg.sft, cfg.allow_pickle, cfg.base) as sft:
        if cfg.save_as == "adapter" and not isinstance(sft, LoraCheckpoint):
            raise RejuvError(f"{cfg.sft}: --save-as adapter writes a rejuvenated adapter, and --sft is a full model "
                             "(an adapter folder is needed)")
        layout = fusion_layout(base, sft)
        sizes = neuron_sizes(layout.adapter, sft, resettable=not fusion_only)
        calib = _calibration(cfg, sft)
        attribution = None
        if cfg.reuse_attribution:
            resettable = reset_layout(layout.adapter, sizes, set(sft.tensors))
            attribution = _reused(cfg, calib, resettable, sft.config["vocab_size"])
        found = _Passes(attribution=attribution)
        if calib is not None:
            cfg = replaced(cfg, device=resolve_device(cfg.device))  # the manifest names the device used
            found = _calibration_passes(cfg, base, sft, layout, sizes, calib, attribution, fusion_only)
        return _write(cfg, base, sft, layout, sizes, calib, found, fusion_only)


def _calibration(cfg: ApplyConfig, sft):
    """Stage 1: the calibration set, tokenized by the SFT side's tokenizer (None without `--calib`)."""
    if not cfg.calib:
        return None
    from transformers import AutoTokenizer

    from rejuv.data.calibration import check_vocabulary, load_calibration

    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder(cfg.sft, cfg.base, cfg.allow_pickle),
                                                  trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise RejuvError(f"{cfg.sft}: no usable tokenizer in the SFT folder ({exc})") from exc
    calib = load_calibration(cfg.calib, tokenizer, cfg.max_samples, cfg.seed, cfg.max_length,
                             cfg.chat_template, model_positions(sft.config, cfg.sft))
    check_vocabulary(calib, sft.config.get("vocab_size"), cfg.sft)
    return calib


def _calibration_passes(cfg: ApplyConfig, base: Checkpoint, sft, layout: FusionLayout, sizes, calib,
                        attribution: Attribution | None, fusion_only: bool) -> _Passes:
    """Stages 2 and 3, one model in memory at a time: base and SFT entropies, the attribution (unless reused),
    then the SFT model fused in place and measured, with every grid ρ's reset and without; ρ chosen."""
    import torch

    from rejuv.method import passes
    from rejuv.method.attribution import select_targets

    torch.manual_seed(cfg.seed)
    adapter = layout.adapter
    opts = passes.PassOptions(dtype=cfg.dtype, device=cfg.device, batch_size=cfg.batch_size,
                              ranking=cfg.ranking, trust_remote_code=cfg.trust_remote_code,
                              allow_pickle=cfg.allow_pickle, progress=cfg.progress)
    model = passes.load_base_like_sft(cfg.base, opts, layout, sft)
    base_stats = passes.entropy_stats(model, adapter, calib, opts, "base")
    del model
    model = passes.load_model(cfg.sft, opts, adapter_base=cfg.base)
    sft_stats = passes.entropy_stats(model, adapter, calib, opts, "sft")
    if not fusion_only and attribution is None:
        targets = select_targets(calib.samples, base_stats, sft_stats, cfg.targets_per_sample, cfg.target_token)
        reset_set, errors = passes.find_reset_set(model, adapter, sizes, calib, targets, opts, rho_grid(cfg))
        names = set(sft.tensors)
        attribution = Attribution(targets, {r: reset_entries(reset_set.indices(r), names) for r in reset_set.rhos},
                                  errors)
    found = _Passes(attribution=attribution)
    targets = attribution.targets if attribution else []
    for what, stats in (("base", base_stats), ("sft", sft_stats)):
        found.measured[what] = passes.Measured(passes.mean_entropy(stats), passes.token_accuracy(stats, calib),
                                               passes.entropy_at(stats, targets, calib))
    passes.fuse_in_memory(model, base, sft, layout, cfg.alpha)
    found.measured["fused"], _ = passes.measure(model, adapter, calib, opts, "fused", targets)
    for r, reset in sorted((attribution.resets if attribution else {}).items()):
        with passes.reset_in_memory(model, base, reset, layout):
            m, _ = passes.measure(model, adapter, calib, opts, f"rho {r:g}", targets)
        size = summarize(reset, sizes)
        found.grid.append({"rho": r, "neurons_reset": size["neurons_reset"],
                           "effective_reset_ratio": size["effective_reset_ratio"], "entropy": m.entropy,
                           "calibration_accuracy": m.accuracy, "entropy_at_targets": m.at_targets})
    if found.grid:
        _choose_rho(cfg, found, calib)
        if cfg.random_reset and found.resets:  # the control: the attribution's count per module, drawn at random
            found.resets = random_like(found.resets, sizes, set(sft.tensors), cfg.seed)
            with passes.reset_in_memory(model, base, found.resets, layout):
                found.measured["rejuvenated"], _ = passes.measure(model, adapter, calib, opts, "random reset",
                                                                  targets)
    del model
    return found


def _choose_rho(cfg: ApplyConfig, found: _Passes, calib) -> None:
    """ρ as given, or by `rho: auto`'s rule from the grid's measurements, with its reset set and measurements."""
    from rejuv.method.passes import Measured

    accuracy = {k: v.accuracy for k, v in found.measured.items()}
    tokens = sum(len(sample.predict_positions) for sample in calib.samples)
    found.allowed = AccuracyCost(accuracy["sft"], accuracy["fused"], tokens)
    found.rho, found.choice = (auto_rho(found.grid, found.allowed, cfg.max_reset_share) if cfg.rho == "auto"
                               else (float(cfg.rho), "given"))
    found.resets = found.attribution.resets.get(found.rho, {})
    chosen = next((g for g in found.grid if g["rho"] == found.rho), None)
    if chosen is not None:
        found.measured["rejuvenated"] = Measured(chosen["entropy"], chosen["calibration_accuracy"],
                                                 chosen["entropy_at_targets"])


def _write(cfg: ApplyConfig, base: Checkpoint, sft, layout: FusionLayout, sizes, calib, found: _Passes,
           fusion_only: bool) -> dict:
    """Stage 4: the weights (streamed, or an adapter), the manifest, mergekit's config where it holds, the model
    card and the attribution record, into a temporary folder renamed into place."""
    with atomic_output_dir(Path(cfg.out), cfg.overwrite, command="apply") as tmp:
        if cfg.save_as == "adapter":
            write_adapter(tmp, sft, cfg.alpha, found.resets, as_given(cfg, cfg.base), _base_revision(cfg))
            copy_aux_files(sft.path, tmp, skip=(*_OWN_FILES, MERGEKIT, "README.md", ADAPTER_CONFIG))
        else:
            _stream_output(tmp, base, sft, layout, cfg.alpha, found.resets, cfg)
        manifest = _manifest(cfg, fusion_only, layout, calib, sizes, found)
        (tmp / MANIFEST).write_text(manifest_json(manifest))
        # the same bytes in mergekit: a fusion of full models that keeps the vocabulary
        same_in_mergekit = fusion_only and not layout.vocab_resized and not isinstance(sft, LoraCheckpoint)
        mergekit = mergekit_config(as_given(cfg, cfg.base), as_given(cfg, cfg.sft), cfg.alpha,
                                   _stored_dtype(layout)) if same_in_mergekit else None
        if mergekit:
            (tmp / MERGEKIT).write_text(mergekit)
        (tmp / "README.md").write_text(model_card(manifest, cfg.command(found.rho), mergekit))
        if found.attribution is not None:
            (tmp / ATTRIBUTION).write_text(json.dumps(found.attribution.record(_record_header(cfg, calib))) + "\n")
    return manifest


def _stored_dtype(layout: FusionLayout) -> str:
    """The float dtype that holds most of the output's bytes (a checkpoint's weights share one, usually)."""
    sizes: dict[str, int] = {}
    for spec in layout.outputs:
        if numpy_dtype(spec.dtype) in FLOAT_DTYPES:
            sizes[spec.dtype] = sizes.get(spec.dtype, 0) + spec.nbytes
    return max(sizes, key=sizes.get) if sizes else "F32"


def manifest_json(manifest: dict) -> str:
    """Indented JSON with each index list on one line (a 70B reset set stays readable)."""
    text = strict_dumps(manifest)
    return re.sub(r"\[\s+([-\d,\s]+?)\s+\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text) + "\n"


def _manifest(cfg: ApplyConfig, fusion_only: bool, layout: FusionLayout, calib, sizes, found: _Passes) -> dict:
    rho, choice, resets, attribution, allowed = found.rho, found.choice, found.resets, found.attribution, found.allowed
    size = summarize(resets, sizes)
    stages = ("base", "sft", "fused", "rejuvenated")
    value = {key: {s: getattr(found.measured[s], key) if s in found.measured else None for s in stages}
             for key in ("entropy", "accuracy", "at_targets")}
    errors = attribution.errors if attribution else []
    targets = len(attribution.targets) if attribution else 0
    problems = (reset_warnings(size["effective_reset_ratio"], cfg.max_reset_share, rho, targets, size["by_kind"],
                               allowed, value["accuracy"]["rejuvenated"]) if resets else [])
    if choice and "none qualifies" in choice:
        problems.append(f"rho auto: {choice}")
    warnings = [warn(f"apply: {w}") for w in problems]
    return {
        "base": as_given(cfg, cfg.base),
        "sft": as_given(cfg, cfg.sft),
        "alpha": float(cfg.alpha),
        "rho": float(rho),
        "targets_per_sample": int(cfg.targets_per_sample),
        "calibration": None if calib is None else {
            "path": calib.path, "samples": len(calib.samples), "sha256": calib.sha256},
        "neurons_total": size["neurons_total"],
        "neurons_reset": size["neurons_reset"],
        "effective_reset_ratio": size["effective_reset_ratio"],
        "reset": {name: resets[name] for name in sorted(resets)},
        "dla_reconstruction_error": None if not errors else {
            "max_abs": float(max(errors)), "mean_abs": math.fsum(errors) / len(errors)},
        "entropy": value["entropy"],
        "seed": int(cfg.seed),
        "version": __version__,
        # Beyond the specification's fields: what a reader needs to interpret the ones above.
        "fusion_only": fusion_only,
        "rho_choice": choice,  # "given", or the rule `rho: auto` applied
        # which neurons: the attribution's, or (--random-reset) as many drawn at random in each module
        "reset_choice": ("random: the attribution's count per module (layer, kind), drawn with seed "
                         f"{cfg.seed}" if cfg.random_reset else "attribution") if resets else None,
        # what a reset may cost in calibration accuracy: fusion's own cost plus the calibration set's noise
        "accuracy_cost_allowed": None if allowed is None else allowed.record(),
        "ranking": cfg.ranking,
        "target_token": cfg.target_token,
        "targets": targets,
        "entropy_at_targets": value["at_targets"],
        "calibration_accuracy": value["accuracy"],  # teacher-forced top-1 accuracy on the calibration responses
        # ρ keeps ⌈ρ·total⌉ neurons per target; the reset set is their union over all targets.
        "rho_grid": found.grid,
        "reset_by_kind": size["by_kind"],
        "reset_by_layer": size["by_layer"],
        "reset_by_module": size["by_module"],
        "warnings": warnings,
        "attribution": None if attribution is None else (cfg.reuse_attribution or ATTRIBUTION),
        "vocab_resized": layout.vocab_resized,
        "ran": what_ran(cfg.device if calib else None, cfg.dtype if calib else None,
                            "rejuv streamed fusion (numpy)" + ("; transformers passes" if calib else "")),
        "chat_template_used": None if calib is None else calib.chat_template,
        # where each model came from (Hub ID, revision, commit), what the SFT side was, what was written
        "sources": sources(cfg),
        "sft_is_adapter": is_adapter(cfg.sft),
        "saved_as": cfg.save_as,
    }


def summary_json(cfg: ApplyConfig, manifest: dict) -> str:
    """What `rejuv apply` prints: the manifest's headline figures as JSON."""
    keys = ("alpha", "rho", "rho_choice", "accuracy_cost_allowed", "neurons_total", "neurons_reset",
            "effective_reset_ratio", "entropy", "calibration_accuracy", "dla_reconstruction_error", "rho_grid",
            "warnings")
    summary = {k: manifest[k] for k in keys}
    summary["reset_ratio_by_kind"] = {k: round(v["ratio"], 4) for k, v in manifest["reset_by_kind"].items()}
    summary["reset_ratio_by_layer"] = {k: round(v["ratio"], 4) for k, v in manifest["reset_by_layer"].items()}
    summary["out"] = cfg.out
    return strict_dumps(summary)


RECIPE = Recipe(ApplyConfig, run_apply, summary_json)
