"""The `diagnose` recipe: is a checkpoint (or which of several) still plastic enough for RL?

For each checkpoint against the base: parameter drift (streamed), teacher-forced
output statistics on a calibration set, optionally sampled pass@1 / pass@k on a
benchmark; then flags, a ranking, plots, `report.json` (validated by
`diagnostics/report.schema.json`) and a self-contained `report.html`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from rejuv import __version__
from rejuv.arch import adapter_for
from rejuv.attribution import response_token_stats
from rejuv.calibration import load_calibration
from rejuv.checkpoint import Checkpoint, atomic_output_dir, check_output_free
from rejuv.diagnostics.outputs import output_stats
from rejuv.diagnostics.params import parameter_drift
from rejuv.diagnostics.report import (
    assess,
    dumps,
    plot_across_checkpoints,
    plot_drift_heatmaps,
    plot_entropy_histograms,
    render_html,
)
from rejuv.errors import RejuvError
from rejuv.fusion import plan_fusion
from rejuv.modeling import check_device, load_frozen_model

SCHEMA = Path(__file__).with_name("diagnostics") / "report.schema.json"


@dataclass
class DiagnoseConfig:
    base: str
    checkpoints: list[str]
    calib: str
    out: str
    eval: str | None = None  # benchmark with problem/answer rows: adds pass@1, pass@k and their gap
    k: int = 8
    samples: int | None = None  # drawn per problem (default: k)
    temperature: float = 0.6
    max_new_tokens: int = 512
    max_problems: int | None = None
    chat_template: str = "auto"  # auto | always | never, for calibration rows and sampled problems (rejuv.prompts)
    max_samples: int = 64
    max_length: int = 2048
    batch_size: int = 8
    device: str | None = None  # None: cuda when a GPU is visible, else cpu; auto: accelerate's device map
    dtype: str = "float32"
    seed: int = 0
    overwrite: bool = False
    allow_pickle: bool = False
    trust_remote_code: bool = False
    progress: bool = True
    names: list[str] = field(default_factory=list)  # labels for the checkpoints (default: folder names)


def checkpoint_labels(checkpoints: list[str], names: list[str] | None = None) -> list[str]:
    """The given names, else folder names (with the parent folder when two would collide)."""
    if names:
        if len(names) != len(checkpoints):
            raise RejuvError(f"{len(names)} names for {len(checkpoints)} checkpoints")
        return list(names)
    labels = [Path(c).name for c in checkpoints]
    if len(set(labels)) < len(labels):
        labels = [os.path.join(Path(c).parent.name, Path(c).name) for c in checkpoints]
    return labels


def _validate(cfg: DiagnoseConfig) -> int:
    if not cfg.checkpoints:
        raise RejuvError("give at least one checkpoint to diagnose")
    check_device(cfg.device)
    samples = cfg.samples or cfg.k
    if cfg.eval:
        if cfg.k < 1:
            raise RejuvError(f"--k must be at least 1, got {cfg.k}")
        if cfg.k > samples:
            raise RejuvError(f"--k {cfg.k} is larger than the {samples} samples drawn per problem; "
                             f"pass@{cfg.k} needs at least {cfg.k} (raise --samples)")
    return samples


def _bar(cfg: DiagnoseConfig, total: int, desc: str, unit: str):
    return tqdm(total=total, desc=desc, unit=unit, disable=not cfg.progress or None, leave=False)


def run_diagnose(cfg: DiagnoseConfig) -> dict:
    samples = _validate(cfg)
    out = Path(cfg.out)
    check_output_free(out, cfg.overwrite, inputs=tuple(Path(p) for p in [cfg.base, *cfg.checkpoints]))
    labels = checkpoint_labels(cfg.checkpoints, cfg.names)
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(Checkpoint(cfg.base, cfg.allow_pickle))
        ckpts = [stack.enter_context(Checkpoint(p, cfg.allow_pickle)) for p in cfg.checkpoints]
        return _diagnose(cfg, samples, out, labels, base, ckpts)


def _diagnose(cfg: DiagnoseConfig, samples: int, out: Path, labels: list[str], base: Checkpoint,
              ckpts: list[Checkpoint]) -> dict:
    adapter = adapter_for(base.config, where=str(base.path))
    plans = [plan_fusion(base, c) for c in ckpts]  # refuses a different architecture, naming the tensor

    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(cfg.checkpoints[0], trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise RejuvError(f"{cfg.checkpoints[0]}: no usable tokenizer ({exc})") from exc
    calib = load_calibration(cfg.calib, tokenizer, cfg.max_samples, cfg.seed, cfg.max_length, cfg.chat_template)
    vocab = int(base.config["vocab_size"])
    for s in calib.samples:
        if max(s.input_ids) >= vocab:
            raise RejuvError(f"{s.where}: token id {max(s.input_ids)} is outside the base vocabulary "
                             f"({vocab}); the checkpoints' tokenizer does not match the base model")
    gold = [[s.input_ids[p + 1] for p in s.predict_positions] for s in calib.samples]

    def stats_of(path: str, what: str):
        model = load_frozen_model(path, cfg.dtype, cfg.device, cfg.trust_remote_code, cfg.allow_pickle, cfg.progress)
        with _bar(cfg, len(calib.samples), f"entropy ({what})", "sample") as bar:
            result = response_token_stats(model, adapter, calib.samples, cfg.batch_size, progress=bar)
        del model
        return result

    base_stats = stats_of(cfg.base, "base")
    report = {
        "version": __version__, "seed": cfg.seed, "config": asdict(cfg),
        "calibration": {"path": calib.path, "samples": len(calib.samples), "sha256": calib.sha256,
                        "chat_template_used": calib.chat_template},
        "base": {"path": cfg.base, "outputs": output_stats(base_stats, None, gold, vocab, tokenizer)},
        "checkpoints": [], "sampling": None,
    }
    for path, label, ckpt, plan in zip(cfg.checkpoints, labels, ckpts, plans, strict=True):
        names = [t.name for t in plan.outputs]
        with _bar(cfg, len(names), f"drift ({label})", "tensor") as bar:
            drift = parameter_drift(base, ckpt, names, progress=bar)
        stats = stats_of(path, label)
        report["checkpoints"].append({
            "path": path, "name": label, "params": drift,
            "outputs": output_stats(stats, base_stats, gold, vocab, tokenizer), "sampling": None})

    with atomic_output_dir(out, cfg.overwrite) as tmp:
        if cfg.eval:
            from rejuv.evaluate import EvalConfig, run_eval

            ev = run_eval(EvalConfig(checkpoints=list(cfg.checkpoints), data=[cfg.eval], out=str(tmp / "eval"),
                                     samples=samples, pass_k=sorted({1, cfg.k}), temperature=cfg.temperature,
                                     max_new_tokens=cfg.max_new_tokens, max_problems=cfg.max_problems,
                                     seed=cfg.seed, device=cfg.device or "auto", chat_template=cfg.chat_template,
                                     trust_remote_code=cfg.trust_remote_code, progress=cfg.progress))
            for entry, result in zip(report["checkpoints"], ev["results"], strict=True):
                pass1, passk = result["pass@1"], result["pass@k"][str(cfg.k)]
                entry["sampling"] = {"pass@1": pass1, "pass@k": passk, "gap": passk - pass1}
            first = ev["results"][0]
            report["sampling"] = {"path": cfg.eval, "problems": first["problems"], "samples": samples, "k": cfg.k,
                                  "temperature": cfg.temperature, "engine": ev["engine"]}
        assess(report["checkpoints"])
        images = {"drift_heatmap": plot_drift_heatmaps(report["checkpoints"]),
                  "entropy_histograms": plot_entropy_histograms(report["checkpoints"], report["base"]["outputs"])}
        if len(report["checkpoints"]) > 1:
            images["across_checkpoints"] = plot_across_checkpoints(report["checkpoints"])
        for name, png in images.items():
            (tmp / f"{name}.png").write_bytes(png)
        report["plots"] = [f"{name}.png" for name in images]
        (tmp / "report.json").write_text(dumps(report))
        (tmp / "report.html").write_text(render_html(report, images))
    return report


def diagnose(base: str | os.PathLike, checkpoints: list[str | os.PathLike], calib: str | os.PathLike,
             out: str | os.PathLike, **options) -> dict:
    """Python API of `rejuv diagnose`; returns the report written to `out/report.json`."""
    return run_diagnose(DiagnoseConfig(base=str(base), checkpoints=[str(c) for c in checkpoints],
                                       calib=str(calib), out=str(out), **options))
