"""PEAR (arXiv 2602.01058): SFT reweighted by importance ratios, so that SFT prepares for RL.

SFT data comes from a behaviour policy π_β (a teacher, a rule); RL then samples
from the policy itself. PEAR weights each completion token's NLL by how likely
the current policy π_θ makes the data relative to π_β, with the per-token log
ratio ℓ_t = log π_θ(y_t) − log π_β(y_t) (detached):

- token:    log w_t = clip(ℓ_t, −c, c)
- block:    log w_t = clip(Σ_{s≥t} γ^{s−t} ℓ_s, −c, c)   (discounted suffix product of ratios)
- sequence: log w_t = clip(Σ_s ℓ_s, −c, c)               (one weight per sequence)

    L = −Σ_t w_t · log π_θ(y_t) / (number of completion tokens)

Choices where the paper gives no number (exposed as options, docs/training.md):
c = 2.0 (ratios within [e^−2, e^2] ≈ [0.14, 7.4]), γ = 0.9, and, without a
behaviour model, log π_β = 0: the data is taken as produced deterministically
(a rule or greedy teacher), so ℓ_t = log π_θ(y_t) and the token variant weights
each token by its own probability, clipped (DFT with a floor).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

VARIANTS = ("token", "block", "sequence")


@dataclass(frozen=True)
class PearSettings:
    variant: str = "token"
    clip: float = 2.0
    gamma: float = 0.9


def pear_log_weights(log_ratio: torch.Tensor, mask: torch.Tensor, settings: PearSettings) -> torch.Tensor:
    """log w per position ([batch, time]); positions outside `mask` get 0 and carry nothing."""
    ell = torch.where(mask.bool(), log_ratio, torch.zeros_like(log_ratio))
    if settings.variant == "token":
        raw = ell
    elif settings.variant == "block":
        raw = torch.zeros_like(ell)
        running = torch.zeros_like(ell[:, 0])
        for t in range(ell.shape[1] - 1, -1, -1):  # S_t = ℓ_t + γ·S_{t+1}
            running = ell[:, t] + settings.gamma * running
            raw[:, t] = running
    elif settings.variant == "sequence":
        raw = ell.sum(dim=1, keepdim=True).expand_as(ell)
    else:
        raise ValueError(f"PEAR variant must be one of {VARIANTS}, got {settings.variant!r}")
    return raw.clamp(-settings.clip, settings.clip) * mask


def pear_loss(token_logps: torch.Tensor, behavior_logps: torch.Tensor | None, mask: torch.Tensor,
              settings: PearSettings, num_tokens=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, mean weight over the completion tokens); weights are detached."""
    behavior = torch.zeros_like(token_logps) if behavior_logps is None else behavior_logps
    weights = pear_log_weights(token_logps.detach() - behavior, mask, settings).exp() * mask
    count = mask.sum() if num_tokens is None else torch.as_tensor(num_tokens, device=mask.device)
    loss = -(weights * token_logps * mask).sum() / count.clamp(min=1)
    return loss, weights.sum() / mask.sum().clamp(min=1)


def pear_trainer_class():
    """SFTTrainer with the PEAR loss (TRL is imported only when PEAR is used)."""
    from trl import SFTTrainer

    class PearSFTTrainer(SFTTrainer):
        def __init__(self, *args, pear: PearSettings, behavior_model=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.pear, self.behavior_model = pear, behavior_model

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs["labels"][:, 1:]
            mask = (labels != -100).to(torch.float32)
            targets = labels.clamp(min=0)[..., None]
            # position_ids: present when TRL packs sequences (padding-free), where there is no attention mask
            forward = {k: inputs[k] for k in ("input_ids", "attention_mask", "position_ids") if k in inputs}
            logits = model(**forward).logits
            logps = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, targets)[..., 0]
            behavior = None
            if self.behavior_model is not None:
                with torch.no_grad():
                    b_logits = self.behavior_model(**forward).logits
                    behavior = torch.log_softmax(b_logits[:, :-1].float(), dim=-1).gather(-1, targets)[..., 0]
            loss, mean_weight = pear_loss(logps, behavior, mask, self.pear, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # as SFTTrainer does: DDP averages the gradients
            mode = "train" if model.training else "eval"
            self._metrics[mode]["pear/mean_weight"].append(mean_weight.item())
            return (loss, None) if return_outputs else loss

    return PearSFTTrainer
