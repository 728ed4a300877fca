"""TRL's GRPOTrainer with the options TRL has no hook for: CHORD and the hard-sample filter.

- CHORD (train/chord.py): `compute_loss` returns (1 − µ)·L_GRPO + µ·L_SFT.
- Hard-sample filter: after a generation batch is scored, every group of
  `num_generations` completions whose rewards are all equal (pass rate 0:
  nothing to learn but shortcuts; pass rate 1: no signal) has its completion
  mask zeroed, so it adds nothing to the loss, the KL term or the token count
  that token-level losses (`dapo`, `bnpo`) divide by; the share dropped is
  logged per step (`filter/dropped_share`). With the default per-sequence loss
  (`grpo`), the dropped rows still count in the batch mean, which scales the
  step by the kept share.
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
                     filter_groups: bool = False, **kwargs):
            super().__init__(*args, **kwargs)
            self.chord, self.filter_groups = chord, filter_groups
            self._rewards_per_func = None

        # -- hard-sample filter ----------------------------------------------------------------------
        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            self._rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            return self._rewards_per_func

        def _generate_and_score_completions(self, inputs):
            output = super()._generate_and_score_completions(inputs)
            if not self.filter_groups:
                return output
            mode = "train" if self.model.training else "eval"
            group = self.num_generations if mode == "train" else self.num_generations_eval
            per_func = self._rewards_per_func
            rewards = (per_func * self.reward_weights.to(per_func.device).unsqueeze(0)).nansum(dim=1)
            rewards[torch.isnan(per_func).all(dim=1)] = torch.nan
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
