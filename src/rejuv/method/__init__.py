"""The method of arXiv 2606.09932 (shared/method/rejuvenation.md): the architecture adapters, streamed fusion,
the entropy-gap targets and their attribution, the reset set and the reset, and the passes `rejuv apply` runs
on a loaded model."""
