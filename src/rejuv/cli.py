"""The `rejuv` command. Subcommands parse options (and an optional YAML config) and call a recipe.

Precedence: built-in defaults < `--config x.yaml` < options given on the command line.
"""

from __future__ import annotations

import json
import sys
from dataclasses import MISSING, fields
from pathlib import Path

import click
import yaml

from rejuv import __version__
from rejuv.errors import RejuvError


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


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="rejuv")
def main() -> None:
    """Diagnose and rejuvenate over-trained SFT checkpoints before RL."""


@main.command("apply")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True),
              help="YAML file with any of these options (command-line values win).")
@click.option("--base", help="Base (pre-trained) model folder.")
@click.option("--sft", help="Fine-tuned model folder (its config and tokenizer are copied).")
@click.option("--calib", help="Calibration JSONL: prompt/response (or completion) rows, or chat messages.")
@click.option("--out", help="Output folder (written atomically).")
@click.option("--alpha", type=float, help="Fusion weight of the SFT model, in [0, 1]. [default: 0.5]")
@click.option("--rho", type=float, help="Share of all neurons reset per target token. [default: 0.01]")
@click.option("--targets-per-sample", type=int, help="Positions with the largest entropy gap, per sample. [8]")
@click.option("--max-samples", type=int, help="Calibration rows used (chosen with --seed). [64]")
@click.option("--max-length", type=int, help="Truncate calibration sequences to this many tokens. [2048]")
@click.option("--target-token", type=click.Choice(["gold", "argmax"]), help="Token attributed. [gold]")
@click.option("--ranking", type=click.Choice(["global", "per-module"]), help="Neuron ranking. [global]")
@click.option("--fusion-only/--with-reset", default=None, help="Only fuse; skip attribution and reset.")
@click.option("--seed", type=int, help="Seed for calibration sampling. [0]")
@click.option("--device", help="cpu, cuda or cuda:N for the calibration passes. [cpu]")
@click.option("--dtype", help="Compute dtype of the calibration passes (scores accumulate in float32). [float32]")
@click.option("--batch-size", type=int, help="Calibration samples per forward pass. [8]")
@click.option("--max-shard-size", help="Largest output shard, e.g. 5GB or 500MB. [5GB]")
@click.option("--overwrite/--no-overwrite", default=None, help="Replace an existing output folder.")
@click.option("--allow-pickle/--no-allow-pickle", default=None,
              help="Accept pytorch_model*.bin weights (pickle) when no safetensors exist.")
@click.option("--trust-remote-code/--no-trust-remote-code", default=None, help="Run model code from the folder.")
@click.option("--progress/--no-progress", default=None, help="Show progress bars. [on]")
def apply_command(config_path: str | None, **options) -> None:
    """Fuse SFT with base, then reset the neurons that drive over-confident logits.

    Writes a save_pretrained folder plus rejuvenation.json, and prints the manifest summary as JSON.
    """
    from rejuv.apply import ApplyConfig, run_apply

    try:
        cfg = merge_options(ApplyConfig, options, config_path)
        manifest = run_apply(cfg)
    except RejuvError as exc:
        raise click.ClickException(str(exc)) from exc
    summary = {k: manifest[k] for k in ("alpha", "rho", "neurons_total", "neurons_reset",
                                        "effective_reset_ratio", "entropy", "dla_reconstruction_error")}
    summary["out"] = cfg.out
    click.echo(json.dumps(summary, indent=2))


@main.command("demo")
@click.option("--preset", type=click.Choice(["smoke", "small", "full"]), default="small", show_default=True)
@click.option("--out", default="runs/demo", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def demo_command(preset: str, out: str, seed: int) -> None:
    """The lab: the paper's experiment in miniature (not built yet; see issue 5)."""
    click.echo("rejuv demo: the lab (SFT -> rejuvenation -> GRPO -> evaluation on a built-in task) is not "
               "built yet; it lands with the lab issue. Meanwhile `rejuv apply --help` shows what works.")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
