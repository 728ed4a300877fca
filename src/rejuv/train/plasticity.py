"""Per-step plasticity signals during training, as a TrainerCallback.

The paper's diagnosis of lost plasticity is a large gradient norm that does not
turn into parameter movement. Each optimizer step this logs, for the trainable
parameters: the gradient norm (as the trainer reports it, before clipping), the
size of this step's update, and the distance from the initial policy (L2,
relative to the initial norm, and the share of entries that changed at all and
by more than 1e-5 relative). TRL's own reward, KL and entropy go in the same row.

It keeps two float32 copies of the trainable parameters on the CPU (initial and
previous step); for a large full fine-tune, log every N steps or use LoRA.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from transformers import TrainerCallback

from rejuv.io.jsonl import read_jsonl, write_jsonl

_FROM_LOGS = ("loss", "reward", "reward_std", "kl", "entropy", "learning_rate", "completions/mean_length",
              "frac_reward_zero_std", "chord/mu", "chord/sft_loss", "filter/dropped_share")


class PlasticityCallback(TrainerCallback):
    def __init__(self, path: str | Path, every: int = 1):
        self.path = Path(path)
        self.every = max(1, int(every))
        self.initial: dict[str, torch.Tensor] = {}
        self.previous: dict[str, torch.Tensor] = {}
        self.pending: dict | None = None
        self.initial_norm = 0.0

    @staticmethod
    def _trainable(model) -> dict[str, torch.Tensor]:
        return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        params = self._trainable(model)
        self.initial = {n: p.float().cpu().clone() for n, p in params.items()}
        self.previous = {n: t.clone() for n, t in self.initial.items()}
        self.initial_norm = math.sqrt(sum(float(t.double().pow(2).sum()) for t in self.initial.values()))
        if state.is_world_process_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("")

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every:
            return
        drift_sq = update_sq = 0.0
        changed = changed_tol = total = 0
        for name, p in self._trainable(model).items():
            now = p.float().cpu()
            delta = now - self.initial[name]
            drift_sq += float(delta.double().pow(2).sum())
            update_sq += float((now - self.previous[name]).double().pow(2).sum())
            changed += int((delta != 0).sum())
            changed_tol += int((delta.abs() > 1e-5 * self.initial[name].abs().clamp_min(1e-12)).sum())
            total += delta.numel()
            self.previous[name] = now.clone()
        self.pending = {
            "step": state.global_step,
            "update_l2": math.sqrt(update_sq),
            "drift_l2": math.sqrt(drift_sq),
            "drift_rel": math.sqrt(drift_sq) / self.initial_norm if self.initial_norm else 0.0,
            "frac_changed": changed / total if total else 0.0,
            "frac_changed_rel1e-5": changed_tol / total if total else 0.0,
        }

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.pending is None or not state.is_world_process_zero:
            return
        row = dict(self.pending)
        logs = logs if logs is not None else {}
        row["grad_norm"] = float(logs["grad_norm"]) if "grad_norm" in logs else None
        row["update_per_grad"] = (row["update_l2"] / row["grad_norm"]) if row["grad_norm"] else None
        for key in _FROM_LOGS:
            if key in logs:
                row[key.replace("/", "_")] = float(logs[key])
        write_jsonl(self.path, [row], append=True)
        # The same figures through the trainer's own channel (the console and `--report-to` trackers), which
        # sees them because `first_in_line` puts this callback before the trackers' own.
        for key in ("update_l2", "drift_l2", "drift_rel", "frac_changed", "update_per_grad"):
            if row.get(key) is not None:
                logs[f"plasticity/{key}"] = row[key]
        self.pending = None


def first_in_line(trainer, callback: TrainerCallback) -> None:
    """Run `callback` before every other one (trackers included), so what it adds to the logs is reported."""
    trainer.callback_handler.callbacks.remove(callback)
    trainer.callback_handler.callbacks.insert(0, callback)


def read_plasticity_log(path: str | Path) -> list[dict]:
    return read_jsonl(path)
