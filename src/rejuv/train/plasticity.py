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

Its arguments are a checked config (`PlasticitySettings`): a value the screen could never act on (a negative
floor, a share outside (0, 1), a flag given as text, prompts given as text or out of the model's vocabulary) is
refused naming the argument, before training starts. Its state is per training run: each run starts a fresh
log in its own output folder; a run resumed from a checkpoint keeps the log's rows up to the checkpoint's step
and appends (drift is then measured from the resumed weights, which each row states as `drift_from_step`); one
trainer takes one such callback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import TrainerCallback

from rejuv.errors import RejuvError, warn
from rejuv.io.jsonl import read_jsonl, write_jsonl
from rejuv.io.records import strict_loads
from rejuv.options import Config, OptionError, option, seed_option

_FROM_LOGS = ("loss", "reward", "reward_std", "kl", "entropy", "learning_rate", "completions/mean_length",
              "frac_reward_zero_std", "dead_groups/outcome", "chord/mu", "chord/sft_loss", "filter/dropped_share")
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


def _token_prompts(prompts: list) -> list[list[int]]:
    """Screen prompts are token ids: a list of non-empty lists of non-negative integers."""
    found = []
    for i, ids in enumerate(prompts):
        if isinstance(ids, str):
            raise RejuvError(f"[{i}] is text ({ids[:20]!r}); give token ids (tokenize the prompts first)")
        if not isinstance(ids, list | tuple) or not ids:
            raise RejuvError(f"[{i}] must be a non-empty list of token ids, got {ids!r}"[:120])
        for j, token in enumerate(ids):
            if not isinstance(token, int) or isinstance(token, bool) or token < 0:
                raise RejuvError(f"[{i}][{j}] must be a token id (an integer ≥ 0), got {token!r}")
        found.append(list(ids))
    return found


@dataclass
class PlasticitySettings(Config):
    """What `PlasticityCallback` takes, checked however it is built (its arguments, `rejuv rl`'s options)."""

    path: str | None = option(None, path="output", help="JSONL file of the rows.",
                              default_text="plasticity.jsonl in the trainer's output folder")
    every: int = option(1, help="Record every N optimizer steps.", at_least=1)
    screen_prompts: list | None = option(None, check=_token_prompts, help="Token ids of the prompts the start's "
                                         "entropy is sampled from (none: no pre-training screen).")
    screen_tokens: int = option(32, help="Tokens sampled per screen prompt.", at_least=1)
    entropy_floor: float = option(ENTROPY_FLOOR, help="Start entropy (nats) below which the screen warns.", above=0)
    collapse_share: float = option(0.5, help="Fall of the logged entropy that counts as a collapse.", above=0,
                                   below=1)
    collapse_window: int = option(150, help="Steps within which a collapse is watched for.", at_least=1)
    stop_on_collapse: bool = option(False, help="Stop training (saving its state) on a collapse.")
    seed: int = seed_option("Seed of the screen's sampling.")


_CLAIMS = "_rejuv_plasticity_callbacks"  # on the trainer's state: the callbacks of this run, one at most


class PlasticityCallback(TrainerCallback):
    def __init__(self, path: str | Path | None = None, every: int = 1, screen_prompts: list[list[int]] | None = None,
                 screen_tokens: int = 32, entropy_floor: float = ENTROPY_FLOOR, collapse_share: float = 0.5,
                 collapse_window: int = 150, stop_on_collapse: bool = False, seed: int = 0):
        self.settings = PlasticitySettings(
            path=None if path is None else str(path), every=every, screen_prompts=screen_prompts,
            screen_tokens=screen_tokens, entropy_floor=entropy_floor, collapse_share=collapse_share,
            collapse_window=collapse_window, stop_on_collapse=stop_on_collapse, seed=seed)
        given = self.settings.path
        if given is not None and (not given.strip() or Path(given).is_dir()):
            raise OptionError("path", f"{given!r} is {'a folder' if given.strip() else 'empty'}; give the JSONL "
                              "file to write (or none: plasticity.jsonl in the trainer's output folder)")
        self._start_run(Path(given) if given else None)

    def _start_run(self, path: Path | None) -> None:
        """The state of one training run, fresh."""
        self.path = path
        self.initial: dict[str, torch.Tensor] = {}
        self.previous: dict[str, torch.Tensor] = {}
        self.pending: dict | None = None
        self.initial_norm = 0.0
        self.drift_from_step = 0
        self.last_step: int | None = None
        # what the screen found, for the run's summary
        self.screen: dict = {"start_entropy": None, "start_below_floor": None, "first_logged_entropy": None,
                             "collapse_step": None, "stopped": False, "logged_entropy": None}

    # the settings, as attributes (what a caller reads back)
    every = property(lambda self: self.settings.every)
    screen_prompts = property(lambda self: self.settings.screen_prompts or [])
    screen_tokens = property(lambda self: self.settings.screen_tokens)
    entropy_floor = property(lambda self: self.settings.entropy_floor)
    collapse_share = property(lambda self: self.settings.collapse_share)
    collapse_window = property(lambda self: self.settings.collapse_window)
    stop_on_collapse = property(lambda self: self.settings.stop_on_collapse)
    seed = property(lambda self: self.settings.seed)

    @classmethod
    def attach(cls, trainer, **options) -> PlasticityCallback:
        """A callback added to `trainer` ahead of every other one, trackers included, so that they report what
        it adds to the logs; returns it. A trainer takes one."""
        if any(isinstance(c, PlasticityCallback) for c in trainer.callback_handler.callbacks):
            raise RejuvError("PlasticityCallback.attach: this trainer already has a PlasticityCallback; one per "
                             "trainer (a second would log every step twice)")
        callback = cls(**options)
        trainer.add_callback(callback)
        first_in_line(trainer, callback)
        return callback

    @staticmethod
    def _trainable(model) -> dict[str, torch.Tensor]:
        return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._claim(state)
        self._check_prompts(model)
        self._start_run(Path(self.settings.path) if self.settings.path else Path(args.output_dir) / "plasticity.jsonl")
        params = self._trainable(model)
        self.initial = {n: p.float().cpu().clone() for n, p in params.items()}
        self.previous = {n: t.clone() for n, t in self.initial.items()}
        self.initial_norm = math.sqrt(sum(float(t.double().pow(2).sum()) for t in self.initial.values()))
        self.drift_from_step = state.global_step  # a resumed run: from the weights it resumed with
        if state.is_world_process_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            kept = self._rows_before(state.global_step) if state.global_step else []
            write_jsonl(self.path, kept)
            for row in kept:  # the screen goes on from what the earlier part of the run logged
                if row.get("entropy") is not None:
                    self._watch_entropy(state, control, {"entropy": row["entropy"]}, row["step"], quiet=True)
        if self.screen_prompts and not state.global_step:
            start = sampled_entropy(model, self.screen_prompts, self.screen_tokens, self.seed)
            self.screen.update(start_entropy=start, start_below_floor=start < self.entropy_floor)
            if start < self.entropy_floor and state.is_world_process_zero:
                warn(f"entropy screen: the start's entropy is {start:.3f} nats on {len(self.screen_prompts)} "
                     f"prompts, below {self.entropy_floor} (arXiv 2606.18487's pre-RL screen): it explores too "
                     "little for RL to improve it much; consider an earlier checkpoint or `rejuv apply`")

    def _claim(self, state) -> None:
        """One PlasticityCallback per trainer: a second (or this one added twice) would log every step twice,
        the second time with no update at all."""
        claims = state.__dict__.setdefault(_CLAIMS, [])
        if claims:
            twice = any(c is self for c in claims)
            raise RejuvError("PlasticityCallback: " + ("this callback was added to the trainer twice" if twice else
                             "the trainer has two PlasticityCallbacks") + "; add one (each step would be logged "
                             "twice, the second time with no update)")
        claims.append(self)

    def _check_prompts(self, model) -> None:
        """Screen prompts must be token ids of this model's vocabulary: checked before anything is sampled."""
        if not self.screen_prompts or model is None:
            return
        vocab = model.get_input_embeddings().num_embeddings
        for i, ids in enumerate(self.screen_prompts):
            for j, token in enumerate(ids):
                if token >= vocab:
                    raise OptionError("screen_prompts", f"[{i}][{j}] is token {token}, outside the model's "
                                      f"vocabulary of {vocab}")

    def _rows_before(self, step: int) -> list[dict]:
        """The rows an interrupted run logged up to the checkpoint it resumes from (later ones are logged again).
        The log is read back as untrusted: a line that is not a row (cut by the kill) is dropped, saying so."""
        if not self.path.is_file():
            return []
        rows = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            try:
                row = strict_loads(line) if line.strip() else None
            except ValueError:
                row = None
            if isinstance(row, dict) and isinstance(row.get("step"), int) and not isinstance(row["step"], bool) \
                    and (row.get("entropy") is None or isinstance(row["entropy"], int | float)):
                if row["step"] <= step:
                    rows.append(row)
            elif line.strip():
                warn(f"{self.path}:{number}: not a row of the plasticity log (cut by the interruption?); dropped")
        return rows

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every or state.global_step == self.last_step:
            return
        self.last_step = state.global_step
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
            "drift_from_step": self.drift_from_step,
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

    def _watch_entropy(self, state, control, logs: dict, step: int | None = None, quiet: bool = False) -> None:
        """The screen's second stage: entropy falling by more than `collapse_share` within the window (`quiet`:
        replaying the rows of a resumed run's earlier part, which said what it found then)."""
        entropy = logs.get("entropy")
        if entropy is None:
            return
        entropy = float(entropy)
        step = state.global_step if step is None else step
        self.screen["logged_entropy"] = entropy
        first = self.screen["first_logged_entropy"]
        if first is None:
            self.screen["first_logged_entropy"] = entropy
            return
        if (self.screen["collapse_step"] is None and step <= self.collapse_window
                and entropy < (1.0 - self.collapse_share) * first):
            self.screen["collapse_step"] = step
            if quiet:
                return
            stop = self.stop_on_collapse
            if state.is_world_process_zero:
                warn(f"entropy screen: entropy fell from {first:.3f} to {entropy:.3f} nats by step "
                     f"{step}, more than {self.collapse_share:.0%} within the first "
                     f"{self.collapse_window} steps (arXiv 2606.18487): the policy is collapsing"
                     + ("; training stops here and its state is saved" if stop else ""))
            if stop:
                self.screen["stopped"] = True
                control.should_training_stop = True
                control.should_save = True

    def on_train_end(self, args, state, control, **kwargs):
        claims = state.__dict__.get(_CLAIMS, [])
        if self in claims:
            claims.remove(self)
        if self.screen["first_logged_entropy"] is None and state.is_world_process_zero:
            warn("entropy screen: the trainer logged no entropy, so its fall during training was not watched")


def first_in_line(trainer, callback: TrainerCallback) -> None:
    """Run `callback` before every other one (trackers included), so what it adds to the logs is reported."""
    trainer.callback_handler.callbacks.remove(callback)
    trainer.callback_handler.callbacks.insert(0, callback)


def read_plasticity_log(path: str | Path) -> list[dict]:
    return read_jsonl(path)
