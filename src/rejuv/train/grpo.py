"""TRL's GRPOTrainer with the options TRL has no hook for: CHORD and the hard-sample filter.

- CHORD (train/chord.py): `compute_loss` returns (1 − µ)·L_GRPO + µ·L_SFT.
- Hard-sample filter: after a generation batch is scored, every group of
  `num_generations` completions whose outcomes are all equal (pass rate 0:
  nothing to learn but shortcuts; pass rate 1: no signal) has its completion
  mask zeroed, so it adds nothing to the loss, the KL term or the token count
  that token-level losses (`dapo`, `bnpo`) divide by; the share dropped is
  logged per step (`filter/dropped_share`). With the default per-sequence loss
  (`grpo`), the dropped rows still count in the batch mean, which scales the
  step by the kept share. The outcome is the outcome reward (`math_verify`,
  `exact_match`: right or wrong) when other terms shape the reward (a Brier or
  format term): a filter on the summed, shaped score would keep groups that are
  all wrong but differ in their shaping (verl-project/verl-recipe#125). Its
  dead share is then logged per step (`dead_groups/outcome`), beside TRL's
  `frac_reward_zero_std` on the summed reward.
TRL is imported only when one of them is used.
"""

from __future__ import annotations

import torch

from rejuv.train.chord import ChordSchedule, ExpertBatches, chord_sft_loss


def constant_groups(rewards: torch.Tensor, group: int) -> torch.Tensor:
    """Per completion: True where every completion of its group got the same reward (NaNs ignored)."""
    grouped = rewards.view(-1, group)
    finite = torch.where(torch.isnan(grouped), grouped.nanmean(dim=1, keepdim=True), grouped)
    same = (finite == finite[:, :1]).all(dim=1)
    return same.repeat_interleave(group)


def rejuv_grpo_trainer_class():
    from trl import GRPOTrainer

    class RejuvGRPOTrainer(GRPOTrainer):
        def __init__(self, *args, chord: tuple[ExpertBatches, ChordSchedule] | None = None,
                     filter_groups: bool = False, outcome_reward: int | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self.chord, self.filter_groups, self.outcome_reward = chord, filter_groups, outcome_reward
            self._rewards_per_func = None

        # -- hard-sample filter ----------------------------------------------------------------------
        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            self._rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            return self._rewards_per_func

        def _generate_and_score_completions(self, inputs):
            output = super()._generate_and_score_completions(inputs)
            if not self.filter_groups and self.outcome_reward is None:
                return output
            mode = "train" if self.model.training else "eval"
            group = self.num_generations if mode == "train" else self.num_generations_eval
            per_func = self._rewards_per_func
            if self.outcome_reward is not None:  # right or wrong: a shaping term does not make a group alive
                rewards = (per_func[:, self.outcome_reward] > 0).float()
                rewards[torch.isnan(per_func[:, self.outcome_reward])] = torch.nan
                dead = constant_groups(rewards, group)
                self._metrics[mode]["dead_groups/outcome"].append(dead[::group].float().mean().item())
            else:
                rewards = (per_func * self.reward_weights.to(per_func.device).unsqueeze(0)).nansum(dim=1)
                rewards[torch.isnan(per_func).all(dim=1)] = torch.nan
            if not self.filter_groups:
                return output
            dropped = constant_groups(rewards, group)
            local = len(output["completion_mask"])
            start = self.accelerator.process_index * local
            keep = (~dropped[start: start + local]).to(output["completion_mask"].dtype)
            output["completion_mask"] = output["completion_mask"] * keep[:, None]
            output["num_items_in_batch"] = self.accelerator.gather(output["completion_mask"].sum()).sum()
            self._metrics[mode]["filter/dropped_share"].append(dropped.float().mean().item())
            return output

        # -- CHORD -----------------------------------------------------------------------------------
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if self.chord is None:
                return loss
            expert, schedule = self.chord
            mode = "train" if model.training else "eval"
            mu = schedule.mu(self.state.global_step)
            self._metrics[mode]["chord/mu"].append(mu)
            if mu == 0.0:
                return loss
            ids, attention, target = expert.next(loss.device)
            logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
            logps = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
            sft = chord_sft_loss(logps, target, schedule.phi)
            self._metrics[mode]["chord/sft_loss"].append(sft.item())
            # TRL scales the GRPO loss for gradient accumulation itself; the SFT term gets the same scaling.
            normalizer = self.current_gradient_accumulation_steps if mode == "train" else 1.0
            return (1.0 - mu) * loss + mu * sft / normalizer

    return RejuvGRPOTrainer
