"""`rejuv sft`: supervised fine-tuning on TRL's SFTTrainer, saving chosen epochs.

Defaults follow the paper's protocol (appendix B): AdamW, constant learning
rate 3e-6, no warm-up, no decay, no weight decay, so over-training can show its
full effect. `loss: dft` switches TRL's loss to Dynamic Fine-Tuning (each
token's NLL weighted by its detached probability), the paper's baseline;
`loss: pear` to PEAR's importance-weighted NLL (train/pear.py).

Rows become token ids by the rule every command shares (`rejuv.data.prompts`: the
chat template when the tokenizer has one, unless `chat_template` says otherwise),
and the tokenized rows are handed to TRL, so training sees exactly the prompt ids
that `rl`, `eval` and `diagnose` use; the loss covers the response tokens.

Precision (`train/common.py`): float32 master weights whatever the checkpoint's
dtype (bf16 autocast on a GPU that has it), saved in the input's dtype unless
`save_dtype` says otherwise; pure bf16 training only with `master_dtype: bfloat16`.

Output (`out/`, written to a temporary sibling and renamed at the end):
`epoch-<e>/` for every epoch in `save_epochs` (full save_pretrained folders with
tokenizer), `train_log.jsonl` (the trainer's log history), `sft_config.json`
(the options and the precision used).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from rejuv.data.prompts import sequence_ids, uses_template
from rejuv.data.rows import sft_rows
from rejuv.errors import RejuvError, warn
from rejuv.io.inputs import sources
from rejuv.io.jsonl import strict_dumps
from rejuv.io.output import claimed_output
from rejuv.modeling import check_model_path, config_positions, load_tokenizer
from rejuv.options import OptionError, Recipe, option, recorded, settings_for
from rejuv.train.common import (
    Optimisation,
    TrainingConfig,
    epoch_dir_name,
    finish_run,
    lora_config,
    make_trl_config,
    quiet_libraries,
    save_epoch_list,
    save_model,
    say_what_saving_kept,
    shared_trainer_args,
    silence,
    start_model,
    training_model,
    training_output_dir,
    training_precision,
)
from rejuv.train.plasticity import PlasticityCallback, first_in_line

LOSSES = ("nll", "dft", "pear")


@dataclass
class SFTRecipeConfig(TrainingConfig):
    """Supervised fine-tuning on TRL (constant LR, no warm-up or weight decay by default)."""

    learning_rate: float = option(3e-6, help="Learning rate (constant by default, as in the paper).", above=0)
    loss: str = option("nll", choices=LOSSES, help="Cross-entropy, Dynamic Fine-Tuning, or PEAR's "
                       "importance-weighted NLL.")
    pear_variant: str = option("token", choices=("token", "block", "sequence"), help="PEAR's weighting unit.")
    pear_clip: float = option(2.0, help="Bound on |log w| of the PEAR weights.", above=0)
    pear_gamma: float = option(0.9, help="Discount of PEAR's block (suffix) variant.", at_least=0, at_most=1)
    pear_behavior_model: str | None = option(None, help="The model that generated the SFT data.",
                                             default_text="none: deterministic data", path="checkpoint")
    save_epochs: list[float] = option([2.0], help="Epochs to save, comma-separated (fractions allowed).", above=0,
                                      nonempty=True)
    epochs: float | None = option(None, help="Train this long.", default_text="the last save epoch", above=0)
    lr_scheduler: str = option("constant", help="Learning-rate schedule (a transformers scheduler name).")
    warmup_steps: float = option(0, help="Warm-up steps, or a share of all steps if in (0, 1).", at_least=0)
    weight_decay: float = option(0.0, help="AdamW weight decay.", at_least=0)
    max_length: int = option(1024, help="Truncate sequences to this many tokens (and to the model's positions).",
                             at_least=2)
    plasticity_log: bool = option(False, help="Log gradient norm / update size per step, as `rejuv rl` does.")

    def check(self) -> None:
        super().check()
        if self.epochs is not None and max(self.save_epochs) > self.epochs:
            raise OptionError("save_epochs", f"go up to {max(self.save_epochs):g} but training stops at epoch "
                              f"{self.epochs:g}", also=("epochs",))


def _make_epoch_saver(save_epochs: list[float], root: Path, dtype: str, start: str):
    from transformers import TrainerCallback

    class EpochSaver(TrainerCallback):
        """Saves a full checkpoint when training reaches each requested epoch (fractions allowed)."""

        def __init__(self):
            self.trainer = None
            self.at_step: dict[int, float] = {}
            self.kept: dict[float, float | None] = {}

        def on_train_begin(self, args, state, control, **kwargs):
            steps_per_epoch = state.max_steps / args.num_train_epochs
            self.at_step = {max(1, round(e * steps_per_epoch)): e for e in save_epochs}

        def on_step_end(self, args, state, control, **kwargs):
            epoch = self.at_step.get(state.global_step)
            if epoch is not None:
                self.kept[epoch] = save_model(self.trainer, root / epoch_dir_name(epoch), dtype, start=start)

    return EpochSaver()


def _pear_extras(cfg: SFTRecipeConfig) -> tuple[type | None, dict]:
    if cfg.loss != "pear":
        return None, {}
    from rejuv.train.pear import PearSettings, pear_trainer_class

    behavior = None
    if cfg.pear_behavior_model is not None:
        import torch

        from rejuv.modeling import load_frozen_model

        device = "cuda" if torch.cuda.is_available() else "cpu"
        behavior = load_frozen_model(cfg.pear_behavior_model, "float32", device, cfg.trust_remote_code,
                                     cfg.allow_pickle, progress=False)
    settings = PearSettings(cfg.pear_variant, cfg.pear_clip, cfg.pear_gamma)
    return pear_trainer_class(), {"pear": settings, "behavior_model": behavior}


def tokenized_dataset(path: str, tokenizer, chat_template: str) -> tuple[list[dict], bool]:
    """Rows as TRL-ready token ids (`input_ids`, and `completion_mask` for prompt/response rows); whether the
    chat template was used."""
    templated = uses_template(tokenizer, chat_template, path)
    rows = []
    for where, record in sft_rows(path):
        ids, start = sequence_ids(record, tokenizer, templated, where)
        rows.append({"input_ids": ids} if "text" in record else
                    {"input_ids": ids, "completion_mask": [0] * start + [1] * (len(ids) - start)})
    return rows, templated


def _length_limit(cfg: SFTRecipeConfig, rows: list[dict]) -> int:
    """Rows are cut to `max_length` and to the model's positions; a warning counts the rows that are cut."""
    positions = config_positions(cfg.model)
    limit = min(cfg.max_length, positions) if positions else cfg.max_length
    cut = sum(len(r["input_ids"]) > limit for r in rows)
    if cut:
        why = f"max_length {cfg.max_length}" if limit == cfg.max_length else f"the model's {limit} positions"
        warn(f"sft: {cut} of {len(rows)} rows of {cfg.data} are longer than {why} and are cut to {limit} tokens")
    return limit


def run_sft(cfg: SFTRecipeConfig) -> dict:
    """Train; returns a summary (paths of the saved epochs, first and last logged loss)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    with claimed_output(cfg, "sft") as out:
        return _sft(cfg, out, SFTConfig, SFTTrainer, Dataset)


def _sft(cfg: SFTRecipeConfig, out: Path, SFTConfig, SFTTrainer, Dataset) -> dict:  # noqa: N803 (TRL's classes)
    save_epochs = save_epoch_list(cfg.save_epochs)
    epochs = float(cfg.epochs) if cfg.epochs is not None else save_epochs[-1]
    check_model_path(cfg.model, cfg.trust_remote_code, cfg.allow_pickle)
    if cfg.loss == "pear" and cfg.pear_behavior_model is not None:
        check_model_path(cfg.pear_behavior_model, cfg.trust_remote_code, cfg.allow_pickle)
    precision = training_precision(cfg.dtype, cfg.master_dtype, cfg.save_dtype, cfg.model)
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    rows, templated = tokenized_dataset(cfg.data, tokenizer, cfg.chat_template)
    max_length = _length_limit(cfg, rows)

    with training_output_dir(out, cfg.overwrite, "sft") as tmp, quiet_libraries(cfg.progress):
        optimisation = settings_for(Optimisation, cfg)
        values = dict(
            shared_trainer_args(optimisation, tmp, precision), num_train_epochs=epochs,
            lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay,
            max_length=max_length,
            loss_type="nll" if cfg.loss == "pear" else cfg.loss,
            completion_only_loss="completion_mask" in rows[0],
        )
        args = make_trl_config(SFTConfig, values, cfg.trl_args, "sft")
        saver = _make_epoch_saver(save_epochs, tmp, precision.saved, cfg.model)
        plasticity = PlasticityCallback(tmp / "plasticity.jsonl") if cfg.plasticity_log else None
        callbacks = [saver] + ([plasticity] if plasticity else [])
        trainer_class, extras = _pear_extras(cfg)
        model = training_model(start_model(cfg), args, precision)
        try:
            trainer = (trainer_class or SFTTrainer)(
                model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                peft_config=lora_config(optimisation), callbacks=callbacks, **extras)
        except (ValueError, KeyError) as exc:
            raise RejuvError(f"sft: the trainer refused the set-up ({exc})") from exc
        if plasticity:
            first_in_line(trainer, plasticity)
        if not cfg.progress:
            silence(trainer)
        saver.trainer = trainer
        trainer.train()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        finish_run(trainer, tmp, {**recorded(cfg), "sources": sources(cfg)}, "sft_config.json",
                   precision.statement(templated))
        for epoch, kept in saver.kept.items():
            say_what_saving_kept(kept, precision.saved, f"sft: epoch {epoch:g}")
        missing = [e for e in save_epochs if not (tmp / epoch_dir_name(e)).is_dir()]
        if missing:
            raise RejuvError(f"sft: training ended before epoch(s) {missing} were reached")
    return {
        "out": str(out),
        "epochs": {e: os.path.join(str(out), epoch_dir_name(e)) for e in save_epochs},
        "steps": trainer.state.global_step,
        "first_loss": losses[0] if losses else math.nan,
        "last_loss": losses[-1] if losses else math.nan,
        "update_kept_when_saved": {f"{e:g}": kept for e, kept in saver.kept.items()},
        **precision.statement(templated),
    }


RECIPE = Recipe(SFTRecipeConfig, run_sft, lambda cfg, summary: strict_dumps(summary))
