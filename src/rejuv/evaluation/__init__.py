"""Sampling answers and grading them: engines (transformers, vLLM), pass@k, Math-Verify grading, stated
confidence, the results `rejuv eval` keeps to resume, and the layouts other tools read."""
