"""Plasticity signals during training, as a TrainerCallback any transformers or TRL trainer takes
(`Trainer`, `SFTTrainer`, `GRPOTrainer`); `rejuv sft` and `rejuv rl` use this one.

The paper's diagnosis of lost plasticity is a large gradient norm that does not turn into parameter movement.
Each optimizer step (or every `every` steps) this records, for the trainable parameters: the gradient norm
(as the trainer reports it, before clipping), the size of this step's update and their ratio, and the
distance from the initial policy (L2, relative to the initial norm, and the share of entries that changed at
all and by more than 1e-5 relative); beside them what the trainer logs itself (TRL's entropy, reward, KL, and
`frac_reward_zero_std`, the share of GRPO groups whose samples all got one reward). Every row goes to a JSONL
file (`plasticity.jsonl` in the trainer's output folder unless `path` says otherwise) and, under the stable
names `plasticity/*`, to the trainer's own trackers (console, `report_to`).

It also runs the two-stage screen of arXiv 2606.18487:
- before training, with `screen_prompts`, the start's entropy: the mean entropy of the next-token distribution
  along completions it samples at temperature 1 (`screen_tokens` each); below `entropy_floor` (0.18 nats) is a
  warning: such a start explores too little for RL;
- during training, from the entropy the trainer logs: when it falls below `1 − collapse_share` (a half) of the
  first logged value within the first `collapse_window` (150) steps, a warning, and with
  `stop_on_collapse` the run stops with a clear message, the trainer asked to save its state.
With a trainer that logs no entropy (a plain `Trainer`), the second stage does not run: it says so once.

It keeps two float32 copies of the trainable parameters on the CPU (initial and previous step); for a large
full fine-tune, log every N steps or use LoRA. `PlasticityCallback.attach(trainer, ...)` adds it ahead of the
trackers' own callbacks, so that they report what it adds to the logs.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from transformers import TrainerCallback

from rejuv.errors import warn
from rejuv.io.jsonl import read_jsonl, write_jsonl

_FROM_LOGS = ("loss", "reward", "reward_std", "kl", "entropy", "learning_rate", "completions/mean_length",
              "frac_reward_zero_std", "chord/mu", "chord/sft_loss", "filter/dropped_share")
ENTROPY_FLOOR = 0.18  # nats; arXiv 2606.18487's pre-RL screen
# What the callback adds to the trainer's logs, under stable names, from its own row.
TRACKED = {"update_l2": "plasticity/update_l2", "drift_l2": "plasticity/drift_l2", "drift_rel": "plasticity/drift_rel",
           "frac_changed": "plasticity/frac_changed", "update_per_grad": "plasticity/update_per_grad",
           "entropy": "plasticity/entropy", "frac_reward_zero_std": "plasticity/dead_groups"}


@torch.no_grad()
def sampled_entropy(model, prompts: list[list[int]], tokens: int = 32, seed: int = 0) -> float:
    """The mean entropy (nats) of the model's next-token distributions along completions it samples at
    temperature 1 from each prompt (token ids), `tokens` at most each: how much a policy explores."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    # sampling must not move the training's random streams: the run's bytes do not depend on the screen
    cpu_state = torch.random.get_rng_state()
    cuda_state = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    torch.manual_seed(seed)
    total, count = 0.0, 0
    try:
        for ids in prompts:
            out = model.generate(torch.tensor([ids], device=device), do_sample=True, temperature=1.0, top_k=0,
                                 top_p=1.0, max_new_tokens=tokens, output_logits=True, return_dict_in_generate=True,
                                 pad_token_id=model.config.eos_token_id)
            for logits in out.logits:
                logp = torch.log_softmax(logits[0].float(), dim=-1)
                total += float(-(logp.exp() * logp).sum())
                count += 1
    finally:
        torch.random.set_rng_state(cpu_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state_all(cuda_state)
        model.train(was_training)
    return total / count if count else math.nan


class PlasticityCallback(TrainerCallback):
    def __init__(self, path: str | Path | None = None, every: int = 1, screen_prompts: list[list[int]] | None = None,
                 screen_tokens: int = 32, entropy_floor: float = ENTROPY_FLOOR, collapse_share: float = 0.5,
                 collapse_window: int = 150, stop_on_collapse: bool = False, seed: int = 0):
        self.path = None if path is None else Path(path)
        self.every = max(1, int(every))
        self.screen_prompts, self.screen_tokens, self.seed = screen_prompts or [], screen_tokens, seed
        self.entropy_floor, self.collapse_share, self.collapse_window = entropy_floor, collapse_share, collapse_window
        self.stop_on_collapse = stop_on_collapse
        self.initial: dict[str, torch.Tensor] = {}
        self.previous: dict[str, torch.Tensor] = {}
        self.pending: dict | None = None
        self.initial_norm = 0.0
        # what the screen found, for the run's summary
        self.screen: dict = {"start_entropy": None, "start_below_floor": None, "first_logged_entropy": None,
                             "collapse_step": None, "stopped": False, "logged_entropy": None}

    @classmethod
    def attach(cls, trainer, **options) -> PlasticityCallback:
        """A callback added to `trainer` ahead of every other one, trackers included, so that they report what
        it adds to the logs; returns it."""
        callback = cls(**options)
        trainer.add_callback(callback)
        first_in_line(trainer, callback)
        return callback

    @staticmethod
    def _trainable(model) -> dict[str, torch.Tensor]:
        return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        params = self._trainable(model)
        self.initial = {n: p.float().cpu().clone() for n, p in params.items()}
        self.previous = {n: t.clone() for n, t in self.initial.items()}
        self.initial_norm = math.sqrt(sum(float(t.double().pow(2).sum()) for t in self.initial.values()))
        if self.path is None:
            self.path = Path(args.output_dir) / "plasticity.jsonl"
        if state.is_world_process_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("")
        if self.screen_prompts:
            start = sampled_entropy(model, self.screen_prompts, self.screen_tokens, self.seed)
            self.screen.update(start_entropy=start, start_below_floor=start < self.entropy_floor)
            if start < self.entropy_floor and state.is_world_process_zero:
                warn(f"entropy screen: the start's entropy is {start:.3f} nats on {len(self.screen_prompts)} "
                     f"prompts, below {self.entropy_floor} (arXiv 2606.18487's pre-RL screen): it explores too "
                     "little for RL to improve it much; consider an earlier checkpoint or `rejuv apply`")

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
        logs = logs if logs is not None else {}
        self._watch_entropy(state, control, logs)
        if self.pending is None or not state.is_world_process_zero:
            return control
        row = dict(self.pending)
        row["grad_norm"] = float(logs["grad_norm"]) if "grad_norm" in logs else None
        row["update_per_grad"] = (row["update_l2"] / row["grad_norm"]) if row["grad_norm"] else None
        for key in _FROM_LOGS:
            if key in logs:
                row[key.replace("/", "_")] = float(logs[key])
        if self.screen["collapse_step"] == row["step"]:
            row["screen"] = "entropy collapse" + (": training stopped" if self.screen["stopped"] else "")
        write_jsonl(self.path, [row], append=True)
        # The same figures through the trainer's own channel (the console and `--report-to` trackers), which
        # sees them when the callback runs before the trackers' own (`attach`, `first_in_line`).
        for key, name in TRACKED.items():
            if row.get(key) is not None:
                logs[name] = row[key]
        self.pending = None
        return control

    def _watch_entropy(self, state, control, logs: dict) -> None:
        """The screen's second stage: entropy falling by more than `collapse_share` within the window."""
        entropy = logs.get("entropy")
        if entropy is None:
            return
        entropy = float(entropy)
        self.screen["logged_entropy"] = entropy
        first = self.screen["first_logged_entropy"]
        if first is None:
            self.screen["first_logged_entropy"] = entropy
            return
        if (self.screen["collapse_step"] is None and state.global_step <= self.collapse_window
                and entropy < (1.0 - self.collapse_share) * first):
            self.screen["collapse_step"] = state.global_step
            stop = self.stop_on_collapse
            if state.is_world_process_zero:
                warn(f"entropy screen: entropy fell from {first:.3f} to {entropy:.3f} nats by step "
                     f"{state.global_step}, more than {self.collapse_share:.0%} within the first "
                     f"{self.collapse_window} steps (arXiv 2606.18487): the policy is collapsing"
                     + ("; training stops here and its state is saved" if stop else ""))
            if stop:
                self.screen["stopped"] = True
                control.should_training_stop = True
                control.should_save = True

    def on_train_end(self, args, state, control, **kwargs):
        if self.screen["first_logged_entropy"] is None and state.is_world_process_zero:
            warn("entropy screen: the trainer logged no entropy, so its fall during training was not watched")


def first_in_line(trainer, callback: TrainerCallback) -> None:
    """Run `callback` before every other one (trackers included), so what it adds to the logs is reported."""
    trainer.callback_handler.callbacks.remove(callback)
    trainer.callback_handler.callbacks.insert(0, callback)


def read_plasticity_log(path: str | Path) -> list[dict]:
    return read_jsonl(path)
