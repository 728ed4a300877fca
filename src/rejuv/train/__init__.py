"""Training recipes on TRL: `sft` (SFTTrainer, NLL or DFT loss) and `rl` (GRPOTrainer)."""
