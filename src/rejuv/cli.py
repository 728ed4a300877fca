"""The `rejuv` command. Subcommands parse options (and an optional YAML config) and call a recipe.

Precedence: built-in defaults < `--config x.yaml` < options given on the command line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import MISSING, fields
from pathlib import Path

import click
import yaml

from rejuv import __version__
from rejuv.errors import RejuvError
from rejuv.lab.presets import ARMS, DEFAULT_ARMS


def load_yaml_config(path: str, allowed: list[str]) -> dict:
    """A flat YAML mapping of option names (dashes or underscores); unknown keys are errors."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise RejuvError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise RejuvError(f"{path}: expected a mapping of option names to values")
    config = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in allowed:
            raise RejuvError(f"{path}: unknown option {key!r}; known: {', '.join(sorted(allowed))}")
        config[name] = value
    return config


def merge_options(config_cls, cli_values: dict, config_path: str | None):
    """Build `config_cls` from YAML then explicit CLI values (None means 'not given')."""
    allowed = [f.name for f in fields(config_cls)]
    values = load_yaml_config(config_path, allowed) if config_path else {}
    values.update({k: v for k, v in cli_values.items() if v is not None and k in allowed})
    required = [f.name for f in fields(config_cls) if f.default is MISSING and f.default_factory is MISSING]
    missing = [name for name in required if name not in values]
    if missing:
        raise RejuvError("missing required option(s): " + ", ".join("--" + m.replace("_", "-") for m in missing))
    try:
        return config_cls(**values)
    except TypeError as exc:
        raise RejuvError(str(exc)) from exc


def _echo_main(text: str) -> None:
    """Print once, from the main process of a distributed launch."""
    if os.environ.get("RANK", "0") == "0":
        click.echo(text)


def _run(config_cls, runner, options: dict, config_path: str | None):
    try:
        cfg = merge_options(config_cls, options, config_path)
        return cfg, runner(cfg)
    except RejuvError as exc:
        raise click.ClickException(str(exc)) from exc


# One prompt rule for every command (rejuv.prompts), so one option with one default.
CHAT_TEMPLATE = click.option("--chat-template", type=click.Choice(["auto", "always", "never"]),
                             help="Rows through the tokenizer's chat template: auto = when it has one. [auto]")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="rejuv")
def main() -> None:
    """Diagnose and rejuvenate over-trained SFT checkpoints before RL."""
    show_warnings()


class _EchoHandler(logging.Handler):
    """rejuv's warnings as `warning: ...` on whatever stderr is current (click swaps it in tests)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"warning: {record.getMessage()}", err=True)


def show_warnings() -> None:
    from rejuv.errors import logger

    if not any(isinstance(h, _EchoHandler) for h in logger.handlers):
        logger.addHandler(_EchoHandler())
        logger.propagate = False


@main.command("apply")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True),
              help="YAML file with any of these options (command-line values win).")
@click.option("--base", help="Base (pre-trained) model folder.")
@click.option("--sft", help="Fine-tuned model folder (its config and tokenizer are copied).")
@click.option("--calib", help="Calibration JSONL: prompt/response (or completion) rows, or chat messages.")
@click.option("--out", help="Output folder (written atomically).")
@click.option("--alpha", type=float, help="Fusion weight of the SFT model, in [0, 1]. [default: 0.5]")
@click.option("--rho", help="Share of all neurons kept per target token; the reset set is their union over all "
              "targets, often many times rho (the manifest states it). 'auto': the largest --rho-grid value whose "
              "union stays under --max-reset-share and costs no more calibration accuracy than fusion. [0.01]")
@click.option("--rho-grid", help="rho values measured in the same pass (union, entropy, calibration accuracy), "
              "comma-separated. [rho/10, rho/3, rho, 3 rho; for auto 0.0003,0.001,0.003,0.01,0.03]")
@click.option("--reuse-attribution", help="An earlier output folder of the same base, SFT and calibration: take its "
              "reset sets instead of a new attribution pass (another alpha, or another rho of its grid).")
@click.option("--targets-per-sample", type=int, help="Positions with the largest entropy gap, per sample. [8]")
@click.option("--max-samples", type=int, help="Calibration rows used (chosen with --seed). [64]")
@click.option("--max-length", type=int, help="Truncate calibration sequences to this many tokens. [2048]")
@click.option("--target-token", type=click.Choice(["gold", "argmax"]), help="Token attributed. [gold]")
@click.option("--ranking", type=click.Choice(["global", "per-module"]), help="Neuron ranking. [global]")
@click.option("--fusion-only/--with-reset", default=None, help="Only fuse; skip attribution and reset.")
@CHAT_TEMPLATE
@click.option("--max-reset-share", type=float, help="Warn when the reset set (the union over targets) covers more "
              "of the model's neurons than this. [0.05]")
@click.option("--seed", type=int, help="Seed for calibration sampling. [0]")
@click.option("--device", help="cpu, cuda, cuda:N, or auto (accelerate's device map over GPUs then CPU) for the "
              "calibration passes. [cuda when a GPU is visible, else cpu]")
@click.option("--dtype", help="Compute dtype of the calibration passes (scores accumulate in float32). [float32]")
@click.option("--batch-size", type=int, help="Calibration samples per forward pass. [8]")
@click.option("--max-shard-size", help="Largest output shard, e.g. 5GB or 500MB. [5GB]")
@click.option("--workers", type=int, help="Threads reading, fusing and writing output blocks at once. "
              "[2 per core, at most 8]")
@click.option("--overwrite/--no-overwrite", default=None, help="Replace an existing output folder.")
@click.option("--allow-pickle/--no-allow-pickle", default=None,
              help="Accept pytorch_model*.bin weights (pickle) when no safetensors exist.")
@click.option("--trust-remote-code/--no-trust-remote-code", default=None, help="Run model code from the folder.")
@click.option("--progress/--no-progress", default=None, help="Show progress bars. [on]")
def apply_command(config_path: str | None, rho_grid: str | None, **options) -> None:
    """Fuse SFT with base, then reset the neurons that drive over-confident logits.

    Writes a save_pretrained folder plus rejuvenation.json, and prints the manifest summary as JSON.
    """
    from rejuv.apply import ApplyConfig, run_apply

    options["rho_grid"] = _floats(rho_grid, "--rho-grid")
    cfg, manifest = _run(ApplyConfig, run_apply, options, config_path)
    summary = {k: manifest[k] for k in ("alpha", "rho", "rho_choice", "neurons_total", "neurons_reset",
                                        "effective_reset_ratio", "entropy", "calibration_accuracy",
                                        "dla_reconstruction_error", "rho_grid", "warnings")}
    summary["reset_ratio_by_kind"] = {k: round(v["ratio"], 4) for k, v in manifest["reset_by_kind"].items()}
    summary["out"] = cfg.out
    click.echo(json.dumps(summary, indent=2))


_COMMON_TRAIN = [
    click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True),
                 help="YAML with any of these options, and `trl_args` for any other TRL config field."),
    click.option("--model", help="Starting checkpoint (save_pretrained folder)."),
    click.option("--data", help="Training data: JSONL or parquet."),
    click.option("--out", help="Output folder (written atomically)."),
    click.option("--learning-rate", type=float),
    click.option("--per-device-batch-size", type=int),
    click.option("--gradient-accumulation-steps", type=int),
    click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16"]),
                 help="Compute dtype; bfloat16 is autocast over float32 master weights (GPU). "
                 "[auto: bfloat16 on a GPU that has it, else float32]"),
    click.option("--master-dtype", type=click.Choice(["float32", "bfloat16"]),
                 help="Weights the optimizer updates, whatever the checkpoint's dtype; bfloat16 is pure bf16 "
                 "training and loses updates below half a bf16 step. [float32]"),
    click.option("--save-dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
                 help="Dtype of the saved weights. [auto: the input checkpoint's]"),
    CHAT_TEMPLATE,
    click.option("--lora/--no-lora", default=None, help="Train LoRA adapters (merged into the saved model)."),
    click.option("--seed", type=int),
    click.option("--overwrite/--no-overwrite", default=None),
    click.option("--trust-remote-code/--no-trust-remote-code", default=None),
    click.option("--progress/--no-progress", default=None, help="Progress bar and per-step log lines. [on]"),
]


def _train_options(fn):
    for option in reversed(_COMMON_TRAIN):
        fn = option(fn)
    return fn


_CHECKPOINT_PASSES = [  # diagnose and plan: teacher-forced passes over checkpoints given as folders
    click.option("--device", help="cpu, cuda, cuda:N, or auto (accelerate's device map). "
                 "[cuda when a GPU is visible, else cpu]"),
    click.option("--dtype", help="Compute dtype of the passes. [float32]"),
    click.option("--seed", type=int),
    click.option("--overwrite/--no-overwrite", default=None),
    click.option("--allow-pickle/--no-allow-pickle", default=None),
    click.option("--trust-remote-code/--no-trust-remote-code", default=None),
    click.option("--progress/--no-progress", default=None),
]


def _checkpoint_pass_options(fn):
    for option in reversed(_CHECKPOINT_PASSES):
        fn = option(fn)
    return fn


@main.command("sft")
@_train_options
@click.option("--loss", type=click.Choice(["nll", "dft", "pear"]),
              help="Cross-entropy, Dynamic Fine-Tuning, or PEAR's importance-weighted NLL. [nll]")
@click.option("--pear-variant", type=click.Choice(["token", "block", "sequence"]), help="[token]")
@click.option("--pear-clip", type=float, help="Bound on |log w| of the PEAR weights. [2.0]")
@click.option("--pear-gamma", type=float, help="Discount of PEAR's block (suffix) variant. [0.9]")
@click.option("--pear-behavior-model", help="The model that generated the SFT data. [none: deterministic data]")
@click.option("--save-epochs", help="Epochs to save, e.g. 2,32 (fractions allowed). [2]")
@click.option("--epochs", type=float, help="Train this long. [the last save epoch]")
@click.option("--max-length", type=int, help="Truncate sequences to this many tokens. [1024]")
@click.option("--plasticity-log/--no-plasticity-log", default=None, help="Log grad norm / update size per step.")
def sft_command(config_path: str | None, **options) -> None:
    """Supervised fine-tuning on TRL (constant LR, no warm-up or weight decay by default)."""
    from rejuv.train.sft import SFTRecipeConfig, run_sft

    _, summary = _run(SFTRecipeConfig, run_sft, options, config_path)
    _echo_main(json.dumps(summary, indent=2, default=str))


@main.command("rl")
@_train_options
@click.option("--reward", "rewards", multiple=True, help="Reward name (repeatable): math_verify, exact_match, "
              "format, brier (with a stated confidence), or module:function. [math_verify]")
@click.option("--beta", type=float, help="KL coefficient against the initial policy. [0.001]")
@click.option("--num-generations", type=int, help="Samples per prompt. [8]")
@click.option("--epsilon", type=float, help="Clip range. [0.2]")
@click.option("--temperature", type=float, help="Sampling temperature. [1.0]")
@click.option("--max-completion-length", type=int, help="[1024]")
@click.option("--max-steps", type=int, help="Optimizer steps. [100]")
@click.option("--use-vllm/--no-use-vllm", default=None, help="Generate with vLLM (GPU).")
@click.option("--chord-data", help="CHORD: expert SFT rows mixed into the GRPO loss with weight µ (docs/training.md).")
@click.option("--chord-mu-peak", type=float, help="CHORD µ after warm-up. [0.9]")
@click.option("--chord-mu-valley", type=float, help="CHORD µ after the cosine decay. [0.05]")
@click.option("--chord-mu-warmup-steps", type=int, help="[0]")
@click.option("--chord-mu-decay-steps", type=int, help="[200]")
@click.option("--chord-phi/--no-chord-phi", default=None, help="Weight expert tokens by p(1-p) (CHORD-φ).")
@click.option("--chord-expert-batch-size", type=int, help="Expert rows per step. [prompts per device step]")
@click.option("--filter-groups/--no-filter-groups", default=None,
              help="Drop prompts whose samples all got the same reward (pass rate 0 or 1).")
def rl_command(config_path: str | None, rewards: tuple[str, ...], **options) -> None:
    """GRPO on TRL, logging gradient norm vs update size per step (plasticity.jsonl)."""
    from rejuv.train.rl import RLRecipeConfig, run_rl

    options["rewards"] = list(rewards) or None
    _, summary = _run(RLRecipeConfig, run_rl, options, config_path)
    _echo_main(json.dumps(summary, indent=2))


@main.command("eval")
@click.argument("checkpoints", nargs=-1)
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True))
@click.option("--data", multiple=True, help="Benchmark JSONL/parquet with problem (or prompt/messages) and answer; "
              "repeatable.")
@click.option("--out", help="Output folder for eval.json and samples.jsonl.")
@click.option("--samples", "-k", type=int, help="Samples per problem (K). [4]")
@click.option("--pass-k", help="Comma-separated k for pass@k. [1,K]")
@click.option("--temperature", type=float, help="[0.6]")
@click.option("--top-p", type=float, help="[1.0]")
@click.option("--max-new-tokens", type=int, help="[1024]")
@click.option("--max-problems", type=int, help="Evaluate the first N problems of each file.")
@CHAT_TEMPLATE
@click.option("--engine", type=click.Choice(["auto", "transformers", "vllm"]), help="[auto: vLLM on a GPU]")
@click.option("--batch-size", type=int)
@click.option("--device", help="cpu, cuda or cuda:N for the transformers engine. [auto: cuda when a GPU is visible]")
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16"]),
              help="[auto: float32 on the CPU, the checkpoint's dtype on a GPU]")
@click.option("--seed", type=int)
@click.option("--overwrite/--no-overwrite", default=None)
@click.option("--trust-remote-code/--no-trust-remote-code", default=None)
@click.option("--progress/--no-progress", default=None, help="Progress bars and resume messages. [on]")
def eval_command(config_path: str | None, checkpoints: tuple[str, ...], data: tuple[str, ...],
                 pass_k: str | None, **options) -> None:
    """Sample K answers per problem; report Pass@1 (averaged over samples) and pass@k."""
    from rejuv.evaluate import EvalConfig, format_table, run_eval

    options["checkpoints"] = list(checkpoints) or None
    options["data"] = list(data) or None
    if pass_k:
        try:
            options["pass_k"] = [int(k) for k in pass_k.split(",") if k.strip()]
        except ValueError:
            raise click.ClickException(f"--pass-k takes integers like 1,4; got {pass_k!r}") from None
    _, report = _run(EvalConfig, run_eval, options, config_path)
    click.echo(format_table(report))


@main.command("diagnose")
@click.argument("checkpoints", nargs=-1)
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True))
@click.option("--base", help="Base model folder the checkpoints were trained from.")
@click.option("--calib", help="Calibration JSONL (prompt/response or messages), e.g. held-out SFT data.")
@click.option("--eval", "eval_", help="Benchmark (problem/answer rows): adds pass@1, pass@k and their gap.")
@click.option("--k", type=int, help="k of pass@k. [8]")
@click.option("--samples", type=int, help="Samples drawn per problem. [k]")
@click.option("--max-problems", type=int)
@click.option("--max-new-tokens", type=int, help="[512]")
@CHAT_TEMPLATE
@click.option("--max-samples", type=int, help="Calibration rows used. [64]")
@click.option("--out", help="Report folder: report.json, report.html, PNG plots.")
@click.option("--name", "names", multiple=True, help="Label per checkpoint, in order (default: folder names).")
@_checkpoint_pass_options
def diagnose_command(config_path: str | None, checkpoints: tuple[str, ...], eval_: str | None,
                     names: tuple[str, ...], **options) -> None:
    """Parameter drift, token entropy, top-1 mass, NLL and pass@k gap of checkpoints against their base."""
    from rejuv.diagnose import DiagnoseConfig, run_diagnose

    options.update(checkpoints=list(checkpoints) or None, eval=eval_, names=list(names) or None)
    _, report = _run(DiagnoseConfig, run_diagnose, options, config_path)
    for e in sorted(report["checkpoints"], key=lambda e: e["rank"]):
        verdict = "OVER-TRAINED: " + "; ".join(e["signals"].values()) if e["flagged"] else "ok"
        click.echo(f"{e['rank']}. {e['name']}: entropy {e['outputs']['mean_entropy']:.3f} nats, "
                   f"drift {e['params']['model']['rel'] or 0:.4f}  [{verdict}]")
    click.echo(f"report: {Path(options['out'] or report['config']['out']) / 'report.html'}")


def _floats(text: str | None, option: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.ClickException(f"{option} takes numbers like 0.3,0.5; got {text!r}") from None


@main.command("plan")
@click.argument("checkpoints", nargs=-1)
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True))
@click.option("--base", help="Base model folder the checkpoints were trained from.")
@click.option("--checkpoints", "checkpoint_list", help="Comma-separated checkpoints (or give them as arguments).")
@click.option("--name", "names", multiple=True, help="Label per checkpoint, in order (default: folder names).")
@click.option("--calib", help="Calibration JSONL (prompt/response or messages), e.g. held-out SFT data.")
@click.option("--probe-data", help="RL prompts with answers for the probes (JSONL/parquet).")
@click.option("--eval-data", help="Problems for pass@1 / pass@k. [the probe data]")
@click.option("--reward", "rewards", multiple=True, help="Reward name or module:function (repeatable). [math_verify]")
@click.option("--budget-steps", type=int, help="GRPO steps per probe. [30]")
@click.option("--alphas", help="α grid of the search, comma-separated. [0.3,0.5,0.7,0.9]")
@click.option("--rhos", help="ρ grid of the search (0 = fusion only). [0,0.01]")
@click.option("--search-on", help="Checkpoint (name or path) the α/ρ search runs on. [the last]")
@click.option("--probe-top", type=int, help="Search candidates that get an RL probe. [2]")
@click.option("--keep-candidates/--no-keep-candidates", default=None, help="Keep the searched candidates' weights.")
@click.option("--learning-rate", type=float, help="Probe learning rate. [1e-6]")
@click.option("--num-generations", type=int, help="Probe samples per prompt. [8]")
@click.option("--prompts-per-step", type=int, help="Probe prompts per step. [4]")
@click.option("--max-completion-length", type=int, help="Probe completion tokens. [512]")
@click.option("--samples", type=int, help="Evaluation samples per problem. [4]")
@click.option("--k", type=int, help="k of pass@k. [4]")
@click.option("--max-problems", type=int, help="Evaluation problems. [64]")
@click.option("--max-new-tokens", type=int, help="Evaluation completion tokens. [512]")
@CHAT_TEMPLATE
@click.option("--max-samples", type=int, help="Calibration rows used. [64]")
@click.option("--out", help="Plan folder: plan.json, plan.html, PNG plots, and the runs behind them.")
@_checkpoint_pass_options
def plan_command(config_path: str | None, checkpoints: tuple[str, ...], checkpoint_list: str | None,
                 names: tuple[str, ...], rewards: tuple[str, ...], alphas: str | None, rhos: str | None,
                 **options) -> None:
    """Which checkpoint to hand to RL, and which α/ρ: cheap signals checked against short RL probes."""
    from rejuv.plan import PlanConfig, run_plan

    given = list(checkpoints) + [c.strip() for c in (checkpoint_list or "").split(",") if c.strip()]
    options.update(checkpoints=given or None, names=list(names) or None, rewards=list(rewards) or None,
                   alphas=_floats(alphas, "--alphas"), rhos=_floats(rhos, "--rhos"))
    _, plan = _run(PlanConfig, run_plan, options, config_path)
    rec = plan["recommendation"]
    how = "as it is" if rec["kind"] == "checkpoint" else f"{rec['kind']} from {rec['from']} (α {rec['alpha']:g}, " \
        f"ρ {rec['rho']:g}): {rec['command']}"
    click.echo(f"recommended: {rec['name']} {how}")
    click.echo(f"  certainty: {rec['uncertainty']['text']}")
    click.echo(f"  diagnose: {rec['diagnose']['text']}")
    for name, rho in plan["correlations_with_probe"].items():
        click.echo(f"  Spearman({name}, probe) = {'n/a' if rho is None else f'{rho:+.2f}'}")
    click.echo(f"plan: {Path(options['out'] or plan['config']['out']) / 'plan.html'}")


@main.command("export-verl")
@click.option("--data", required=True, help="RL prompts with answers (JSONL/parquet).")
@click.option("--val", help="Validation prompts with answers.")
@click.option("--out", required=True, help="Output folder.")
@click.option("--model", help="Starting checkpoint (e.g. a rejuvenated one), written into the overrides.")
@click.option("--data-source", default="rejuv", show_default=True)
@click.option("--ability", default="math", show_default=True)
@click.option("--system-prompt", help="Prepended as a system message.")
@click.option("--overwrite", is_flag=True)
def export_verl_command(**options) -> None:
    """Write parquet + reward.py for verl's GRPO trainer, and the overrides that use them."""
    from rejuv.export_verl import export_verl

    try:
        summary = export_verl(**options)
    except RejuvError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(summary, indent=2))


@main.command("demo")
@click.option("--preset", type=click.Choice(["smoke", "small", "planner", "full"]), default="small", show_default=True,
              help="smoke: a minute's plumbing check, no claims; small: the experiment, 3 seeds, within 30 min on 2 "
              "cores; planner: small plus rejuv plan against full RL over 6 seeds; full: for a GPU.")
@click.option("--seeds", help="Comma-separated seeds (default: the preset's).")
@click.option("--arms", help=f"Comma-separated arms ({', '.join(ARMS)}), or 'all'. [{','.join(DEFAULT_ARMS)}]")
@click.option("--out", default="runs/demo", show_default=True)
@click.option("--device", help="cpu or cuda (the preset's by default).")
@click.option("--overwrite", is_flag=True, help="Discard an existing demo with other settings.")
def demo_command(preset: str, seeds: str | None, arms: str | None, out: str, device: str | None,
                 overwrite: bool) -> None:
    """The lab: base → ModSFT/OverSFT → α, ρ by rule → fusion/Rejuvenation → GRPO → eval, with a report."""
    from rejuv.lab.demo import run_demo

    try:
        seed_list = [int(s) for s in seeds.split(",")] if seeds else None
    except ValueError:
        raise click.ClickException(f"--seeds takes integers like 0,1,2; got {seeds!r}") from None
    arm_list = tuple(a.strip() for a in arms.split(",")) if arms else DEFAULT_ARMS
    if arm_list == ("all",):
        arm_list = ARMS
    try:
        report = run_demo(preset, out, seed_list, arm_list, overwrite, device)
    except RejuvError as exc:
        raise click.ClickException(str(exc)) from None
    from rejuv.lab.report import markdown_table

    click.echo(markdown_table(report["table"], tuple(report["arms"])))
    for claim in report["premise"] + report["claims"]:
        click.echo("- " + claim["text"])
    click.echo(f"report: {Path(out) / 'report.html'}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
