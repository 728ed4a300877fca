"""Training components on TRL: shared trainer set-up and precision (common), PEAR and CHORD losses, GRPO with
CHORD and group filtering, the per-step plasticity log. The `sft` and `rl` recipes live in `rejuv.recipes`."""
