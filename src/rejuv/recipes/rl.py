"""`rejuv rl`: GRPO on TRL's GRPOTrainer, with the paper's plasticity signals logged per step.

Defaults follow the paper's protocol (appendix B): 8 samples per prompt at
temperature 1.0, top-p 1.0, KL loss against the initial policy with coefficient
0.001, symmetric clip 0.2, constant learning rate 1e-6, gradient clip 1.0,
per-sequence token-mean loss (TRL's `grpo` loss type), reward ±1 from
Math-Verify on the boxed answer.

Prompts follow the rule every command shares (`rejuv.data.prompts`): with the chat
template (the default when the tokenizer has one), a text `prompt`/`problem`
goes to TRL as one user message, so GRPO samples from the same prompt ids that
`rejuv eval` and `rejuv plan` use. Precision as in `rejuv sft`: float32 master
weights, saved in the input's dtype.

Output (`out/`, written to a temporary sibling and renamed at the end): the
final policy as a full save_pretrained folder (LoRA adapters merged),
`plasticity.jsonl` (one row per optimizer step: grad norm, update size, drift
from the initial policy, reward, KL, entropy), `train_log.jsonl`,
`rl_config.json` (the options and the precision used).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rejuv.data.prompts import model_prompt, prompt_ids, uses_template, warn_long_completions
from rejuv.data.rows import problem_rows
from rejuv.diagnostics.groups import measured_dead_share
from rejuv.errors import RejuvError
from rejuv.io.adapter import is_adapter
from rejuv.io.inputs import sources
from rejuv.io.jsonl import strict_dumps
from rejuv.io.output import claimed_output
from rejuv.modeling import adapter_base_option, check_model_path, config_positions, load_tokenizer
from rejuv.options import OptionError, Recipe, as_given, option, recorded, settings_for
from rejuv.train.common import (
    Optimisation,
    TrainingConfig,
    distributed_state,
    finish_run,
    lora_config,
    make_trl_config,
    quiet_libraries,
    save_adapter,
    save_model,
    say_what_saving_kept,
    shared_trainer_args,
    silence,
    start_model,
    training_model,
    training_output_dir,
    training_precision,
)
from rejuv.train.plasticity import PlasticityCallback, first_in_line, read_plasticity_log
from rejuv.train.rewards import needs_answer, outcome_index, resolve_reward, reward_names


@dataclass
class RLRecipeConfig(TrainingConfig):
    """GRPO on TRL, logging gradient norm vs update size per step (plasticity.jsonl)."""

    rewards: list[str] = option(["math_verify"], flag="--reward", known=reward_names,
                                help="Reward name (repeatable), or module:function.", nonempty=True)
    reward_weights: list[float] | None = option(None, help="Weight per reward, comma-separated.",
                                                default_text="1 each")
    beta: float = option(0.001, help="KL coefficient against the initial policy (>0 keeps a reference model).",
                         at_least=0)
    num_generations: int = option(8, help="Samples per prompt (GRPO needs at least 2).", at_least=2)
    epsilon: float = option(0.2, help="Clip range.", above=0)
    temperature: float = option(1.0, help="Sampling temperature.", above=0)
    top_p: float = option(1.0, help="Nucleus sampling mass.", above=0, at_most=1)
    max_completion_length: int = option(1024, help="Completion tokens per sample.", at_least=1)
    max_steps: int = option(100, help="Optimizer steps.", at_least=1)
    loss_type: str = option("grpo", help="TRL's GRPO loss type (grpo, dr_grpo, dapo, bnpo).")
    use_vllm: bool = option(False, help="Generate with vLLM (GPU).")
    plasticity_every: int = option(1, help="Log gradient norm and update size every N steps.", at_least=1)
    save_model: bool = option(True, help="Save the trained weights (off: logs only, as a probe).")
    chord_data: str | None = option(None, help="CHORD: expert SFT rows mixed into the GRPO loss with weight µ "
                                    "(docs/training.md).", path="file")
    chord_mu_peak: float = option(0.9, help="CHORD µ after warm-up.", at_least=0, at_most=1)
    chord_mu_valley: float = option(0.05, help="CHORD µ after the cosine decay.", at_least=0, at_most=1)
    chord_mu_warmup_steps: int = option(0, help="CHORD µ warm-up steps.", at_least=0)
    chord_mu_decay_steps: int = option(200, help="CHORD µ cosine-decay steps.", at_least=0)
    chord_phi: bool = option(False, help="Weight expert tokens by p(1-p) (CHORD-φ).")
    chord_expert_batch_size: int | None = option(None, help="Expert rows per step.",
                                                 default_text="prompts per device step", at_least=1)
    filter_groups: bool = option(False, help="Drop prompts whose samples all got the same outcome (pass rate 0 "
                                 "or 1; judged on the outcome reward, e.g. math_verify, when other terms shape it).")
    screen_prompts: int = option(8, help="RL prompts the start's entropy is sampled on before training (the "
                                 "pre-RL entropy screen, arXiv 2606.18487: a warning below 0.18 nats); 0: none.",
                                 at_least=0)
    stop_on_entropy_collapse: bool = option(False, help="Stop (saving the model as it is) when the logged "
                                            "entropy falls by more than half within the first 150 steps; without "
                                            "it, a warning.")
    base: str | None = adapter_base_option()
    continue_adapter: bool = option(False, help="When --model is a PEFT LoRA adapter, train that adapter (its rank "
                                    "and targets) and save it as an adapter; off: RL starts from the merged model.")

    def check(self) -> None:
        super().check()
        if self.continue_adapter and self.lora:
            raise OptionError("continue_adapter", "trains the adapter given as --model; --lora would add a new one",
                              also=("lora",))
        for name in self.rewards:
            try:
                resolve_reward(name)
            except RejuvError as exc:
                raise OptionError("rewards", str(exc)) from None
        if self.reward_weights is not None and len(self.reward_weights) != len(self.rewards):
            raise OptionError("reward_weights", f"{len(self.reward_weights)} weights for {len(self.rewards)} rewards",
                              also=("rewards",))
        world = distributed_state().num_processes
        batch = self.per_device_batch_size * self.gradient_accumulation_steps * world
        if batch % self.num_generations:
            raise OptionError("per_device_batch_size", also=("num_generations", "gradient_accumulation_steps"),
                              problem=(
                f"the completions per step (per_device_batch_size {self.per_device_batch_size} × "
                f"gradient_accumulation_steps {self.gradient_accumulation_steps} × {world} process(es) = {batch}) "
                f"must be divisible by num_generations ({self.num_generations})"))

    @property
    def reward_functions(self) -> list:
        return [resolve_reward(name) for name in self.rewards]


def _trainer_extras(cfg: RLRecipeConfig, tokenizer, templated: bool) -> tuple[type | None, dict]:
    """rejuv's GRPOTrainer subclass and its arguments when an option needs it (CHORD, the filter, a reward that
    shapes the outcome: dead groups are then counted on the outcome), else None."""
    outcome = outcome_index(cfg.rewards)
    if cfg.chord_data is None and not cfg.filter_groups and outcome is None:
        return None, {}
    from rejuv.train.grpo import rejuv_grpo_trainer_class

    extras: dict = {"filter_groups": cfg.filter_groups, "outcome_reward": outcome}
    if cfg.chord_data is not None:
        from rejuv.data.rows import sft_rows
        from rejuv.train.chord import ChordSchedule, ExpertBatches, tokenize_expert

        expert = sft_rows(cfg.chord_data, "CHORD expert data")
        if "text" in expert[0][1]:
            raise RejuvError(f"{cfg.chord_data}: CHORD's expert rows need a prompt and a response "
                             "(prompt/completion or messages), not plain text")
        rows = tokenize_expert(expert, tokenizer, templated)
        size = cfg.chord_expert_batch_size or max(1, cfg.per_device_batch_size // cfg.num_generations)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        schedule = ChordSchedule(cfg.chord_mu_peak, cfg.chord_mu_valley, cfg.chord_mu_warmup_steps,
                                 cfg.chord_mu_decay_steps, cfg.chord_phi)
        extras["chord"] = (ExpertBatches(rows, size, cfg.seed, pad), schedule)
    return rejuv_grpo_trainer_class(), extras


def _named_base(adapter: str) -> str | None:
    """The base an adapter names, as it names it (a Hub ID stays one)."""
    from rejuv.io.adapter import LoraAdapter

    found = LoraAdapter(adapter)
    found.close()
    return found.base_ref


def run_rl(cfg: RLRecipeConfig) -> dict:
    """Train; returns a summary (mean reward of the first and last steps, steps, paths)."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    with claimed_output(cfg, "rl") as out:
        return _rl(cfg, out, GRPOConfig, GRPOTrainer, Dataset)


def _rl(cfg: RLRecipeConfig, out: Path, GRPOConfig, GRPOTrainer, Dataset) -> dict:  # noqa: N803 (TRL's classes)
    funcs = cfg.reward_functions
    check_model_path(cfg.model, cfg.trust_remote_code, cfg.allow_pickle)
    if cfg.continue_adapter and not is_adapter(cfg.model):
        raise RejuvError(f"{cfg.model}: --continue-adapter trains a PEFT adapter, and --model is a full model")
    precision = training_precision(cfg.dtype, cfg.master_dtype, cfg.save_dtype, cfg.model, cfg.base)
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code, cfg.base)
    templated = uses_template(tokenizer, cfg.chat_template, cfg.model)
    records, prompts = _prompt_rows(cfg, tokenizer, templated)

    with training_output_dir(out, cfg.overwrite, "rl") as tmp, quiet_libraries(cfg.progress):
        optimisation = settings_for(Optimisation, cfg)
        values = dict(
            shared_trainer_args(optimisation, tmp, precision), max_steps=cfg.max_steps, lr_scheduler_type="constant",
            warmup_steps=0, weight_decay=0.0, num_generations=cfg.num_generations, beta=cfg.beta, epsilon=cfg.epsilon,
            temperature=cfg.temperature, top_p=cfg.top_p, max_completion_length=cfg.max_completion_length,
            loss_type=cfg.loss_type, reward_weights=cfg.reward_weights, use_vllm=cfg.use_vllm,
        )
        args = make_trl_config(GRPOConfig, values, cfg.trl_args, "rl")
        plasticity = PlasticityCallback(tmp / "plasticity.jsonl", every=cfg.plasticity_every,
                                        screen_prompts=prompts[: cfg.screen_prompts],
                                        screen_tokens=min(32, cfg.max_completion_length), seed=cfg.seed,
                                        stop_on_collapse=cfg.stop_on_entropy_collapse)
        trainer_class, extras = _trainer_extras(cfg, tokenizer, templated)
        model = training_model(start_model(cfg), args, precision)
        try:
            trainer = (trainer_class or GRPOTrainer)(model=model, reward_funcs=funcs, args=args, **extras,
                                  train_dataset=Dataset.from_list(records), processing_class=tokenizer,
                                  peft_config=lora_config(optimisation), callbacks=[plasticity])
        except (ValueError, KeyError) as exc:
            raise RejuvError(f"rl: the trainer refused the set-up ({exc})") from exc
        first_in_line(trainer, plasticity)
        if not cfg.progress:
            silence(trainer)
        trainer.train()
        kept = _save(cfg, trainer, tmp, precision)
        rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
        stated = precision.statement(templated)
        finish_run(trainer, tmp, {**recorded(cfg), "sources": sources(cfg)}, "rl_config.json", stated, cfg.use_vllm)
        say_what_saving_kept(kept, precision.saved, "rl")
        logged = read_plasticity_log(tmp / "plasticity.jsonl") if (tmp / "plasticity.jsonl").exists() else []
    head, tail = rewards[:5], rewards[-5:]
    return {
        "out": str(out), "steps": trainer.state.global_step, "plasticity_rows": len(logged),
        # GRPO's groups with one reward for every sample (TRL's frac_reward_zero_std), beside what
        # `rejuv diagnose --rl-data` forecast for the start: the first tenth of the steps, and all of them
        "dead_groups_first_tenth": measured_dead_share(logged),
        "dead_groups_all_steps": measured_dead_share(logged, share=1.0),
        "entropy_screen": plasticity.screen,
        "reward_first": sum(head) / len(head) if head else None,
        "reward_last": sum(tail) / len(tail) if tail else None,
        "update_kept_when_saved": kept,
        **stated,
    }


def _prompt_rows(cfg: RLRecipeConfig, tokenizer, templated: bool) -> tuple[list[dict], list[list[int]]]:
    """The data rows as the trainer gets them (prompts by the shared rule; answers as any-of lists when one
    row has a list, since a dataset column takes one type), and the prompts' token ids (the entropy screen's)."""
    positions = config_positions(cfg.model, cfg.base)
    records, prompts = [], []
    for where, record in problem_rows(cfg.data, need_answer=needs_answer(cfg.rewards)):
        records.append({**record, "prompt": model_prompt(record["prompt"], templated, where)})
        prompts.append(prompt_ids(record["prompt"], tokenizer, templated, where, positions))
    warn_long_completions(prompts, cfg.max_completion_length, positions, f"rl on {cfg.data}")
    if any(isinstance(r.get("answer"), list) for r in records):
        records = [{**r, "answer": r["answer"] if isinstance(r["answer"], list) else [r["answer"]]} for r in records]
    return records, prompts


def _save(cfg: RLRecipeConfig, trainer, tmp: Path, precision) -> float | None:
    """The trained adapter (`--continue-adapter`) or full model; the share of the update the saved copy kept."""
    if not cfg.save_model:
        return None
    if cfg.continue_adapter:
        return save_adapter(trainer, tmp, as_given(cfg, cfg.base) if cfg.base else _named_base(cfg.model))
    return save_model(trainer, tmp, precision.saved, start=cfg.model, adapter_base=cfg.base)


RECIPE = Recipe(RLRecipeConfig, run_rl, lambda cfg, summary: strict_dumps(summary))
