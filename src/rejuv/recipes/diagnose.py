"""The `diagnose` recipe: is a checkpoint (or which of several) still plastic enough for RL?

For each checkpoint against the base: parameter drift (streamed), teacher-forced
output statistics on a calibration set, optionally sampled pass@1 / pass@k on a
benchmark; then flags, a ranking, plots, `report.json` (validated by
`diagnostics/report.schema.json`) and a self-contained `report.html`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from rejuv import __version__
from rejuv.data.calibration import check_vocabulary, load_calibration
from rejuv.data.prompts import chat_template_option
from rejuv.data.rows import problem_rows
from rejuv.diagnostics.diversity import coverage_samples, sample_diversity
from rejuv.diagnostics.groups import group_forecast
from rejuv.diagnostics.outputs import output_stats
from rejuv.diagnostics.params import parameter_drift
from rejuv.diagnostics.report import (
    assess,
    checkpoint_labels,
    distinct_labels,
    dumps,
    plot_across_checkpoints,
    plot_drift_heatmaps,
    plot_entropy_histograms,
    render_html,
)
from rejuv.diagnostics.update import update_statistics
from rejuv.errors import RejuvError, warn
from rejuv.evaluation.sampled import EvalConfig, evaluate
from rejuv.io.adapter import open_checkpoint
from rejuv.io.inputs import sources
from rejuv.io.jsonl import read_jsonl
from rejuv.io.output import atomic_output_dir, claimed_output
from rejuv.io.reader import Checkpoint
from rejuv.method import attribution
from rejuv.method.arch import adapter_for
from rejuv.method.fusion import fusion_layout
from rejuv.modeling import (
    allow_pickle_option,
    compute_dtype_option,
    device_option,
    load_frozen_model,
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
    compose,
    option,
    out_option,
    overwrite_option,
    passed_on,
    progress_option,
    recorded,
    seed_option,
)
from rejuv.progress import progress_bar
from rejuv.provenance import what_ran

DiagnoseEvaluation = EvalConfig.section("DiagnoseEvaluation", samples=8, max_new_tokens=512)
# The dead-group forecast samples the RL prompts as GRPO will: temperature 1.0, top-p 1.0, a group's worth.
ForecastSampling = EvalConfig.section("ForecastSampling", samples=8, temperature=1.0, max_new_tokens=512,
                                       max_problems=64)



@dataclass
class DiagnoseConfig(Config):
    """Parameter drift, token entropy, top-1 mass, NLL and pass@k gap of checkpoints against their base."""

    checkpoints: list[str] = option(positional=True, help="Checkpoints in training order: model folders, PEFT LoRA "
                                    "adapters over --base, or Hub IDs (org/name[@revision]).", path="checkpoint",
                                    nonempty=True)
    base: str = option(help="Base model the checkpoints were trained from (a folder or Hub ID).", path="checkpoint")
    calib: str = option(help="Calibration JSONL (prompt/response or messages), e.g. held-out SFT data.", path="file")
    out: str = out_option("Report folder: report.json, report.html, PNG plots.")
    eval: str | None = option(None, help="Benchmark (problem/answer rows): adds pass@1, pass@k and their gap.",
                              path="file")
    k: int = option(8, help="k of pass@k (at most --eval-samples).", at_least=1)
    evaluation: DiagnoseEvaluation = option(DiagnoseEvaluation(), flag="--eval", help="Sampling:")
    chat_template: str = chat_template_option()
    max_samples: int = option(64, help="Calibration rows used.", at_least=1)
    max_length: int = option(2048, help="Truncate calibration sequences to this many tokens (and to the model's "
                             "positions).", at_least=2)
    batch_size: int = option(8, help="Calibration samples per forward pass.", at_least=1)
    device: str | None = device_option()
    dtype: str = compute_dtype_option()
    seed: int = seed_option("Seed of calibration sampling and generation.")
    overwrite: bool = overwrite_option("report folder")
    allow_pickle: bool = allow_pickle_option()
    trust_remote_code: bool = trust_remote_code_option()
    progress: bool = progress_option()
    names: list[str] = option([], flag="--name", help="Label per checkpoint, in order (repeat the option).",
                              default_text="folder names")
    reference: str | None = option(None, help="The checkpoint the others started from (e.g. the SFT model an RL "
                                   "run began with): adds what each update changed (share of entries, rank per "
                                   "matrix, the start's spikes kept) and the overlap of every pair's updated sets.",
                                   path="checkpoint")
    update_tolerance: float = option(1e-5, help="With --reference: an entry counts as updated above this absolute "
                                     "change, beside the exact (bit-for-bit) count.", at_least=0)
    rank_energy: float = option(0.9, help="With --reference: the share of an update's squared norm its energy rank "
                                "keeps.", above=0, at_most=1)
    spike_fraction: float = option(0.1, help="With --reference: a spike of the start (top 0.1% of |start − base| "
                                   "in its tensor) is kept while it moved by at most this share of its size.",
                                   above=0, at_most=1)
    rank_sketch: int = option(256, help="With --reference: singular directions of the randomized SVD of matrices "
                              "whose short side exceeds 1024 (smaller ones get their exact spectrum).", at_least=1)
    rl_data: str | None = option(None, help="RL prompts with answers: adds the dead-group forecast, the share of "
                                 "GRPO groups whose samples would all get one reward (from per-prompt pass rates "
                                 "sampled as --rl-* says, at the RL temperature).", path="file")
    group_size: int = option(8, help="With --rl-data: GRPO's samples per prompt (num_generations).", at_least=2)
    prompts_per_step: int = option(8, help="With --rl-data: prompts per GRPO step, for the prompts per step that "
                                   "carry signal.", at_least=1)
    forecast: ForecastSampling = option(ForecastSampling(), flag="--rl", help="Forecast sampling:")
    coverage_k: int = option(0, help="With --rl-data: also sample the base and every checkpoint K times per RL "
                             "prompt, as --rl-* says otherwise: pass@K and its ratio to the base's (TailSFT's "
                             "coverage, arXiv 2608.25756) and the samples' diversity, 1 − self-BLEU-4 (AESL, ICLR "
                             "2026). 0: off.", at_least=0, check=coverage_samples)

    def check(self) -> None:
        distinct_labels(self.checkpoints, self.names)
        if self.coverage_k and not self.rl_data:
            raise OptionError("coverage_k", "samples the RL prompts; give --rl-data too", also=("rl_data",))
        if self.eval and self.k > self.evaluation.samples:
            raise OptionError("k", f"{self.k} is larger than the {self.evaluation.samples} samples drawn per problem; "
                              f"pass@{self.k} needs at least {self.k} (raise --eval-samples)",
                              also=("evaluation.samples",))


def run_diagnose(cfg: DiagnoseConfig) -> dict:
    """Run `rejuv diagnose`; returns the report written to `<out>/report.json`."""
    labels = checkpoint_labels(cfg.checkpoints, cfg.names)
    with claimed_output(cfg, "diagnose") as out, contextlib.ExitStack() as stack:
        for data in (cfg.eval, cfg.rl_data):
            if data:
                problem_rows(data)  # a bad row is refused before the passes, not after them
        base = stack.enter_context(Checkpoint(cfg.base, cfg.allow_pickle))
        ckpts = [stack.enter_context(open_checkpoint(p, cfg.allow_pickle, cfg.base)) for p in cfg.checkpoints]
        reference = stack.enter_context(open_checkpoint(cfg.reference, cfg.allow_pickle, cfg.base)) \
            if cfg.reference else None
        return _diagnose(cfg, out, labels, base, ckpts, reference)


def _diagnose(cfg: DiagnoseConfig, out: Path, labels: list[str], base: Checkpoint,
              ckpts: list[Checkpoint], reference: Checkpoint | None) -> dict:
    adapter = adapter_for(base.config, where=str(base.path))
    layouts = [fusion_layout(base, c) for c in ckpts]  # refuses a different architecture, naming the tensor
    if reference is not None:
        fusion_layout(base, reference)
        for c in ckpts:
            fusion_layout(reference, c)
    report = _measure(cfg, labels, base, ckpts, layouts, adapter)
    report["update"] = _updates(cfg, labels, base, ckpts, layouts, reference) if reference is not None else None
    with atomic_output_dir(out, cfg.overwrite, command="diagnose") as tmp:
        if cfg.eval:
            _sample(cfg, report, tmp / "eval")
        if cfg.rl_data:
            forecast_groups(cfg, report["checkpoints"], tmp / "forecast")
            if cfg.coverage_k:
                coverage(cfg, report, tmp / "coverage")
        assess(report["checkpoints"])
        _write(report, tmp)
    return report


def _measure(cfg: DiagnoseConfig, labels: list[str], base: Checkpoint, ckpts: list[Checkpoint],
             layouts: list, adapter) -> dict:
    """The report's measurements: every checkpoint's drift from the base (streamed) and teacher-forced output
    statistics on the calibration set, beside the base's."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder(cfg.checkpoints[0], cfg.base, cfg.allow_pickle),
                                                  trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise RejuvError(f"{cfg.checkpoints[0]}: no usable tokenizer ({exc})") from exc
    calib = load_calibration(cfg.calib, tokenizer, cfg.max_samples, cfg.seed, cfg.max_length, cfg.chat_template,
                             model_positions(base.config, str(base.path)))
    vocab = base.config.get("vocab_size")
    check_vocabulary(calib, vocab, str(base.path))
    gold = [[s.input_ids[p + 1] for p in s.predict_positions] for s in calib.samples]

    def stats_of(path: str, what: str):
        model = load_frozen_model(path, cfg.dtype, cfg.device, cfg.trust_remote_code, cfg.allow_pickle, cfg.progress,
                                  adapter_base=cfg.base)
        with progress_bar(cfg.progress, len(calib.samples), f"entropy ({what})", "sample") as bar:
            result = attribution.response_token_stats(model, adapter, calib.samples, cfg.batch_size, progress=bar)
        del model
        return result

    base_stats = stats_of(cfg.base, "base")
    report = {
        "version": __version__, "seed": cfg.seed, "config": recorded(cfg),
        "ran": what_ran(resolve_device(cfg.device), cfg.dtype, "transformers"),
        "calibration": {"path": calib.path, "samples": len(calib.samples), "sha256": calib.sha256,
                        "chat_template_used": calib.chat_template},
        "sources": sources(cfg),
        "base": {"path": as_given(cfg, cfg.base), "outputs": output_stats(base_stats, None, gold, vocab, tokenizer)},
        "checkpoints": [], "sampling": None,
    }
    for path, label, ckpt, layout in zip(cfg.checkpoints, labels, ckpts, layouts, strict=True):
        names = [t.name for t in layout.outputs]
        with progress_bar(cfg.progress, len(names), f"drift ({label})", "tensor") as bar:
            drift = parameter_drift(base, ckpt, names, progress=bar)
        stats = stats_of(path, label)
        report["checkpoints"].append({
            "path": as_given(cfg, path), "name": label, "params": drift,
            "outputs": output_stats(stats, base_stats, gold, vocab, tokenizer), "sampling": None})
    return report


def _updates(cfg: DiagnoseConfig, labels: list[str], base: Checkpoint, ckpts: list[Checkpoint], layouts: list,
             reference: Checkpoint) -> dict:
    """What each checkpoint's update from `--reference` changed, over the tensors every checkpoint shares with
    the base (a vocabulary grown by SFT is left out)."""
    names = [n for n in (t.name for t in layouts[0].outputs) if n in reference.tensors and all(
        n in c.tensors and c.tensors[n].shape == reference.tensors[n].shape == base.tensors[n].shape
        for c in ckpts)]
    with progress_bar(cfg.progress, len(names), "update", "tensor") as bar:
        update = update_statistics(
            reference, ckpts, names, base=base, tolerance=cfg.update_tolerance, energy=cfg.rank_energy,
            spike_fraction=cfg.spike_fraction, sketch=cfg.rank_sketch, seed=cfg.seed, progress=bar)
    update["names"] = labels
    return update


def _sample(cfg: DiagnoseConfig, report: dict, out: Path) -> None:
    """pass@1, pass@k and their gap on `--eval`, sampled into `out` (the report folder's eval/)."""
    ev = evaluate(compose(EvalConfig, cfg.evaluation, checkpoints=list(cfg.checkpoints), data=[cfg.eval],
                          base=cfg.base, out=str(out), pass_k=sorted({1, cfg.k}), overwrite=False,
                          **passed_on(cfg, EvalConfig)))
    for entry, result in zip(report["checkpoints"], ev["results"], strict=True):
        pass1, passk = result["pass@1"], result["pass@k"][str(cfg.k)]
        entry["sampling"] = {"pass@1": pass1, "pass@k": passk, "gap": passk - pass1}
    first = ev["results"][0]
    report["sampling"] = {"path": cfg.eval, "problems": first["problems"], "samples": cfg.evaluation.samples,
                          "k": cfg.k, "temperature": cfg.evaluation.temperature, "engine": ev["engine"]}


def _write(report: dict, tmp: Path) -> None:
    """Plots, report.json and report.html."""
    images = {"drift_heatmap": plot_drift_heatmaps(report["checkpoints"]),
              "entropy_histograms": plot_entropy_histograms(report["checkpoints"], report["base"]["outputs"])}
    if len(report["checkpoints"]) > 1:
        images["across_checkpoints"] = plot_across_checkpoints(report["checkpoints"])
    for name, png in images.items():
        (tmp / f"{name}.png").write_bytes(png)
    report["plots"] = [f"{name}.png" for name in images]
    (tmp / "report.json").write_text(dumps(report))
    (tmp / "report.html").write_text(render_html(report, images))


def forecast_groups(cfg: DiagnoseConfig, entries: list[dict], out: Path) -> None:
    """Each checkpoint's dead-group forecast (diagnostics/groups.py) from `rejuv eval` on the RL prompts."""
    unique = list(dict.fromkeys(cfg.checkpoints))  # arms may share a start: each is sampled once
    ev = evaluate(compose(EvalConfig, cfg.forecast, checkpoints=unique, data=[cfg.rl_data], out=str(out), pass_k=[1],
                          overwrite=False, base=cfg.base, **passed_on(cfg, EvalConfig)))
    by_checkpoint = {result["checkpoint"]: result for result in ev["results"]}
    for entry in entries:
        result = by_checkpoint[entry["path"]]
        groups = group_forecast(result["correct_per_problem"], result["samples_per_problem"], cfg.group_size,
                                cfg.prompts_per_step)
        entry["groups"] = {**groups, "temperature": cfg.forecast.temperature, "data": cfg.rl_data}
        if groups["dead_share"] > 0.5:
            warn(f"diagnose: {entry['name']}: {groups['dead_share']:.0%} of GRPO groups of {cfg.group_size} would "
                 f"get one reward for every sample (forecast from {groups['prompts']} RL prompts × "
                 f"{groups['samples_per_prompt']} samples): {groups['signal_prompts_per_step']:.1f} of "
                 f"{cfg.prompts_per_step} prompts per step carry signal")


def coverage(cfg: DiagnoseConfig, report: dict, out: Path) -> None:
    """The base and every checkpoint sampled `coverage_k` times per RL prompt (sampled evaluation into `out`):
    pass@K and each checkpoint's ratio to the base's (what SFT kept of the prompts the base could reach), and
    1 − self-BLEU-4 among each prompt's samples."""
    unique = list(dict.fromkeys([cfg.base, *cfg.checkpoints]))
    sampling = dataclasses.replace(cfg.forecast, samples=cfg.coverage_k)
    ev = evaluate(compose(EvalConfig, sampling, checkpoints=unique, data=[cfg.rl_data], out=str(out),
                          pass_k=[cfg.coverage_k], overwrite=False, base=cfg.base, **passed_on(cfg, EvalConfig)))
    completions: dict[str, dict[int, list[str]]] = {}
    for row in read_jsonl(out / "samples.jsonl"):
        completions.setdefault(row["checkpoint"], {}).setdefault(row["problem"], []).append(row["completion"])
    found = {}
    for path, result in zip(unique, ev["results"], strict=True):
        groups = list(completions.get(result["checkpoint"], {}).values())
        found[path] = {"k": cfg.coverage_k, "pass@k": result["pass@k"][str(cfg.coverage_k)],
                       **sample_diversity(groups), "temperature": cfg.forecast.temperature, "data": cfg.rl_data}
    base = found[cfg.base]
    report["base"]["coverage"] = base
    for path, entry in zip(cfg.checkpoints, report["checkpoints"], strict=True):
        mine = found[path]
        entry["coverage"] = {**mine, "base_pass@k": base["pass@k"],
                             "ratio": mine["pass@k"] / base["pass@k"] if base["pass@k"] else None}


def summary_lines(cfg: DiagnoseConfig, report: dict) -> str:
    """What `rejuv diagnose` prints: each checkpoint's rank, entropy, drift and verdict, then the report's path."""
    lines = []
    for e in sorted(report["checkpoints"], key=lambda e: e["rank"]):
        verdict = "OVER-TRAINED: " + "; ".join(e["signals"].values()) if e["flagged"] else "ok"
        groups = e.get("groups")
        dead = (f", dead GRPO groups {groups['dead_share']:.0%} ({groups['signal_prompts_per_step']:.1f} of "
                f"{groups['prompts_per_step']} prompts a step with signal)") if groups else ""
        lines.append(f"{e['rank']}. {e['name']}: entropy {e['outputs']['mean_entropy']:.3f} nats, "
                     f"drift {e['params']['model']['rel'] or 0:.4f}{dead}  [{verdict}]")
    update = report.get("update")
    if update:
        lines.append(f"updates from {update['start']} (stored as {', '.join(update['stored_dtypes']['start'])}):")
        for name, u in zip(update["names"], update["checkpoints"], strict=True):
            spikes = f"; spikes kept {u['spikes']['kept']:.1%}" if u["spikes"] else ""
            rank = u["rank"].get("all", {}).get("median_energy_rank_share")
            rank = f"; median energy rank {rank:.0%} of full" if rank is not None else ""
            model = u["model"]
            lines.append(f"  {name}: size {model['rel'] or 0:.4f} of the start; changed "
                         f"{model['changed_exact']:.2%} of entries exactly "
                         f"({model['changed_bf16']:.2%} in a bf16 copy), "
                         f"{model['changed_above_tolerance']:.2%} by more than {update['tolerance']:g}{rank}{spikes}")
        for pair in update["overlap"]:
            if pair["jaccard"] is not None:
                lines.append(f"  overlap {update['names'][pair['a']]} / {update['names'][pair['b']]}: Jaccard "
                             f"{pair['jaccard']:.3f} (random sets of the same sizes: {pair['random_jaccard']:.3f})")
    return "\n".join([*lines, f"report: {Path(cfg.out) / 'report.html'}"])


RECIPE = Recipe(DiagnoseConfig, run_diagnose, summary_lines)
